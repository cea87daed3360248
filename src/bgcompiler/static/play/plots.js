// Inline SVG plots, drawn from scratch: a strip plot per test and an overlaid histogram.
// No chart library: two plot kinds do not justify a dependency the page must ship.

const NS = "http://www.w3.org/2000/svg";
const W = 360, H = 220, LEFT = 48, RIGHT = 10, TOP = 10, BOTTOM = 34;

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function frame(title, yMax, xLabel) {
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.append(el("title", {}, title));
  const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / yMax);
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    svg.append(el("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), stroke: "#eaeef2" }));
    svg.append(el("text", { x: LEFT - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10 },
      String(+v.toPrecision(3))));
  }
  svg.append(el("text", { x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11 }, xLabel));
  return { svg, y };
}

function figure(caption, svg, className) {
  const fig = document.createElement("figure");
  fig.className = className;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(cap, svg);
  return fig;
}

// series: [{label, colour, points: [{test, value}]}]; tests: how many test columns.
export function stripPlot(caption, unit, series, tests) {
  const values = series.flatMap((s) => s.points.map((p) => p.value));
  const { svg, y } = frame(caption, niceMax(Math.max(0, ...values)), tests > 1 ? "test" : "");
  const columns = Math.max(tests, 1);
  const width = (W - LEFT - RIGHT) / columns;
  for (let t = 0; t < columns; t++) {
    svg.append(el("text", { x: LEFT + width * (t + 0.5), y: H - BOTTOM + 14, "text-anchor": "middle",
      "font-size": 10 }, String(t)));
  }
  series.forEach((s, k) => {
    const lane = width / (series.length + 1);
    s.points.forEach((p, i) => {
      // A small deterministic jitter keeps equal values from hiding each other.
      const jitter = ((i * 37) % 11 - 5) * Math.min(lane, 20) * 0.06;
      const cx = LEFT + width * (p.test ?? 0) + lane * (k + 1) + jitter;
      const dot = el("circle", { cx, cy: y(p.value), r: 3.5, fill: s.colour, "fill-opacity": 0.75, class: "point" });
      dot.append(el("title", {}, `${s.label}: ${p.value} ${unit}`));
      svg.append(dot);
    });
  });
  return figure(`${caption} (${unit})`, svg, "strip");
}

// series: [{label, colour, values: [number]}], bars overlaid with transparency.
export function histogram(caption, unit, series) {
  const all = series.flatMap((s) => s.values);
  const lo = Math.min(...all, Infinity), hi = Math.max(...all, -Infinity);
  const bins = Math.max(1, Math.min(20, Math.ceil(Math.sqrt(all.length)) + 2));
  const span = hi > lo ? hi - lo : Math.max(1, Math.abs(hi) * 0.1);
  const start = hi > lo ? lo : lo - span / 2;
  const counts = series.map((s) => {
    const c = new Array(bins).fill(0);
    for (const v of s.values) c[Math.min(bins - 1, Math.floor(((v - start) / span) * bins))]++;
    return c;
  });
  const { svg, y } = frame(caption, niceMax(Math.max(1, ...counts.flat())), `${unit}: ${+start.toPrecision(4)} to ${+(start + span).toPrecision(4)}`);
  const bw = (W - LEFT - RIGHT) / bins;
  counts.forEach((c, k) => c.forEach((n, b) => {
    if (n === 0) return;
    const bar = el("rect", { x: LEFT + b * bw + 1, y: y(n), width: bw - 2, height: y(0) - y(n),
      fill: series[k].colour, "fill-opacity": 0.45, stroke: series[k].colour, class: "bar" });
    bar.append(el("title", {}, `${series[k].label}: ${n} run(s)`));
    svg.append(bar);
  }));
  return figure(`${caption} (runs per bin)`, svg, "histogram");
}
