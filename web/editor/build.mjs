// Bundles src/index.js and the CodeMirror packages it imports (versions pinned by
// package-lock.json) into the service's static assets. The same lockfile gives the same
// bytes: esbuild's output depends only on its inputs and these options.
import { build } from "esbuild";

await build({
  entryPoints: ["src/index.js"],
  outfile: "../../src/bgcompiler/static/play/vendor/codemirror.js",
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "eof",  // the MIT notices of CodeMirror and Lezer travel with the bundle
  logLevel: "warning",
});
