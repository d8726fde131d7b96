import { test } from "node:test";
import assert from "node:assert/strict";
import { treeFromNested, layoutFlame, hitTest, compileSearch, searchTree, checkTree, maxSelf } from "../js/model/tree.js";

function n(name, self, children = [], states = {}) {
  const total = self + children.reduce((s, c) => s + c.total, 0);
  return { name, file: `/app/${name}.py`, line: 1, self, total, cpu: states.cpu ?? total, wait: states.wait ?? 0, children };
}

function sample() {
  //            root (100)
  //      a (60)          b (40, self 10)
  //   c (50) d (10)       c (30)
  //   e (50)
  const raw = n("root", 0, [n("a", 0, [n("c", 0, [n("e", 50)]), n("d", 10)]), n("b", 10, [n("c", 30)])]);
  return treeFromNested(raw, (r) => ({ id: r.name, name: r.name, file: r.file, line: r.line, total: r.total, self: r.self, cpu: r.cpu, wait: r.wait, runnable: 0, unknown: 0, samples: 1, waits: null, pruned: false, kind: "frame" }));
}

test("nested trees become preorder arrays with parents, depths and contiguous subtrees", () => {
  const tree = sample();
  assert.deepEqual(tree.nodes.map((x) => x.name), ["root", "a", "c", "e", "d", "b", "c"]);
  assert.deepEqual(tree.nodes.map((x) => x.depth), [0, 1, 2, 3, 2, 1, 2]);
  assert.equal(tree.subtreeEnd(1), 5);
  assert.deepEqual(tree.pathTo(3), [0, 1, 2, 3]);
  assert.deepEqual(checkTree(tree), []);
  assert.equal(tree.maxDepth, 3);
  assert.equal(maxSelf(tree), 50);
});

test("flame layout: widths proportional to totals, children inside parents", () => {
  const tree = sample();
  const layout = layoutFlame(tree, 0, 0);
  assert.equal(layout.count, 7);
  const at = (name, depth) => {
    for (let p = 0; p < layout.count; p++) if (tree.nodes[layout.index[p]].name === name && layout.depth[p] === depth) return [layout.x0[p], layout.x1[p]];
    return null;
  };
  assert.deepEqual(at("root", 0), [0, 1]);
  assert.deepEqual(at("a", 1), [0, 0.6]);
  assert.deepEqual(at("b", 1), [0.6, 1]);
  assert.deepEqual(at("d", 2), [0.5, 0.6]);
  const [c0, c1] = at("c", 2);
  assert.ok(Math.abs(c0 - 0) < 1e-12 && Math.abs(c1 - 0.5) < 1e-12);
  for (let p = 0; p < layout.count; p++) {
    const node = tree.nodes[layout.index[p]];
    if (node.parent < 0) continue;
    const q = Array.from(layout.index).indexOf(node.parent);
    assert.ok(layout.x0[p] >= layout.x0[q] - 1e-12 && layout.x1[p] <= layout.x1[q] + 1e-12, `${node.name} inside its parent`);
  }
});

test("zoomed layout: the focus spans the width, ancestors stay full width, other branches vanish", () => {
  const tree = sample();
  const focus = 1; // a
  const layout = layoutFlame(tree, focus, 0);
  const names = Array.from(layout.index, (i) => tree.nodes[i].name);
  assert.deepEqual(names.slice(0, 2), ["root", "a"]);
  assert.ok(!names.includes("b"));
  const d = Array.from(layout.index).indexOf(4);
  assert.ok(Math.abs(layout.x0[d] - 50 / 60) < 1e-12 && Math.abs(layout.x1[d] - 1) < 1e-12);
  assert.equal(layout.focus, 1);
});

test("narrow frames are dropped with their subtrees", () => {
  const tree = sample();
  const layout = layoutFlame(tree, 0, 0.15);
  const names = Array.from(layout.index, (i) => tree.nodes[i].name);
  assert.ok(!names.includes("d"), "d is 10% wide");
  assert.equal(layout.count, 6);
});

test("hit testing finds the frame under a point", () => {
  const tree = sample();
  const layout = layoutFlame(tree, 0, 0);
  assert.equal(tree.nodes[layout.index[hitTest(layout, 0.55, 2)]].name, "d");
  assert.equal(tree.nodes[layout.index[hitTest(layout, 0.7, 1)]].name, "b");
  assert.equal(hitTest(layout, 0.95, 3), -1);
  assert.equal(hitTest(layout, 0.5, 9), -1);
});

test("search marks matches and counts nested matches once", () => {
  const tree = sample();
  const { test: match } = compileSearch("C");
  const r = searchTree(tree, match);
  assert.equal(r.count, 2);
  assert.equal(r.matchedNs, 80);
  assert.equal(r.share, 0.8);
  const nested = searchTree(tree, compileSearch("^(a|c|e)$", true).test);
  assert.equal(nested.count, 4);
  assert.equal(nested.matchedNs, 90, "c and e under a count once with a");
  assert.match(compileSearch("(", true).error, /invalid regular expression/);
  assert.equal(compileSearch("", false).test, null);
});

test("checkTree reports inconsistent totals", () => {
  const tree = sample();
  tree.nodes[1].total = 10;
  assert.ok(checkTree(tree).some((p) => p.includes("(a)")));
});
