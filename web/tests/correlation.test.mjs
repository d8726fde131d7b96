/**
 * The correlation view's model: parsing the server's spans JSON (tests/fixtures/api/correlation.json,
 * span_flamegraph*.json, emitted by tests/test_contract.py), span categories, selections,
 * aggregates, the span flame graph query, and the URL keys span / children / agg.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parseCorrelation, parseSpanFlamegraph, ApiShapeError } from "../js/model/api.js";
import {
  NO_SPAN, aggregateSpans, attributeText, forkDepth, orderedAttributes, repeatedNames, resolveSelection, selectionWindows,
  spanCategory, spanFlamegraphParams,
} from "../js/model/spans.js";
import { checkTree, treeFromNested } from "../js/model/tree.js";
import { parseLocation, buildLocation, DEFAULTS } from "../js/model/urlstate.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "api");

function fixture(name) {
  const path = join(DIR, `${name}.json`);
  return existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : null;
}

const raw = fixture("correlation");
const skip = raw ? false : "no correlation.json fixture yet (written by tests/test_contract.py)";

test("correlation: spans in tree order with depths, times in ns, hostile names verbatim", { skip }, () => {
  const c = parseCorrelation(raw);
  assert.equal(c.spans.length, raw.spans.length);
  assert.ok(c.spans.length >= 4);
  const position = new Map(c.spans.map((s, i) => [s.spanId, i]));
  for (const s of c.spans) {
    if (s.parentId && position.has(s.parentId)) {
      assert.ok(position.get(s.parentId) < position.get(s.spanId), "parent before child");
      assert.equal(s.depth, c.spans[position.get(s.parentId)].depth + 1);
    }
    assert.equal(s.endNs, s.startNs + s.durationNs);
    const row = raw.spans.find((r) => r.span_id === s.spanId);
    assert.equal(s.cpuNs, Math.round(row.cpu_s * 1e9));
    assert.equal(s.waitNs, Math.round(row.wait_s * 1e9));
    assert.equal(s.name, row.name, "names are kept verbatim (escaping is the view's job)");
  }
  assert.ok(c.spans.some((s) => s.name.includes("<script>")));
  assert.ok(c.roots.has(c.spans[0].spanId));
  assert.equal(c.window[0], raw.window.start_ns);
  for (const lane of c.lanes) {
    assert.equal(lane.start.length, lane.state.length);
    for (let i = 0; i < lane.start.length; i++) assert.ok(lane.end[i] >= lane.start[i]);
  }
  assert.equal(c.noSpan, null, "an attach profile has no (no span) entry");
});

test("correlation: a malformed body fails loudly with the field named", () => {
  assert.throws(() => parseCorrelation({ spans: [] }), ApiShapeError);
  assert.throws(() => parseCorrelation({ window: { start_ns: 0, end_ns: 1 }, spans: [{ name: "x" }], lanes: [] }), /start_ns/);
  const base = { profile_id: 1, window: { start_ns: 0, end_ns: 10 }, spans: [], lanes: [] };
  const row = { span_id: null, name: "(no span)", kind: "none", start_ns: 0, duration_ns: 10, samples: 1, cpu_s: 0, wait_s: 0, runnable_s: 0, self_s: 0, uncovered_s: 0 };
  assert.throws(() => parseCorrelation({ ...base, no_span: { ...row, intervals: [[0]] } }), /intervals/);
  const parsed = parseCorrelation({ ...base, no_span: { ...row, intervals: [[0, 4], [6, 10]] } });
  assert.deepEqual(parsed.noSpan.intervals, [[0, 4], [6, 10]]);
  assert.deepEqual(resolveSelection(parsed, { span: NO_SPAN }).selection, { kind: "none", spans: [] });
  assert.deepEqual(selectionWindows(parsed, { kind: "none" }), [[0, 4], [6, 10]]);
});

test("span categories from kind and semantic-convention attributes", () => {
  assert.equal(spanCategory({ kind: "client", attributes: { "db.system": "sqlite", "db.statement": "SELECT 1" } }), "db");
  assert.equal(spanCategory({ kind: "internal", attributes: { "db.query.text": "SELECT 1" } }), "db");
  assert.equal(spanCategory({ kind: "client", attributes: { "http.method": "GET", "http.url": "http://x" } }), "http");
  assert.equal(spanCategory({ kind: "client", attributes: { "url.full": "http://x" } }), "http");
  assert.equal(spanCategory({ kind: "server", attributes: { "http.route": "/a" } }), "server");
  assert.equal(spanCategory({ kind: "producer", attributes: {} }), "messaging");
  assert.equal(spanCategory({ kind: "client", attributes: {} }), "internal");
  assert.equal(spanCategory({ kind: "internal", attributes: { "url.full": "javascript:alert(1)" } }), "internal");
  assert.equal(spanCategory({ kind: "internal", attributes: { __proto__: null } }), "internal");
});

test("selection: one span, every span of its name, unknown ids reported", { skip }, () => {
  const c = parseCorrelation(raw);
  const db = c.spans.find((s) => spanCategory(s) === "db");
  const one = resolveSelection(c, { span: db.spanId });
  assert.equal(one.selection.kind, "span");
  assert.deepEqual(selectionWindows(c, one.selection), [[db.startNs, db.endNs]]);
  const named = c.spans.filter((s) => s.name === db.name);
  assert.ok(named.length >= 2, "the fixture has a repeated name");
  const all = resolveSelection(c, { span: db.spanId, aggregate: true });
  assert.equal(all.selection.kind, "name");
  assert.deepEqual(all.selection.spans.map((s) => s.spanId), named.map((s) => s.spanId));
  assert.equal(repeatedNames(c.spans).get(db.name), named.length);
  const agg = aggregateSpans(all.selection.spans);
  assert.equal(agg.count, named.length);
  assert.equal(agg.durationNs, named.reduce((t, s) => t + s.durationNs, 0));
  assert.equal(agg.samples, named.reduce((t, s) => t + s.samples, 0));
  assert.equal(agg.maxNs, Math.max(...named.map((s) => s.durationNs)));
  assert.equal(spanFlamegraphParams(all.selection, true).toString(), `name=${encodeURIComponent(db.name)}&children=1`);
  assert.equal(spanFlamegraphParams(one.selection, false).toString(), `span_id=${db.spanId}`);
  assert.equal(spanFlamegraphParams({ kind: "none" }, true).toString(), "no_span=1");
  const missing = resolveSelection(c, { span: "ffffffffffffffff" });
  assert.equal(missing.selection, null);
  assert.match(missing.problem, /not joined/);
  assert.match(resolveSelection(c, { span: NO_SPAN }).problem, /no "\(no span\)"/);
  assert.deepEqual(resolveSelection(c, {}), { selection: null, problem: null });
});

test("attributes: SQL and URL first, values as text", { skip }, () => {
  const c = parseCorrelation(raw);
  const db = c.spans.find((s) => spanCategory(s) === "db");
  const ordered = orderedAttributes(db.attributes);
  assert.equal(ordered[0][0], "SQL");
  assert.equal(ordered[0][2], db.attributes["db.statement"]);
  assert.ok(ordered.map((o) => o[1]).includes("db.system"));
  assert.deepEqual(orderedAttributes({ b: 1, "url.full": "u", a: 2 }).map((o) => o[1]), ["url.full", "a", "b"]);
  assert.equal(attributeText([1, "a"]), "1, a");
  assert.equal(attributeText({ k: "<b>" }), '{"k":"<b>"}');
  assert.equal(attributeText(null), "");
});

for (const name of ["span_flamegraph", "span_flamegraph_name"]) {
  const body = fixture(name);
  test(`span flame graph: ${name}`, { skip: body ? false : `no ${name}.json fixture yet` }, () => {
    const tree = parseSpanFlamegraph(body);
    assert.deepEqual(checkTree(tree), []);
    assert.equal(tree.info.totalSamples, body.total_samples);
    assert.equal(tree.nodes[tree.info.focus].total, body.root_total_ns);
    if (body.span_id) {
      assert.equal(tree.info.spanId, body.span_id);
      assert.equal(tree.info.children, false);
      const span = parseCorrelation(raw).spans.find((s) => s.spanId === body.span_id);
      // A span without child spans owns every sample taken inside it.
      assert.equal(tree.info.totalSamples, span.samples);
    } else {
      assert.equal(tree.info.name, body.name);
      assert.equal(tree.info.children, true);
    }
  });
}

test("fork depth: the shared outer frames of a span's samples", () => {
  const make = (root) => treeFromNested(root, (n) => ({ kind: "frame", self: 0, cpu: 0, wait: 0, runnable: 0, unknown: 0, samples: 0, file: "", line: 0, ...n }));
  const chain = make({ name: "all", total: 10, children: [{ name: "a", total: 10, children: [{ name: "b", total: 10, children: [
    { name: "c", total: 6, self: 6 }, { name: "d", total: 4, self: 4 }] }] }] });
  assert.equal(forkDepth(chain, 0), 2);
  const selfy = make({ name: "all", total: 10, children: [{ name: "a", total: 10, self: 3, children: [{ name: "b", total: 7, self: 7 }] }] });
  assert.equal(forkDepth(selfy, 0), 1);
  assert.equal(forkDepth(make({ name: "all", total: 0 }), 0), 0);
});

test("URL: span, children and agg survive a round trip; a bad span id is reported", () => {
  const state = { ...DEFAULTS, page: "profile", profile: "4", view: "correlation", span: "00f0a1b2c3d4e5f6", children: true, aggregate: true, window: [0.1, 0.25] };
  const url = buildLocation(state);
  assert.match(url, /view=correlation/);
  const [path, query] = url.split("?");
  const back = parseLocation(path, "?" + query);
  assert.deepEqual(back.problems, []);
  for (const key of ["view", "span", "children", "aggregate", "window"]) assert.deepEqual(back[key], state[key], key);
  assert.equal(parseLocation("/profiles/4", "?view=correlation&span=none").span, NO_SPAN);
  const bad = parseLocation("/profiles/4", "?view=correlation&span=%3Cscript%3E");
  assert.equal(bad.span, null);
  assert.match(bad.problems[0], /ignored span=<script>/);
  assert.equal(buildLocation({ ...DEFAULTS, page: "profile", profile: "4" }), "/profiles/4");
});
