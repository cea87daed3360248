// One entry's results: status, compile, runs (as they arrive), summary; and the plots and
// comparison table over all entries.
import { lineDiff } from "./diff.js";
import { histogram, stripPlot } from "./plots.js";

function badge(text, kind = text) {
  const span = document.createElement("span");
  span.className = `badge ${kind ?? ""}`;
  span.textContent = text ?? "-";
  return span;
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content); else td.textContent = content ?? "-";
  return td;
}

function block(title, text) {
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = title;
  const pre = document.createElement("pre");
  pre.textContent = text;
  details.append(summary, pre);
  return details;
}

function diffBlock(expected, actual) {
  const details = block("diff (expected − / actual +)", "");
  const pre = details.querySelector("pre");
  for (const [mark, line] of lineDiff(expected, actual)) {
    const span = document.createElement("span");
    span.className = mark === "-" ? "diff-del" : mark === "+" ? "diff-add" : "";
    span.textContent = `${mark} ${line}\n`;
    pre.append(span);
  }
  details.open = true;
  return details;
}

export class EntryResult {
  constructor(container, { label, language, code, colour, bytes, tests }) {
    Object.assign(this, { label, language, code, colour, bytes, tests });
    this.runs = new Map();
    this.status = "queued";
    this.summary = null;
    this.jobId = null;
    this.box = document.createElement("article");
    this.box.className = "entry-result";
    this.box.style.borderLeft = `6px solid ${colour}`;
    this.box.style.paddingLeft = ".5rem";
    container.append(this.box);
    this.render();
  }

  event(kind, data) {
    if (kind === "started") {
      this.status = "running";
      if (data && data.attempt > 1) this.runs.clear();  // an earlier attempt's runs are void
    } else if (kind === "compile") {
      this.compile = data.compile;
    } else if (kind === "run") {
      this.runs.set(data.index, data.run);
    } else if (kind === "done") {
      this.job(data);
      return;
    }
    this.render();
  }

  job(doc) {
    this.jobId = doc.id;
    this.status = doc.status;
    this.error = doc.error;
    if (doc.result) {
      this.compile = doc.result.compile;
      this.runs = new Map(doc.result.runs.map((run, i) => [i, run]));
      this.summary = doc.result.summary;
    }
    this.render();
  }

  get walls() { return [...this.runs.values()].filter((r) => r.wall_ms != null).map((r) => r.wall_ms); }

  median() {
    if (this.summary && this.summary.wall_ms) return this.summary.wall_ms.median;
    const w = this.walls.sort((a, b) => a - b);
    if (!w.length) return null;
    return w.length % 2 ? w[(w.length - 1) / 2] : (w[w.length / 2 - 1] + w[w.length / 2]) / 2;
  }

  render() {
    const box = this.box;
    box.replaceChildren();
    const head = document.createElement("h3");
    head.append(`${this.label} · ${this.language} · ${this.bytes} bytes `, badge(this.status));
    box.append(head);
    if (this.error) box.append(block("error", this.error));
    if (this.compile && this.compile.status !== "ok") {
      const p = document.createElement("p");
      p.append("Compile: ", badge(this.compile.status));
      box.append(p, block("compiler output", `${this.compile.stdout}${this.compile.stderr}`));
    }
    if (this.summary) {
      const s = this.summary, w = s.wall_ms;
      const p = document.createElement("p");
      p.className = "summary";
      p.textContent = `${s.runs} runs · ${s.tests ? `${s.accepted}/${s.tests} tests accepted · ` : ""}` +
        `identical outputs: ${s.identical_outputs ? "yes" : "no"}` +
        (w ? ` · wall ms min ${w.min} · median ${w.median} · p95 ${w.p95} · stdev ${w.stdev ?? "-"}` : "");
      box.append(p);
    }
    const wrap = document.createElement("div");
    wrap.className = "runs-wrap";
    const table = document.createElement("table");
    table.className = "runs";
    table.createCaption().textContent = `Runs of ${this.label}`;
    const header = table.createTHead().insertRow();
    for (const name of ["#", "test", "repeat", "status", "verdict", "wall ms", "cpu ms", "memory KB", "output"]) {
      const th = document.createElement("th"); th.scope = "col"; th.textContent = name; header.append(th);
    }
    const body = table.createTBody();
    for (const [index, run] of [...this.runs.entries()].sort((a, b) => a[0] - b[0])) {
      const row = body.insertRow();
      row.className = "run";
      cell(row, String(index)); cell(row, run.test ?? "-"); cell(row, String(run.repeat));
      cell(row, badge(run.status)); cell(row, run.verdict ? badge(run.verdict) : "-");
      cell(row, run.wall_ms); cell(row, run.cpu_ms); cell(row, run.memory_kb);
      const out = cell(row, "");
      out.append(block("stdout", run.stdout ?? ""));
      if (run.stderr) out.append(block("stderr", run.stderr));
      const test = run.test != null && this.tests ? this.tests[run.test] : null;
      if (run.verdict === "wrong_answer" && test) out.append(diffBlock(test.expected_output, run.stdout ?? ""));
    }
    wrap.append(table);
    box.append(wrap);
  }
}

export function drawPlots(container, results) {
  const tests = Math.max(1, ...results.map((r) => (r.tests ? r.tests.length : 1)));
  const series = (field) => results.map((r) => ({
    label: r.label, colour: r.colour,
    points: [...r.runs.values()].filter((run) => run[field] != null).map((run) => ({ test: run.test ?? 0, value: run[field] })),
  }));
  const hist = results.map((r) => ({ label: r.label, colour: r.colour, values: r.walls }));
  const legend = document.createElement("p");
  legend.className = "legend";
  for (const r of results) {
    const span = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = r.colour;
    span.append(swatch, r.label);
    legend.append(span);
  }
  container.replaceChildren(
    stripPlot("Wall time per test", "ms", series("wall_ms"), tests),
    stripPlot("CPU time per test", "ms", series("cpu_ms"), tests),
    stripPlot("Peak memory per test", "KB", series("memory_kb"), tests),
    histogram("Wall times", "ms", hist),
  );
  container.prepend(legend);
}

// Times as the CLI shows them: two decimals below 10 ms (short programs differ by tenths).
function ms(value) {
  if (value == null) return "-";
  return Math.abs(value) < 10 ? value.toFixed(2) : value.toFixed(1);
}

export function drawComparison(table, results) {
  table.hidden = results.length < 2;
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const r of results) {
    const row = body.insertRow();
    cell(row, r.label); cell(row, r.language); cell(row, String(r.bytes));
    const wall = r.summary?.wall_ms;
    cell(row, ms(r.median())); cell(row, ms(wall?.p95)); cell(row, ms(wall?.stdev));
    cell(row, r.summary && r.summary.tests ? `${r.summary.accepted}/${r.summary.tests}` : "-");
    cell(row, r.jobId ?? "-");
  }
}
