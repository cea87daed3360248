// The playground's editor: CodeMirror 6 with the grammars of the registry's languages,
// bundled by build.mjs into one module the service ships (no CDN: it works offline).
// The page sees only createEditor; CodeMirror's own API stays inside the bundle.
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { cpp } from "@codemirror/lang-cpp";
import { go } from "@codemirror/lang-go";
import { java } from "@codemirror/lang-java";
import { javascript } from "@codemirror/lang-javascript";
import { python } from "@codemirror/lang-python";
import { rust } from "@codemirror/lang-rust";
import {
  StreamLanguage, bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting,
} from "@codemirror/language";
import { ruby } from "@codemirror/legacy-modes/mode/ruby";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { Compartment, EditorState } from "@codemirror/state";
import {
  EditorView, drawSelection, highlightActiveLine, keymap, lineNumbers,
} from "@codemirror/view";

const GRAMMARS = {
  python: () => python(),
  c: () => cpp(),
  cpp: () => cpp(),
  javascript: () => javascript(),
  go: () => go(),
  java: () => java(),
  rust: () => rust(),
  ruby: () => StreamLanguage.define(ruby),
  sh: () => StreamLanguage.define(shell),
  bash: () => StreamLanguage.define(shell),
};

// parent: the element to fill; label: the accessible name of the text area; onChange(text);
// onRun: Ctrl+Enter (or Cmd+Enter). Tab is left to the browser: it moves the focus on, so
// the page stays usable from the keyboard alone (the editor indents on Enter by itself).
export function createEditor({ parent, text, language, label, onChange, onRun }) {
  const grammar = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(), history(), drawSelection(), indentOnInput(), bracketMatching(),
        highlightActiveLine(), syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        grammar.of(GRAMMARS[language]?.() ?? []),
        keymap.of([
          { key: "Mod-Enter", run: () => { onRun(); return true; } },
          ...defaultKeymap, ...historyKeymap,
        ]),
        EditorView.contentAttributes.of({ "aria-label": label, spellcheck: "false" }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) onChange(update.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    view,
    get text() { return view.state.doc.toString(); },
    set text(value) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
    },
    set language(name) {
      view.dispatch({ effects: grammar.reconfigure(GRAMMARS[name]?.() ?? []) });
    },
    focus() { view.focus(); },
  };
}
