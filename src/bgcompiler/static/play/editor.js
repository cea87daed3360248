// The code entries: a language picker and a CodeMirror editor each (vendor/codemirror.js,
// built from npm packages by `make setup`). Tab moves the focus on (the page must be usable
// from the keyboard); Ctrl+Enter runs.

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

// The bundle, loaded once. Without it (a checkout where `make setup` has not built it) the
// entries fall back to plain text areas, and the page says why.
let bundle = null;
export async function loadEditor() {
  try {
    bundle = await import("./vendor/codemirror.js");
    return null;
  } catch (error) {
    return `The code editor is not built (run make setup); plain text areas instead. (${error.message})`;
  }
}

function plainEditor({ parent, text, label, onChange, onRun }) {
  const area = document.createElement("textarea");
  Object.assign(area, { value: text, rows: 10, spellcheck: false, className: "plain-code" });
  area.setAttribute("aria-label", label);
  area.addEventListener("input", () => onChange(area.value));
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); onRun(); }
  });
  parent.append(area);
  return {
    get text() { return area.value; },
    set text(value) { area.value = value; },
    set language(_) {},
    focus() { area.focus(); },
  };
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
    <div class="editor"></div>`;
  const select = box.querySelector(".language");
  for (const lang of languages) {
    const option = new Option(lang.image_present ? `${lang.name} ${lang.version}` : `${lang.name} (image not built)`, lang.name);
    option.disabled = !lang.image_present;
    select.append(option);
  }
  const present = languages.filter((l) => l.image_present).map((l) => l.name);
  select.value = language || (present.includes("python") ? "python" : present[0] || "");
  const labelInput = box.querySelector(".label");
  labelInput.value = label || `entry ${n}`;
  const bytes = box.querySelector(".bytes");
  const count = (text) => { bytes.textContent = `${sourceBytes(text)} bytes`; };
  const options = {
    parent: box.querySelector(".editor"), text: code ?? STARTERS[select.value] ?? "",
    language: select.value, label: `Code of entry ${n}`, onChange: count, onRun,
  };
  const editor = bundle ? bundle.createEditor(options) : plainEditor(options);
  // For scripts and tests that drive the page: the editor behind this box.
  box.querySelector(".editor").editor = editor;
  const entry = {
    box, colour, select, labelInput, editor,
    get language() { return select.value; },
    get code() { return editor.text; },
    get label() { return labelInput.value || `entry ${n}`; },
  };
  select.addEventListener("change", () => {
    editor.language = select.value;
    if (!editor.text.trim() || Object.values(STARTERS).includes(editor.text))
      editor.text = STARTERS[select.value] ?? "";
  });
  box.querySelector(".remove").addEventListener("click", () => onRemove(entry));
  count(options.text);
  container.append(box);
  return entry;
}
