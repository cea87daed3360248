// The code entries: a language picker and a highlighted editor each. Tab keeps moving the
// focus (the page must be usable from the keyboard); Ctrl+Enter runs.
import { highlight } from "./highlight.js";

export const COLOURS = ["#0969da", "#bf3989", "#1a7f37", "#bc4c00", "#8250df", "#57606a"];

const STARTERS = {
  python: "import sys\nprint(sys.stdin.read()[::-1])\n",
  sh: "rev\n",
  bash: "rev\n",
  c: "#include <stdio.h>\nint main(void) {\n    char s[256];\n    if (fgets(s, sizeof s, stdin)) printf(\"%s\", s);\n    return 0;\n}\n",
  javascript: "const s = require('fs').readFileSync(0, 'utf8');\nconsole.log([...s].reverse().join(''));\n",
};

const encoder = new TextEncoder();
let made = 0;

export function sourceBytes(code) {
  return encoder.encode(code).length;
}

// languages: the registry; onRun: called on Ctrl+Enter; onRemove(entry).
export function makeEntry(container, languages, { language, code, label } = {}, onRun, onRemove) {
  const n = ++made;
  const colour = COLOURS[(n - 1) % COLOURS.length];
  const box = document.createElement("div");
  box.className = "entry";
  box.style.setProperty("--colour", colour);
  box.innerHTML = `
    <div class="entry-head">
      <label>Name <input class="label" size="10"></label>
      <label>Language <select class="language"></select></label>
      <span class="bytes" aria-live="off"></span>
      <button type="button" class="remove">Remove</button>
    </div>
    <div class="editor"><pre aria-hidden="true"></pre>
      <textarea class="code" spellcheck="false" autocapitalize="off" autocomplete="off"></textarea></div>`;
  const select = box.querySelector(".language");
  for (const lang of languages) {
    const option = new Option(lang.image_present ? `${lang.name} ${lang.version}` : `${lang.name} (image not built)`, lang.name);
    option.disabled = !lang.image_present;
    select.append(option);
  }
  const present = languages.filter((l) => l.image_present).map((l) => l.name);
  select.value = language || (present.includes("python") ? "python" : present[0] || "");
  const textarea = box.querySelector("textarea");
  textarea.setAttribute("aria-label", `Code of entry ${n}`);
  const labelInput = box.querySelector(".label");
  labelInput.value = label || `entry ${n}`;
  const pre = box.querySelector("pre");
  const bytes = box.querySelector(".bytes");
  const entry = {
    box, colour, select, textarea, labelInput,
    get language() { return select.value; },
    get code() { return textarea.value; },
    get label() { return labelInput.value || `entry ${n}`; },
  };
  const paint = () => {
    pre.innerHTML = highlight(textarea.value, select.value);
    pre.scrollTop = textarea.scrollTop;
    bytes.textContent = `${sourceBytes(textarea.value)} bytes`;
  };
  textarea.value = code ?? STARTERS[select.value] ?? "";
  textarea.addEventListener("input", paint);
  textarea.addEventListener("scroll", () => { pre.scrollTop = textarea.scrollTop; });
  textarea.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); onRun(); }
  });
  new ResizeObserver(() => { pre.style.height = `${textarea.offsetHeight}px`; }).observe(textarea);
  select.addEventListener("change", () => {
    if (!textarea.value.trim() || Object.values(STARTERS).includes(textarea.value))
      textarea.value = STARTERS[select.value] ?? "";
    paint();
  });
  box.querySelector(".remove").addEventListener("click", () => onRemove(entry));
  paint();
  container.append(box);
  return entry;
}
