/**
 * Flame trees: the structure the flame graph, icicle, sandwich and diff views draw, and the
 * layout maths over it. DOM-free (imported by node tests too).
 *
 * A FlameTree holds `nodes`, an array in pre-order (every parent before its children, each
 * node's subtree contiguous), node 0 the root. A node is
 *   { index, id, parent, depth, name, file, line, total, self, cpu, wait, runnable, gil, unknown,
 *     samples, waits, pruned, children, key, delta? }
 * with times in ns; `id` is the server's node id (used to re-fetch a pruned subtree), `parent`
 * and `children` are indices into `nodes`, `pruned` says the server left out children here,
 * `key` is the function identity ("name\u0000file") used to merge and to diff.
 */

export class FlameTree {
  constructor(nodes, info = {}) {
    this.nodes = nodes;
    this.info = info;
  }

  get root() {
    return this.nodes[0];
  }

  get size() {
    return this.nodes.length;
  }

  /** Indices from the root to `index`, both included. */
  pathTo(index) {
    const path = [];
    for (let i = index; i >= 0; i = this.nodes[i].parent) path.push(i);
    return path.reverse();
  }

  /** The index of the node whose server id is `id`, or -1. */
  indexOfId(id) {
    const wanted = String(id);
    for (const node of this.nodes) if (String(node.id) === wanted) return node.index;
    return -1;
  }

  /** Index one past the end of the subtree of `index` (subtrees are contiguous in pre-order). */
  subtreeEnd(index) {
    const depth = this.nodes[index].depth;
    let end = index + 1;
    while (end < this.nodes.length && this.nodes[end].depth > depth) end++;
    return end;
  }

  /** Largest depth below the root (0 for a root-only tree). */
  get maxDepth() {
    let max = 0;
    for (const node of this.nodes) if (node.depth > max) max = node.depth;
    return max;
  }
}

export function functionKey(name, file) {
  return `${name}\u0000${file || ""}`;
}

/**
 * Build a FlameTree from nested nodes `{..., children: [...]}` (the API's shape after
 * normalisation) by a pre-order walk. `normalise(raw)` maps one raw node to the node fields
 * listed in the module docstring (except index/parent/depth/children, which this fills in).
 * Children are kept in the given order.
 */
export function treeFromNested(rawRoot, normalise, info = {}) {
  const nodes = [];
  const stack = [[rawRoot, -1, 0]];
  while (stack.length) {
    const [raw, parent, depth] = stack.pop();
    const node = normalise(raw);
    node.index = nodes.length;
    node.parent = parent;
    node.depth = depth;
    node.children = [];
    node.key = functionKey(node.name, node.file);
    nodes.push(node);
    if (parent >= 0) nodes[parent].children.push(node.index);
    const kids = raw.children || [];
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], node.index, depth + 1]);
  }
  return new FlameTree(nodes, info);
}

/**
 * Lay out the tree for drawing, focused on node `focus` (the zoomed frame; 0 for the root).
 *
 * The focus spans the full width [0, 1]; its ancestors are drawn full width beneath it (they
 * are the breadcrumb of the zoom); its descendants get widths proportional to their totals,
 * children left to right in tree order. Nodes narrower than `minWidth` (a fraction of the full
 * width, e.g. 0.5 px / canvas width) are dropped with their subtrees.
 *
 * Returns { count, index: Int32Array, x0, x1: Float64Array, depth: Int32Array, maxDepth,
 * byDepth: Array<Int32Array of item positions sorted by x0>, focus }.
 */
export function layoutFlame(tree, focus = 0, minWidth = 0) {
  const nodes = tree.nodes;
  const focusNode = nodes[focus] || nodes[0];
  const focusTotal = focusNode.total || 0;
  const end = tree.subtreeEnd(focusNode.index);
  const capacity = end - focusNode.index + focusNode.depth;
  const index = new Int32Array(capacity);
  const x0 = new Float64Array(capacity);
  const x1 = new Float64Array(capacity);
  const depth = new Int32Array(capacity);
  let count = 0;
  let maxDepth = 0;
  for (const i of tree.pathTo(focusNode.index)) {
    index[count] = i;
    x0[count] = 0;
    x1[count] = 1;
    depth[count] = nodes[i].depth;
    count++;
  }
  maxDepth = focusNode.depth;
  if (focusTotal > 0) {
    // Walk the focus subtree; `cursor[i]` is where the next child of node i begins.
    const stack = [];
    const kids = focusNode.children;
    for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
    const cursor = new Map([[focusNode.index, 0]]);
    while (stack.length) {
      const i = stack.pop();
      const node = nodes[i];
      const left = cursor.get(node.parent);
      const width = node.total / focusTotal;
      cursor.set(node.parent, left + width);
      if (width < minWidth || width <= 0) continue;
      index[count] = i;
      x0[count] = left;
      x1[count] = Math.min(1, left + width);
      depth[count] = node.depth;
      count++;
      if (node.depth > maxDepth) maxDepth = node.depth;
      cursor.set(i, left);
      for (let k = node.children.length - 1; k >= 0; k--) stack.push(node.children[k]);
    }
  }
  const buckets = Array.from({ length: maxDepth + 1 }, () => []);
  for (let p = 0; p < count; p++) buckets[depth[p]].push(p);
  const byDepth = buckets.map((positions) => Int32Array.from(positions.sort((a, b) => x0[a] - x0[b])));
  return {
    count,
    index: index.subarray(0, count),
    x0: x0.subarray(0, count),
    x1: x1.subarray(0, count),
    depth: depth.subarray(0, count),
    maxDepth,
    byDepth,
    focus: focusNode.index,
  };
}

/** The layout position (not node index) under fraction `x` in row `depth`, or -1. */
export function hitTest(layout, x, depth) {
  const row = layout.byDepth[depth];
  if (!row || !row.length) return -1;
  let lo = 0;
  let hi = row.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const p = row[mid];
    if (x < layout.x0[p]) hi = mid - 1;
    else if (x >= layout.x1[p]) lo = mid + 1;
    else return p;
  }
  return -1;
}

/**
 * Compile a search into a predicate over nodes, matching the function name or "file:line".
 * Substring search is case-insensitive; regex search uses the pattern as given with the "i"
 * flag. Returns { test, error } where error is a one-line message for an invalid regex.
 */
export function compileSearch(query, regex = false) {
  const text = String(query || "");
  if (!text) return { test: null, error: null };
  if (regex) {
    let re;
    try {
      re = new RegExp(text, "i");
    } catch (err) {
      return { test: null, error: `invalid regular expression: ${err.message}` };
    }
    return { test: (node) => re.test(node.name) || re.test(`${node.file}:${node.line}`), error: null };
  }
  const needle = text.toLowerCase();
  return {
    test: (node) => String(node.name).toLowerCase().includes(needle) || String(node.file || "").toLowerCase().includes(needle),
    error: null,
  };
}

/**
 * Mark the nodes matching `test` and measure the matched share: the time spent in matching
 * frames, counting nested matches once, as a fraction of the node `within` (default the root).
 * Returns { matched: Uint8Array per node, count, matchedNs, share }.
 */
export function searchTree(tree, test, within = 0) {
  const nodes = tree.nodes;
  const matched = new Uint8Array(nodes.length);
  if (!test) return { matched, count: 0, matchedNs: 0, share: 0 };
  const end = tree.subtreeEnd(within);
  let count = 0;
  let matchedNs = 0;
  let openUntil = -1;
  for (let i = within; i < end; i++) {
    const node = nodes[i];
    if (i === 0 && node.parent < 0 && !node.name) continue;
    if (test(node)) {
      matched[i] = 1;
      count++;
      if (i >= openUntil) {
        matchedNs += node.total;
        openUntil = tree.subtreeEnd(i);
      }
    }
  }
  const base = nodes[within].total || 0;
  return { matched, count, matchedNs, share: base > 0 ? matchedNs / base : 0 };
}

/** The largest self time among nodes of the subtree of `within` (for "hot" colouring). */
export function maxSelf(tree, within = 0) {
  let max = 0;
  const end = tree.subtreeEnd(within);
  for (let i = within; i < end; i++) if (tree.nodes[i].self > max) max = tree.nodes[i].self;
  return max;
}

/** Check layout invariants; returns a list of problems (empty when consistent). For tests. */
export function checkTree(tree) {
  const problems = [];
  const eps = 1e-6;
  for (const node of tree.nodes) {
    let childSum = 0;
    for (const c of node.children) {
      const child = tree.nodes[c];
      if (child.parent !== node.index) problems.push(`node ${c} lists parent ${child.parent}, expected ${node.index}`);
      if (child.depth !== node.depth + 1) problems.push(`node ${c} has depth ${child.depth} under depth ${node.depth}`);
      childSum += child.total;
    }
    if (childSum + node.self > node.total * (1 + eps) + 1) {
      problems.push(`node ${node.index} (${node.name}): children ${childSum} + self ${node.self} > total ${node.total}`);
    }
    const parts = (node.cpu || 0) + (node.wait || 0) + (node.runnable || 0) + (node.gil || 0) + (node.unknown || 0);
    if (Math.abs(parts - node.total) > Math.max(1, node.total * eps)) {
      problems.push(`node ${node.index} (${node.name}): states sum ${parts} != total ${node.total}`);
    }
  }
  return problems;
}
