import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..");
const html = readFileSync(join(WEB, "index.html"), "utf8");

function modules(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? modules(path) : name.endsWith(".js") ? [path] : [];
  });
}

test("index.html preloads every module and nothing that does not exist", () => {
  const preloaded = new Set([...html.matchAll(/<link rel="modulepreload" href="\/([^"]+)">/g)].map((m) => m[1]));
  const entry = new Set(["js/main.js", "js/boot.js"]);
  const all = modules(join(WEB, "js")).map((p) => relative(WEB, p).split("\\").join("/"));
  for (const mod of all) if (!entry.has(mod)) assert.ok(preloaded.has(mod), `${mod} missing from index.html modulepreload`);
  for (const mod of preloaded) assert.ok(all.includes(mod), `${mod} preloaded but not in web/js`);
});

test("index.html obeys the CSP: no inline scripts, styles or handlers", () => {
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
    assert.match(m[1], /\bsrc="\/[^"]+"/, "every script has a same-origin src");
    assert.equal(m[2].trim(), "", "no inline script body");
  }
  assert.doesNotMatch(html, /\sstyle=/);
  assert.doesNotMatch(html, /\son[a-z]+=/i);
  assert.doesNotMatch(html, /<style\b/);
  assert.doesNotMatch(html, /https?:\/\//, "no CDN");
});

test("no module writes HTML from strings", () => {
  for (const path of modules(join(WEB, "js"))) {
    const source = readFileSync(path, "utf8");
    assert.doesNotMatch(source, /\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function\(/, relative(WEB, path));
    assert.doesNotMatch(source, /setAttribute\(\s*["']style["']/, relative(WEB, path));
  }
});
