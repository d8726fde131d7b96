/**
 * d3 v7 as an ES module export.
 *
 * The vendored bundle (web/vendor/d3.min.js) is UMD; index.html loads it with a classic
 * <script src> before any module runs, which sets globalThis.d3. Modules import it from here.
 */
export const d3 = globalThis.d3;
if (!d3) {
  throw new Error("profviz: d3 was not loaded; index.html must load vendor/d3.min.js before the app modules");
}
