// A small tokenizer for the editor: comments, strings, numbers and keywords, with keyword
// sets per language. Not a parser; enough to read code comfortably, with no bundler needed.

const KEYWORDS = {
  python: "and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return True try while with yield print",
  c: "auto break case char const continue default do double else enum extern float for goto if int long register return short signed sizeof static struct switch typedef union unsigned void volatile while include define",
  javascript: "async await break case catch class const continue default delete do else export extends false finally for function if import in instanceof let new null return switch this throw true try typeof undefined var void while yield",
  go: "break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil true false",
  java: "abstract boolean break byte case catch char class continue default do double else extends final finally float for if implements import int interface long new null package private protected public return short static super switch this throw throws true false try void while",
  ruby: "begin break case class def do else elsif end ensure false for if in module next nil not or puts redo rescue return self then true unless until when while yield",
  rust: "as break const continue crate else enum false fn for if impl in let loop match mod move mut pub ref return self Self static struct trait true type unsafe use where while",
  sh: "case do done elif else esac fi for function if in then until while echo read local export",
};
KEYWORDS.cpp = `${KEYWORDS.c} bool class namespace new delete private public protected template typename using std cout cin endl true false`;
KEYWORDS.bash = KEYWORDS.sh;

const HASH_COMMENTS = new Set(["python", "ruby", "sh", "bash"]);

function escape(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function highlight(code, language) {
  const words = new Set((KEYWORDS[language] || "").split(" "));
  const comment = HASH_COMMENTS.has(language) ? "#[^\\n]*" : "\\/\\/[^\\n]*|\\/\\*[\\s\\S]*?(?:\\*\\/|$)";
  const pattern = new RegExp(
    `(${comment})|("(?:\\\\.|[^"\\\\\\n])*"?|'(?:\\\\.|[^'\\\\\\n])*'?)|(\\b\\d[\\w.]*)|([A-Za-z_]\\w*)`, "g");
  let out = "", last = 0, match;
  while ((match = pattern.exec(code)) !== null) {
    out += escape(code.slice(last, match.index));
    const [text, com, str, num, word] = match;
    if (com) out += `<span class="tok-com">${escape(text)}</span>`;
    else if (str) out += `<span class="tok-str">${escape(text)}</span>`;
    else if (num) out += `<span class="tok-num">${escape(text)}</span>`;
    else if (word && words.has(word)) out += `<span class="tok-kw">${text}</span>`;
    else out += escape(text);
    last = match.index + text.length;
  }
  // A trailing newline needs a character after it, or the copy is a line short.
  return out + escape(code.slice(last)) + "\n";
}
