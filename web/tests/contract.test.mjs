/**
 * The JS half of the API contract: every fixture the real server emitted into
 * tests/fixtures/api/ (see tests/test_contract.py and docs/api.md) must parse with the model
 * the views use, with every field they read present and typed, and consistent layouts.
 * Fixture files are matched by name prefix: profiles*, profile*, flamegraph*, functions*,
 * sandwich*, search*, timeline*, diff*. Tests skip, saying so, while a fixture is missing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  parseProfileList, parseProfileInfo, parseFlamegraph, parseFunctionTable, parseSandwich,
  parseSearch, parseTimeline, parseDiff, errorMessage, parseFormats,
} from "../js/model/api.js";
import { checkTree, layoutFlame, hitTest } from "../js/model/tree.js";
import { nodeColor, diffColor, COLOR_MODES } from "../js/model/colors.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "api");
const files = existsSync(DIR) ? readdirSync(DIR).filter((f) => f.endsWith(".json")).sort() : [];

function fixtures(kind) {
  // "profile" must not swallow "profiles": match the prefix followed by a non-letter.
  const re = new RegExp(`^${kind}(?![a-z])`);
  return files.filter((f) => re.test(f)).map((f) => [f, JSON.parse(readFileSync(join(DIR, f), "utf8"))]);
}

function forEach(kind, body) {
  const found = fixtures(kind);
  if (!found.length) {
    test(`${kind} fixtures`, { skip: `no ${kind}*.json in ${DIR} yet (written by tests/test_contract.py)` }, () => {});
    return;
  }
  for (const [name, json] of found) test(`${kind}: ${name}`, () => body(json, name));
}

function checkLayout(tree, name) {
  assert.deepEqual(checkTree(tree), [], `${name}: tree totals consistent`);
  const focus = tree.info && Number.isInteger(tree.info.focus) ? tree.info.focus : 0;
  const layout = layoutFlame(tree, focus, 0);
  assert.ok(layout.count >= 1, "at least the root is laid out");
  const position = new Map();
  for (let p = 0; p < layout.count; p++) position.set(layout.index[p], p);
  for (let p = 0; p < layout.count; p++) {
    assert.ok(layout.x0[p] >= -1e-9 && layout.x1[p] <= 1 + 1e-9 && layout.x1[p] >= layout.x0[p], "within [0, 1]");
    const node = tree.nodes[layout.index[p]];
    const q = position.get(node.parent);
    if (q !== undefined && node.index > focus) {
      assert.ok(layout.x0[p] >= layout.x0[q] - 1e-9 && layout.x1[p] <= layout.x1[q] + 1e-9, `${name}: child ${node.index} inside its parent`);
    }
    assert.equal(hitTest(layout, (layout.x0[p] + layout.x1[p]) / 2, layout.depth[p]) >= 0, true);
  }
  for (const node of tree.nodes) {
    assert.equal(typeof node.name, "string");
    assert.equal(typeof node.file, "string");
    assert.ok(Number.isFinite(node.total) && node.total >= 0);
    for (const mode of COLOR_MODES) assert.match(nodeColor(node, mode, { maxSelf: 1 }), /^(rgb|hsl)\(/);
  }
}

test("fixture directory", { skip: files.length ? false : `no fixtures in ${DIR} yet` }, () => {
  assert.ok(files.length > 0);
});

forEach("profiles", (json) => {
  const list = parseProfileList(json);
  for (const p of list) {
    assert.ok(Number.isInteger(p.id) && p.sampleCount >= 0 && p.durationNs >= 0);
    assert.ok(p.cpuNs >= 0 && p.waitNs >= 0 && p.runnableNs >= 0);
  }
  for (let i = 1; i < list.length; i++) assert.ok(list[i - 1].startMs >= list[i].startMs, "newest first");
});

forEach("profile", (json) => {
  const info = parseProfileInfo(json);
  assert.ok(info.timeRange[1] >= info.timeRange[0]);
  assert.ok(info.threads.length >= 1);
  info.threads.forEach((t, i) => {
    assert.equal(t.index, i, "threads in profile order");
    assert.ok(Math.abs(t.cpuNs + t.waitNs + t.runnableNs + t.unknownNs - t.wallNs) <= 1);
  });
  assert.equal(typeof info.originNs, "string");
  assert.match(info.originNs, /^\d+$/);
});

forEach("flamegraph", (json, name) => {
  const tree = parseFlamegraph(json);
  checkLayout(tree, name);
  const root = tree.nodes[tree.info.focus];
  assert.equal(root.total, tree.info.rootTotalNs, "view root total");
  assert.equal(tree.info.focus, (json.path || []).length, "path nodes come first");
  for (const node of tree.nodes) {
    if (node.kind === "other") assert.ok(node.folded >= 1 && node.children.length === 0);
    assert.ok(node.waits === null || typeof node.waits === "object");
  }
});

forEach("functions", (json) => {
  const table = parseFunctionTable(json);
  for (const f of table.functions) {
    assert.ok(f.self <= f.total + 1, `${f.name}: self <= total`);
    assert.ok(Math.abs(f.cpu + f.wait + f.runnable - f.total) <= f.total * 1e-9 + 1 || f.cpu + f.wait + f.runnable <= f.total);
    assert.ok(f.total <= table.rootTotalNs + 1);
  }
});

forEach("sandwich", (json, name) => {
  const s = parseSandwich(json);
  assert.equal(s.callees.nodes[0].name, s.function.name, "callees root is the function");
  assert.equal(s.callers.nodes[0].name, s.function.name, "callers root is the function");
  assert.equal(s.callees.nodes[0].total, s.totalNs);
  checkLayout(s.callees, `${name} callees`);
  for (const node of s.callers.nodes) for (const c of node.children) assert.ok(s.callers.nodes[c].total <= node.total + 1);
});

forEach("search", (json) => {
  const r = parseSearch(json);
  assert.ok(r.fraction >= 0 && r.fraction <= 1);
  assert.ok(r.matchedNs <= r.rootTotalNs);
  for (const id of r.nodeIds) assert.ok(Number.isInteger(id));
});

forEach("timeline", (json) => {
  const t = parseTimeline(json);
  assert.ok(t.endNs > t.startNs && t.width >= 1);
  for (const track of t.tracks) {
    for (const row of track.depths) {
      assert.ok(row.depth >= 1 && row.depth <= track.maxDepth);
      for (let i = 0; i < row.start.length; i++) {
        assert.ok(row.end[i] > row.start[i], "non-empty interval");
        assert.ok(row.start[i] >= t.startNs && row.end[i] <= t.endNs, "inside the window");
        if (i) assert.ok(row.start[i] >= row.end[i - 1], "sorted, not overlapping");
        assert.ok(t.nodes.has(row.node[i]), "node described in the nodes table");
      }
    }
    const st = track.states;
    for (let i = 0; i < st.start.length; i++) {
      assert.ok(["cpu", "waiting", "runnable", "unknown"].includes(st.state[i]));
      assert.ok(st.reason[i] === null || st.state[i] === "waiting");
    }
  }
});

forEach("diff", (json, name) => {
  const d = parseDiff(json);
  checkLayout(d.tree, name);
  for (const node of d.tree.nodes) {
    assert.ok(Math.abs(node.delta - (node.bFraction - node.aFraction)) < 1e-9);
    assert.match(diffColor(node.delta), /^rgb\(/);
  }
  for (const c of d.changes) assert.ok(Number.isFinite(c.deltaTotal) && Number.isFinite(c.deltaSelf));
});

forEach("error", (json) => {
  const message = errorMessage(json, json.error && json.error.status);
  assert.equal(typeof message, "string");
  assert.ok(message.length > 0 && !message.startsWith("request failed"), "the server's own message is shown");
  assert.ok(!/Traceback|<html/i.test(message));
});


test("formats: every download format with what it drops", { skip: existsSync(join(DIR, "formats.json")) ? false : "no formats fixture" }, () => {
  const formats = parseFormats(JSON.parse(readFileSync(join(DIR, "formats.json"), "utf8")));
  const names = formats.map((f) => f.name);
  for (const name of ["speedscope", "pprof", "perfetto", "firefox", "collapsed", "profviz"]) assert.ok(names.includes(name), name);
  assert.equal(formats.find((f) => f.name === "pprof").extension, ".pb.gz");
  assert.match(formats.find((f) => f.name === "collapsed").drops, /states/);
  assert.throws(() => parseFormats({ formats: [{ name: 1 }] }));
});
