/**
 * The JSON API (docs/api.md) read into the structures the views draw. DOM-free (node tests
 * import it and run it over the server's real responses in tests/fixtures/api/).
 *
 * Every parse function checks the fields it uses and throws an ApiShapeError naming the
 * endpoint and field when one is missing or of the wrong type, so contract drift fails loudly.
 */
import { FlameTree, functionKey } from "./tree.js";

export { statesParam, filterParams } from "./query.js";

export class ApiShapeError extends Error {}

function need(condition, where, what) {
  if (!condition) throw new ApiShapeError(`${where}: ${what}`);
}

function num(obj, key, where) {
  need(obj && typeof obj[key] === "number" && Number.isFinite(obj[key]), where, `${key} is not a number (got ${obj ? typeof obj[key] : "no object"})`);
  return obj[key];
}

function str(obj, key, where) {
  need(obj && typeof obj[key] === "string", where, `${key} is not a string (got ${obj ? typeof obj[key] : "no object"})`);
  return obj[key];
}

function arr(obj, key, where) {
  need(obj && Array.isArray(obj[key]), where, `${key} is not an array`);
  return obj[key];
}

/** The state names of the API, in the order of our node fields. */
export const API_STATES = ["cpu", "waiting", "runnable", "gil", "unknown"];

/** A function's identity as the API sends it: name, file, line, package, origin. */
function functionIdentity(f, where) {
  return {
    name: str(f, "name", where),
    file: str(f, "file", where),
    line: typeof f.line === "number" ? f.line : 0,
    package: typeof f.package === "string" ? f.package : "",
    origin: typeof f.origin === "string" ? f.origin : "unknown",
  };
}

export function parseFunctions(list, where) {
  need(Array.isArray(list), where, "functions is not an array");
  return list.map((f, i) => functionIdentity(f, `${where}.functions[${i}]`));
}

/** One profile of the list / detail: plain numbers and strings, times in ns/ms. */
export function parseProfileEntry(p, where = "profile") {
  const entry = {
    id: num(p, "id", where),
    kind: str(p, "kind", where),
    pid: typeof p.pid === "number" ? p.pid : null,
    cmdline: typeof p.cmdline === "string" ? p.cmdline : "",
    startMs: num(p, "start_ms", where),
    durationNs: num(p, "duration_ns", where),
    rateHz: typeof p.rate_hz === "number" ? p.rate_hz : null,
    sampleCount: num(p, "sample_count", where),
    errors: typeof p.errors === "number" ? p.errors : 0,
    threads: typeof p.threads === "number" ? p.threads : 0,
    cpuNs: num(p, "cpu_ns", where),
    waitNs: num(p, "wait_ns", where),
    runnableNs: num(p, "runnable_ns", where),
    gilNs: typeof p.gil_ns === "number" ? p.gil_ns : 0,
    labels: p.labels && typeof p.labels === "object" ? p.labels : {},
    notes: Array.isArray(p.notes) ? p.notes.map(String) : [],
  };
  return entry;
}

/** GET /api/profiles -> [entry] (newest first, as sent). */
export function parseProfileList(json) {
  return arr(json, "profiles", "profiles").map((p, i) => parseProfileEntry(p, `profiles[${i}]`));
}

/** GET /api/formats -> [{ name, description, extension, drops (string or null) }]: what a profile downloads as. */
export function parseFormats(json) {
  const where = "formats";
  need(json && Array.isArray(json.formats), where, "formats is not an array");
  return json.formats.map((f, i) => {
    const w = `${where}[${i}]`;
    need(f && typeof f.name === "string" && typeof f.description === "string" && typeof f.extension === "string", w,
      "name, description or extension is not a string");
    need(f.drops === null || typeof f.drops === "string", w, "drops is neither a string nor null");
    return { name: f.name, description: f.description, extension: f.extension, drops: f.drops };
  });
}

/** GET /api/profiles/<id> -> { profile, originMs, timeRange: [startNs, endNs], threads, states, waitReasons }. */
export function parseProfileInfo(json) {
  const where = "profile info";
  need(json && typeof json.profile === "object", where, "profile is missing");
  const range = json.time_range;
  need(range && typeof range === "object", where, "time_range is missing");
  const threads = arr(json, "threads", where).map((t, i) => {
    const w = `${where}.threads[${i}]`;
    return {
      index: num(t, "index", w),
      pid: typeof t.pid === "number" ? t.pid : null,
      tid: num(t, "tid", w),
      name: typeof t.name === "string" ? t.name : "",
      wallNs: num(t, "wall_ns", w),
      cpuNs: num(t, "cpu_ns", w),
      waitNs: num(t, "wait_ns", w),
      runnableNs: num(t, "runnable_ns", w),
      gilNs: typeof t.gil_ns === "number" ? t.gil_ns : 0,
      unknownNs: typeof t.unknown_ns === "number" ? t.unknown_ns : 0,
      samples: num(t, "samples", w),
      waits: Array.isArray(t.waits) ? t.waits : [],
    };
  });
  return {
    profile: parseProfileEntry(json.profile, `${where}.profile`),
    originMs: num(json, "origin_ms", where),
    originNs: typeof json.origin_ns === "string" ? json.origin_ns : String(json.origin_ns ?? ""),
    timeRange: [num(range, "start_ns", `${where}.time_range`), num(range, "end_ns", `${where}.time_range`)],
    threads,
    states: json.states && typeof json.states === "object" ? json.states : {},
    waitReasons: Array.isArray(json.wait_reasons) ? json.wait_reasons : [],
  };
}

/** A display label for a thread: "name (tid)" or the tid alone. */
export function threadLabel(thread) {
  return thread.name ? `${thread.name} (${thread.tid})` : String(thread.tid);
}

/**
 * Tree nodes (flamegraph / sandwich / diff) -> FlameTree. `prefix` nodes (the breadcrumb path
 * of a zoomed response) are put first as ancestors of nodes[0]. `extra(raw, node)` may add
 * fields (the diff's a_/b_ values).
 */
export function treeFromApiNodes(rawNodes, functions, where, { path = [], extra = null, timeKeys = null } = {}) {
  need(Array.isArray(rawNodes) && rawNodes.length > 0, where, "nodes is empty or not an array");
  const keys = timeKeys || { total: "total_ns", self: "self_ns", cpu: "cpu_ns", wait: "wait_ns", runnable: "runnable_ns", gil: "gil_ns", unknown: "unknown_ns" };
  const nodes = [];
  const indexOfId = new Map();
  const describe = (fnIndex, kind, folded) => {
    if (kind === "other") return { name: `(${folded || "some"} more)`, file: "", line: 0, package: "", origin: "unknown" };
    if (fnIndex < 0 || fnIndex === undefined) return { name: "all", file: "", line: 0, package: "", origin: "unknown" };
    const f = functions[fnIndex];
    need(f, where, `fn ${fnIndex} is not in functions (have ${functions.length})`);
    return f;
  };
  path.forEach((p, i) => {
    const w = `${where}.path[${i}]`;
    const id = num(p, "id", w);
    const fnIndex = typeof p.fn === "number" ? p.fn : -1;
    const f = describe(fnIndex, fnIndex < 0 ? "root" : "frame", 0);
    const total = num(p, "total_ns", w);
    const node = {
      index: nodes.length, id, parent: nodes.length - 1, depth: nodes.length, kind: fnIndex < 0 ? "root" : "frame",
      fn: fnIndex, name: f.name, file: f.file, line: f.line, package: f.package, origin: f.origin,
      total, self: 0, cpu: 0, wait: 0, runnable: 0, gil: 0, unknown: total, samples: 0, waits: null,
      pruned: true, children: [], folded: 0, ancestorOnly: true,
    };
    node.key = functionKey(node.name, node.file);
    if (nodes.length) nodes[nodes.length - 1].children.push(node.index);
    indexOfId.set(id, node.index);
    nodes.push(node);
  });
  const base = nodes.length;
  rawNodes.forEach((raw, i) => {
    const w = `${where}.nodes[${i}]`;
    const id = num(raw, "id", w);
    const kind = typeof raw.kind === "string" ? raw.kind : "frame";
    const fnIndex = typeof raw.fn === "number" ? raw.fn : -1;
    const f = describe(fnIndex, kind, raw.folded);
    let parent;
    if (i === 0) parent = base - 1;
    else {
      parent = indexOfId.get(raw.parent);
      need(parent !== undefined && parent >= base, w, `parent ${raw.parent} does not precede it (nodes must be in preorder)`);
    }
    const node = {
      index: nodes.length,
      id,
      parent,
      depth: parent < 0 ? 0 : nodes[parent].depth + 1,
      kind,
      fn: fnIndex,
      name: f.name,
      file: f.file,
      line: f.line,
      package: f.package,
      origin: f.origin,
      total: num(raw, keys.total, w),
      self: keys.self in raw ? num(raw, keys.self, w) : 0,
      cpu: keys.cpu in raw ? num(raw, keys.cpu, w) : 0,
      wait: keys.wait in raw ? num(raw, keys.wait, w) : 0,
      runnable: keys.runnable in raw ? num(raw, keys.runnable, w) : 0,
      gil: keys.gil && keys.gil in raw ? num(raw, keys.gil, w) : 0,
      unknown: keys.unknown in raw ? num(raw, keys.unknown, w) : 0,
      samples: typeof raw.samples === "number" ? raw.samples : 0,
      folded: typeof raw.folded === "number" ? raw.folded : 0,
      waits: Array.isArray(raw.waits) && raw.waits.length ? Object.fromEntries(raw.waits) : null,
      pruned: kind === "other",
      children: [],
    };
    node.key = functionKey(node.name, node.file);
    if (extra) extra(raw, node, w);
    if (parent >= 0) nodes[parent].children.push(node.index);
    indexOfId.set(id, node.index);
    nodes.push(node);
  });
  // A node whose children include an "other" node had part of its subtree folded away.
  for (const node of nodes) {
    if (node.kind === "other" && node.parent >= 0) nodes[node.parent].hasFolded = true;
  }
  return { nodes, base };
}

/**
 * GET /api/profiles/<id>/flamegraph -> FlameTree whose `info` has { rootId, focus (index of
 * the view root), rootTotalNs, totalSamples, effectiveMinFraction, filters }.
 */
export function parseFlamegraph(json) {
  const where = "flamegraph";
  const functions = parseFunctions(json.functions, where);
  const { nodes, base } = treeFromApiNodes(arr(json, "nodes", where), functions, where, { path: Array.isArray(json.path) ? json.path : [] });
  return new FlameTree(nodes, {
    rootId: num(json, "root", where),
    focus: base,
    rootTotalNs: num(json, "root_total_ns", where),
    totalSamples: num(json, "total_samples", where),
    effectiveMinFraction: typeof json.effective_min_fraction === "number" ? json.effective_min_fraction : 0,
    filters: json.filters || {},
    functions,
  });
}

/** GET .../functions -> { rootTotalNs, totalFunctions, functions: [{name, file, line, package, total, self, cpu, wait, runnable, gil, samples}] }. */
export function parseFunctionTable(json) {
  const where = "functions";
  const rows = arr(json, "functions", where).map((f, i) => {
    const w = `${where}.functions[${i}]`;
    return {
      ...functionIdentity(f, w),
      total: num(f, "total_ns", w),
      self: num(f, "self_ns", w),
      cpu: num(f, "cpu_ns", w),
      wait: num(f, "wait_ns", w),
      runnable: num(f, "runnable_ns", w),
      gil: typeof f.gil_ns === "number" ? f.gil_ns : 0,
      samples: num(f, "samples", w),
    };
  });
  return {
    rootTotalNs: num(json, "root_total_ns", where),
    totalFunctions: typeof json.total_functions === "number" ? json.total_functions : rows.length,
    functions: rows,
  };
}

/** GET .../sandwich -> { function, totalNs, selfNs, rootTotalNs, callers: FlameTree, callees: FlameTree }. */
export function parseSandwich(json) {
  const where = "sandwich";
  const functions = parseFunctions(json.functions, where);
  need(json.function && typeof json.function === "object", where, "function is missing");
  const callers = treeFromApiNodes(arr(json.callers || {}, "nodes", `${where}.callers`), functions, `${where}.callers`).nodes;
  const callees = treeFromApiNodes(arr(json.callees || {}, "nodes", `${where}.callees`), functions, `${where}.callees`).nodes;
  return {
    function: { name: str(json.function, "name", `${where}.function`), file: str(json.function, "file", `${where}.function`), line: json.function.line || 0 },
    totalNs: num(json, "total_ns", where),
    selfNs: num(json, "self_ns", where),
    rootTotalNs: num(json, "root_total_ns", where),
    callers: new FlameTree(callers, { focus: 0 }),
    callees: new FlameTree(callees, { focus: 0 }),
  };
}

/** GET .../search -> { matchedNs, rootTotalNs, fraction, nodeIds: Set<number>, hidden, functions }. */
export function parseSearch(json) {
  const where = "search";
  return {
    matchedNs: num(json, "matched_ns", where),
    rootTotalNs: num(json, "root_total_ns", where),
    fraction: num(json, "matched_fraction", where),
    nodeIds: new Set(arr(json, "node_ids", where)),
    hidden: typeof json.hidden_node_count === "number" ? json.hidden_node_count : 0,
    functions: Array.isArray(json.functions) ? json.functions : [],
  };
}

/**
 * GET .../timeline -> { startNs, endNs, pixelNs, tracks, nodes: Map id -> {id, parent, fn,
 * depth, name, file, line}, functions }. A track is { index, tid, name, samples, maxDepth,
 * depths: [{ depth, start: Float64Array, end: Float64Array, node: Int32Array }],
 * states: { start, end: Float64Array, state: string[], reason: (string|null)[] } }.
 */
export function parseTimeline(json) {
  const where = "timeline";
  const functions = parseFunctions(json.functions, where);
  const table = json.nodes || {};
  const ids = arr(table, "id", `${where}.nodes`);
  const nodes = new Map();
  ids.forEach((id, i) => {
    const fn = table.fn ? table.fn[i] : -1;
    const f = functions[fn] || { name: "?", file: "", line: 0, package: "", origin: "unknown" };
    nodes.set(id, { id, parent: table.parent ? table.parent[i] : null, fn, depth: table.depth ? table.depth[i] : 0, name: f.name, file: f.file, line: f.line, package: f.package, key: functionKey(f.name, f.file) });
  });
  const tracks = arr(json, "threads", where).map((t, ti) => {
    const w = `${where}.threads[${ti}]`;
    const depths = arr(t, "depths", w).map((d, di) => {
      const dw = `${w}.depths[${di}]`;
      const start = arr(d, "start_ns", dw);
      const end = arr(d, "end_ns", dw);
      const node = arr(d, "node", dw);
      need(start.length === end.length && end.length === node.length, dw, "start_ns, end_ns and node differ in length");
      return { depth: num(d, "depth", dw), start: Float64Array.from(start), end: Float64Array.from(end), node: Int32Array.from(node) };
    });
    const s = t.states || {};
    const sw = `${w}.states`;
    const sStart = arr(s, "start_ns", sw);
    const sEnd = arr(s, "end_ns", sw);
    const sState = arr(s, "state", sw);
    need(sStart.length === sEnd.length && sEnd.length === sState.length, sw, "start_ns, end_ns and state differ in length");
    return {
      index: num(t, "index", w),
      tid: num(t, "tid", w),
      name: typeof t.name === "string" ? t.name : "",
      samples: num(t, "samples", w),
      maxDepth: num(t, "max_depth", w),
      depths,
      states: {
        start: Float64Array.from(sStart),
        end: Float64Array.from(sEnd),
        state: sState.map(String),
        reason: Array.isArray(s.reason) ? s.reason : sState.map(() => null),
      },
    };
  });
  return {
    startNs: num(json, "start_ns", where),
    endNs: num(json, "end_ns", where),
    pixelNs: num(json, "pixel_ns", where),
    width: num(json, "width", where),
    tracks,
    nodes,
    functions,
  };
}

/**
 * GET /api/diff -> { tree: FlameTree sized by the base side, each node with aTotal, bTotal,
 * aFraction, bFraction, delta; a, b: {profileId, rootTotalNs}; base; changes }.
 */
export function parseDiff(json) {
  const where = "diff";
  const functions = parseFunctions(json.functions, where);
  const base = json.base === "b" ? "b" : "a";
  const keys = {
    total: `${base}_total_ns`, self: `${base}_self_ns`, cpu: `${base}_cpu_ns`, wait: `${base}_wait_ns`,
    runnable: "__none__", gil: `${base}_gil_ns`, unknown: "__none__",
  };
  const extra = (raw, node, w) => {
    node.aTotal = num(raw, "a_total_ns", w);
    node.bTotal = num(raw, "b_total_ns", w);
    node.aSelf = typeof raw.a_self_ns === "number" ? raw.a_self_ns : 0;
    node.bSelf = typeof raw.b_self_ns === "number" ? raw.b_self_ns : 0;
    node.aFraction = num(raw, "a_fraction", w);
    node.bFraction = num(raw, "b_fraction", w);
    node.delta = num(raw, "delta_fraction", w);
    // Diff nodes carry CPU and wait only; the rest of the total is shown as "other".
    node.unknown = Math.max(0, node.total - node.cpu - node.wait - node.gil);
  };
  const { nodes } = treeFromApiNodes(arr(json, "nodes", where), functions, where, { extra, timeKeys: keys });
  const side = (s, name) => ({
    profileId: num(s || {}, "profile_id", `${where}.${name}`),
    rootTotalNs: num(s || {}, "root_total_ns", `${where}.${name}`),
    filters: (s && s.filters) || {},
  });
  const changes = arr(json, "changes", where).map((c, i) => {
    const w = `${where}.changes[${i}]`;
    return {
      name: str(c, "name", w),
      file: str(c, "file", w),
      line: typeof c.line === "number" ? c.line : 0,
      package: typeof c.package === "string" ? c.package : "",
      aTotal: num(c, "a_total_ns", w),
      bTotal: num(c, "b_total_ns", w),
      aSelf: num(c, "a_self_ns", w),
      bSelf: num(c, "b_self_ns", w),
      deltaTotal: num(c, "delta_total_fraction", w),
      deltaSelf: num(c, "delta_self_fraction", w),
    };
  });
  return { tree: new FlameTree(nodes, { focus: 0 }), a: side(json.a, "a"), b: side(json.b, "b"), base, changes };
}

/** Parse an error body {"error": {"status", "message"}} into a one-line message. */
export function errorMessage(json, status) {
  if (json && json.error && typeof json.error.message === "string") return json.error.message;
  return `request failed with HTTP ${status}`;
}

function secondsNs(obj, key, where) {
  return Math.round(num(obj, key, where) * 1e9);
}

function parseSpanRow(raw, where) {
  const startNs = num(raw, "start_ns", where);
  const durationNs = num(raw, "duration_ns", where);
  return {
    index: typeof raw.index === "number" ? raw.index : -1,
    spanId: raw.span_id === null ? null : str(raw, "span_id", where),
    parentId: typeof raw.parent_id === "string" ? raw.parent_id : null,
    traceId: typeof raw.trace_id === "string" ? raw.trace_id : null,
    name: str(raw, "name", where),
    kind: str(raw, "kind", where),
    status: typeof raw.status === "string" ? raw.status : "unset",
    tid: typeof raw.tid === "number" ? raw.tid : null,
    threadName: typeof raw.thread_name === "string" ? raw.thread_name : "",
    depth: typeof raw.depth === "number" ? raw.depth : 0,
    startNs,
    durationNs,
    endNs: startNs + durationNs,
    samples: num(raw, "samples", where),
    cpuNs: secondsNs(raw, "cpu_s", where),
    waitNs: secondsNs(raw, "wait_s", where),
    runnableNs: secondsNs(raw, "runnable_s", where),
    gilNs: typeof raw.gil_s === "number" ? secondsNs(raw, "gil_s", where) : 0,
    selfNs: secondsNs(raw, "self_s", where),
    uncoveredNs: secondsNs(raw, "uncovered_s", where),
    approximate: raw.approximate === true,
    attributes: raw.attributes && typeof raw.attributes === "object" && !Array.isArray(raw.attributes) ? raw.attributes : {},
    topFunctions: Array.isArray(raw.top_functions) ? raw.top_functions.map((f, i) => ({
      name: str(f, "function", `${where}.top_functions[${i}]`),
      file: typeof f.file === "string" ? f.file : "",
      line: typeof f.line === "number" ? f.line : 0,
      selfNs: secondsNs(f, "self_s", `${where}.top_functions[${i}]`),
    })) : [],
  };
}

/**
 * GET /api/profiles/<id>/correlation -> { profileId, requestId, window: [startNs, endNs],
 * roots: Set of span ids, spans (tree order; see parseSpanRow: times in ns from the origin,
 * sample time by state in ns), truncated, skipped, lanes: [{ thread, tid, name, start, end:
 * Float64Array, state: string[] }], noSpan: the "(no span)" row plus `intervals` [[a, b]], or null }.
 */
export function parseCorrelation(json) {
  const where = "correlation";
  const win = json && json.window;
  need(win && typeof win === "object", where, "window is missing");
  const spans = arr(json, "spans", where).map((raw, i) => parseSpanRow(raw, `${where}.spans[${i}]`));
  const lanes = arr(json, "lanes", where).map((lane, i) => {
    const w = `${where}.lanes[${i}]`;
    const start = arr(lane, "start_ns", w);
    const end = arr(lane, "end_ns", w);
    const state = arr(lane, "state", w);
    need(start.length === end.length && end.length === state.length, w, "start_ns, end_ns and state differ in length");
    return { thread: num(lane, "thread", w), tid: num(lane, "tid", w), name: typeof lane.name === "string" ? lane.name : "",
      start: Float64Array.from(start), end: Float64Array.from(end), state: state.map(String), truncated: lane.truncated === true };
  });
  let noSpan = null;
  if (json.no_span) {
    noSpan = parseSpanRow(json.no_span, `${where}.no_span`);
    noSpan.intervals = arr(json.no_span, "intervals", `${where}.no_span`).map((p, i) => {
      need(Array.isArray(p) && p.length === 2 && p.every(Number.isFinite), `${where}.no_span.intervals[${i}]`, "not a [start, end] pair");
      return [p[0], p[1]];
    });
  }
  return {
    profileId: num(json, "profile_id", where),
    requestId: typeof json.request_id === "number" ? json.request_id : null,
    window: [num(win, "start_ns", `${where}.window`), num(win, "end_ns", `${where}.window`)],
    roots: new Set(Array.isArray(json.roots) ? json.roots : []),
    spans,
    truncated: json.truncated === true,
    skipped: typeof json.skipped_spans === "number" ? json.skipped_spans : 0,
    lanes,
    noSpan,
  };
}

/** GET .../span-flamegraph -> the FlameTree of parseFlamegraph, its info also giving { spanId, name, children, noSpan }. */
export function parseSpanFlamegraph(json) {
  const tree = parseFlamegraph(json);
  tree.info.spanId = typeof json.span_id === "string" ? json.span_id : null;
  tree.info.name = typeof json.name === "string" ? json.name : null;
  tree.info.children = json.children === true;
  tree.info.noSpan = json.no_span === true;
  return tree;
}
