// The playground: builds one job per entry from the form, follows each job's events, and
// reloads everything from `?job=<id>&job=<id>` (the page keeps what it needs in each job's
// metadata, since the job document does not hold the request).
import { ApiError, followJob, getJson, postJson } from "./api.js";
import { loadEditor, makeEntry, sourceBytes } from "./editor.js";
import { EntryResult, drawComparison, drawPlots } from "./results.js";

const $ = (id) => document.getElementById(id);
// limits: GET /api/v1/limits, what this caller may ask for (the key's caps included).
const state = { languages: [], limits: null, entries: [], results: [] };

function key() {
  const value = $("api-key").value.trim();
  // Kept for this tab only: a key should not outlive the session in the browser's storage.
  sessionStorage.setItem("bgc-key", value);
  return value;
}

function say(text, error = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", error);
}

function addTest(test = { stdin: "", expected_output: "" }) {
  const row = document.createElement("div");
  row.className = "test";
  const n = $("tests").children.length + 1;
  row.innerHTML = `<label>Test input <textarea class="t-in" rows="2" spellcheck="false"></textarea></label>
    <label>Expected output <textarea class="t-out" rows="2" spellcheck="false"></textarea></label>
    <button type="button">Remove test</button>`;
  row.querySelector(".t-in").value = test.stdin;
  row.querySelector(".t-out").value = test.expected_output ?? "";
  row.querySelector(".t-in").setAttribute("aria-label", `Input of test ${n}`);
  row.querySelector(".t-out").setAttribute("aria-label", `Expected output of test ${n}`);
  row.querySelector("button").addEventListener("click", () => row.remove());
  $("tests").append(row);
}

function addEntry(initial) {
  const entry = makeEntry($("entries"), state.languages, initial, run, (gone) => {
    if (state.entries.length === 1) return;  // there is always one entry to run
    state.entries = state.entries.filter((e) => e !== gone);
    gone.box.remove();
  });
  state.entries.push(entry);
  return entry;
}

function settings() {
  const tests = [...document.querySelectorAll("#tests .test")].map((row) => ({
    stdin: row.querySelector(".t-in").value,
    expected_output: row.querySelector(".t-out").value,
  }));
  const limits = {};
  if ($("time-ms").value) limits.time_ms = Number($("time-ms").value);
  if ($("memory-mb").value) limits.memory_mb = Number($("memory-mb").value);
  return {
    stdin: $("stdin").value, tests, count: Number($("count").value) || 1,
    warmup: Number($("warmup").value) || 0, limits, compare: $("compare").value,
  };
}

function applySettings(s) {
  $("stdin").value = s.stdin ?? "";
  $("tests").replaceChildren();
  for (const t of s.tests ?? []) addTest(t);
  $("count").value = s.count ?? 1;
  $("warmup").value = s.warmup ?? 0;
  $("time-ms").value = s.limits?.time_ms ?? "";
  $("memory-mb").value = s.limits?.memory_mb ?? "";
  $("compare").value = s.compare ?? "trim";
}

// Bytes of the compact JSON the server measures (it escapes every non-ASCII code unit).
function jsonBytes(value) {
  const text = JSON.stringify(value);
  let n = 0;
  for (let i = 0; i < text.length; i++) n += text.charCodeAt(i) < 128 ? 1 : 6;
  return n;
}

// What a permalink needs; when the code or the tests do not fit in 4 KB, they are left out
// (the results still reload) and the page says so.
function metadataFor(entry, s) {
  const play = { v: 1, label: entry.label, language: entry.language, code: entry.code, settings: s };
  const limit = state.limits.max_metadata_bytes;
  if (jsonBytes({ play }) <= limit) return { play };
  const lean = { ...play, code: null, omitted: ["code"] };
  if (jsonBytes({ play: lean }) <= limit) return { play: lean };
  return { play: { ...lean, settings: { ...s, tests: [], stdin: "" }, omitted: ["code", "tests"] } };
}

// The inputs' bounds and the note under them, from the server's limits.
function applyLimits(limits) {
  const bound = (id, min, max) => { $(id).min = String(min); $(id).max = String(max); };
  bound("count", 1, limits.max_runs);
  bound("warmup", 0, limits.max_runs - 1);
  bound("time-ms", 1, limits.time_ms);
  bound("memory-mb", limits.min_memory_mb, limits.memory_mb);
  $("time-ms").placeholder = `up to ${limits.time_ms}`;
  $("memory-mb").placeholder = `${limits.min_memory_mb} to ${limits.memory_mb}`;
  $("limits-note").textContent = `This server allows at most ${limits.max_runs} runs a job ` +
    `(compile + warm-up + count × tests), ${limits.time_ms} ms and ${limits.memory_mb} MB a run.`;
}

// What the server would refuse, said before sending anything; null when all is within bounds.
function outOfBounds(s) {
  for (const id of ["count", "warmup", "time-ms", "memory-mb"]) {
    const input = $(id);
    if (input.value !== "" && !input.checkValidity()) {
      const label = input.parentElement.firstChild.textContent.trim();
      return `${label} must be between ${input.min} and ${input.max} on this server.`;
    }
  }
  for (const entry of state.entries) {
    const compiles = state.languages.find((l) => l.name === entry.language)?.compile ? 1 : 0;
    const runs = compiles + s.warmup + s.count * Math.max(1, s.tests.length);
    if (runs > state.limits.max_runs) {
      return `${entry.label} needs ${runs} runs (compile + warm-up + count × tests); ` +
        `this server allows ${state.limits.max_runs} a job.`;
    }
  }
  return null;
}

const running = (result) => result.status === "queued" || result.status === "running";

let redraw = 0;
function refresh() {
  cancelAnimationFrame(redraw);
  const draw = () => {
    drawPlots($("plots"), state.results);
    drawComparison($("comparison"), state.results);
  };
  // While jobs run, drawn at most once a frame; once none runs, at once: the final plots and
  // table appear with the last summary, never a frame behind it.
  if (state.results.some(running)) redraw = requestAnimationFrame(draw);
  else draw();
}

function showPermalink(ids) {
  const url = `/play?${ids.map((id) => `job=${encodeURIComponent(id)}`).join("&")}`;
  history.replaceState(null, "", url);
  $("permalink").href = url;
  $("permalink-line").hidden = false;
}

function follow(result) {
  return followJob(result.jobId, key(), (kind, data) => { result.event(kind, data); refresh(); });
}

async function run() {
  const s = settings();
  const refusal = outOfBounds(s);
  if (refusal) { say(refusal, true); return; }
  const base = { count: s.count, warmup: s.warmup, compare: s.compare };
  if (Object.keys(s.limits).length) base.limits = s.limits;
  if (s.tests.length) base.tests = s.tests; else base.stdin = s.stdin;
  $("results").replaceChildren();
  state.results = [];
  $("run").disabled = true;
  say("Submitting…");
  try {
    for (const entry of state.entries) {
      const body = { ...base, language: entry.language, script: entry.code, metadata: metadataFor(entry, s) };
      const job = await postJson("/api/v1/jobs", body, key());
      const result = new EntryResult($("results"), {
        label: entry.label, language: entry.language, code: entry.code, colour: entry.colour,
        bytes: sourceBytes(entry.code), tests: s.tests.length ? s.tests : null,
      });
      result.jobId = job.id;
      state.results.push(result);
    }
    showPermalink(state.results.map((r) => r.jobId));
    say("Running…");
    await Promise.all(state.results.map(follow));
    say("Done.");
  } catch (error) {
    say(error instanceof ApiError ? error.message : String(error), true);
  } finally {
    $("run").disabled = false;
    refresh();
  }
}

async function reload(ids) {
  say("Loading the permalink…");
  const jobs = await Promise.all(ids.map((id) => getJson(`/api/v1/jobs/${encodeURIComponent(id)}`, key())));
  const omitted = new Set();
  $("entries").replaceChildren();
  state.entries = [];
  jobs.forEach((job, i) => {
    const play = job.metadata?.play ?? {};
    if (i === 0 && play.settings) applySettings(play.settings);
    for (const part of play.omitted ?? []) omitted.add(part);
    const entry = addEntry({ language: play.language, code: play.code ?? "", label: play.label });
    const tests = play.settings?.tests?.length ? play.settings.tests : null;
    const result = new EntryResult($("results"), {
      label: entry.label, language: entry.language, code: entry.code, colour: entry.colour,
      bytes: play.code != null ? sourceBytes(play.code) : "?", tests,
    });
    result.job(job);
    state.results.push(result);
  });
  showPermalink(ids);
  refresh();
  say(omitted.size ? `Reloaded; the ${[...omitted].join(" and ")} did not fit in the job's 4 KB of metadata.` : "Reloaded.");
  const open = state.results.filter(running);
  await Promise.all(open.map(follow));
  if (open.length) say("Done.");
}

async function start() {
  $("api-key").value = sessionStorage.getItem("bgc-key") ?? "";
  $("run").addEventListener("click", run);
  $("add-test").addEventListener("click", () => addTest());
  $("add-entry").addEventListener("click", () => addEntry());
  const editorMissing = await loadEditor();
  try {
    [state.languages, state.limits] = await Promise.all([
      getJson("/api/v1/languages", key()), getJson("/api/v1/limits", key())]);
  } catch (error) {
    say(`Cannot list the languages: ${error.message}. Enter an API key to try again.`, true);
    // The key is kept in sessionStorage, so a reload starts over with it.
    $("api-key").addEventListener("change", () => { key(); location.reload(); }, { once: true });
    return;
  }
  applyLimits(state.limits);
  const ids = new URLSearchParams(location.search).getAll("job");
  if (ids.length) {
    try { await reload(ids); } catch (error) { say(error.message, true); }
  } else {
    addEntry();
  }
  if (editorMissing) say(editorMissing, true);
  document.body.dataset.ready = "true";  // for tests: the page has finished setting up
}

start();
