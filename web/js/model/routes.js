/**
 * The routes view's model: URL state of the routes pages and the routes/requests API JSON
 * (docs/api.md "Routes and requests") read into plain structures. DOM-free (node tests too).
 *
 *   /routes?w=1h&sort=p95                       the route table; w = 5m | 1h | 24h | all
 *   /routes?from=<s>&to=<s>                      ... over a brushed window (epoch seconds)
 *   /routes/<METHOD>?route=<route>&w=...         one route's page (the route is a query value:
 *                                                routes hold slashes, "<int:id>", anything)
 *     rsort   slowest-requests sort key, "-" prefix for ascending   (default duration)
 *     fsort   tail-frames sort key                                    (default extra_self)
 *     zoom    server node id of the zoomed frame of the tail diff
 *   lat   (both pages) total | app: latency with or without the time queued before the app
 *         (default: the server's, total when queue times were recorded)
 *
 * Everything a route, path or function name holds is hostile: views show it as text only.
 */
import { treeFromApiNodes, parseFunctions, ApiShapeError } from "./api.js";
import { FlameTree } from "./tree.js";

export const WINDOW_PRESETS = [
  { id: "5m", label: "Last 5 min", since: "5m" },
  { id: "1h", label: "Last hour", since: "1h" },
  { id: "24h", label: "Last 24 h", since: "24h" },
  { id: "all", label: "All", since: null },
];
export const ROUTE_SORT_KEYS = ["route", "method", "count", "rps", "errors", "p50", "p90", "p95", "p99", "max", "queue"];
export const REQUEST_SORT_KEYS = ["id", "path", "status", "duration", "queue", "total", "cpu", "start"];
export const LATENCY_MODES = ["total", "app"];
export const FRAME_SORT_KEYS = ["function", "extra_self", "extra_total", "tail_self", "typical_self", "extra_wait", "extra_cpu", "extra_gil"];
const METHOD_RE = /^[A-Z][A-Z0-9_-]{0,19}$/;

function need(condition, where, what) {
  if (!condition) throw new ApiShapeError(`${where}: ${what}`);
}

function num(obj, key, where) {
  need(obj && typeof obj[key] === "number" && Number.isFinite(obj[key]), where, `${key} is not a number (got ${obj ? typeof obj[key] : "no object"})`);
  return obj[key];
}

function numOrNull(obj, key, where) {
  if (obj && obj[key] === null) return null;
  return num(obj, key, where);
}

function str(obj, key, where) {
  need(obj && typeof obj[key] === "string", where, `${key} is not a string (got ${obj ? typeof obj[key] : "no object"})`);
  return obj[key];
}

function arr(obj, key, where) {
  need(obj && Array.isArray(obj[key]), where, `${key} is not an array`);
  return obj[key];
}

function pair(obj, key, where) {
  const value = arr(obj, key, where);
  need(value.length === 2 && value.every((v) => typeof v === "number" && Number.isFinite(v)), where, `${key} is not two numbers`);
  return [value[0], value[1]];
}

function parseSort(text, allowed, fallback, problems, key) {
  const raw = text || "";
  const ascending = raw.startsWith("-");
  const name = raw.replace(/^-/, "");
  if (!name) return { sort: fallback, ascending: false };
  if (!allowed.includes(name)) {
    problems.push(`ignored ${key}=${raw.slice(0, 40)}: expected one of ${allowed.join(", ")}`);
    return { sort: fallback, ascending: false };
  }
  return { sort: name, ascending };
}

/**
 * Parse a routes page location. Returns { page: "routes" | "route" | null, method, route,
 * window: { preset } | { from, to } (epoch s), sort, ascending, requestSort, requestAscending,
 * frameSort, frameAscending, zoom, problems }; page null when the path is not a routes page.
 */
export function parseRoutesLocation(pathname, search = "") {
  const problems = [];
  const params = new URLSearchParams(search);
  const path = String(pathname || "").replace(/\/+$/, "");
  const state = {
    page: null, method: null, route: null, window: { preset: "all" }, sort: "p95", ascending: false,
    requestSort: "duration", requestAscending: false, frameSort: "extra_self", frameAscending: false, zoom: null, latency: null,
    compare: null, problems,
  };
  if (path === "/routes") state.page = "routes";
  else {
    const m = /^\/routes\/([^/]+)$/.exec(path);
    if (!m) return state;
    let method = "";
    try {
      method = decodeURIComponent(m[1]).toUpperCase();
    } catch {
      method = "";
    }
    if (!METHOD_RE.test(method)) {
      problems.push(`ignored method ${m[1].slice(0, 20)}: expected an HTTP method like GET`);
      method = "GET";
    }
    state.page = "route";
    state.method = method;
    state.route = params.get("route");
    if (!state.route) problems.push("no route= in the address: pick a route from the route table");
  }
  const from = Number(params.get("from"));
  const to = Number(params.get("to"));
  if (params.has("from") || params.has("to")) {
    if (Number.isFinite(from) && Number.isFinite(to) && from > 0 && to > from) state.window = { from, to };
    else problems.push("ignored from/to: expected epoch seconds with from < to");
  } else if (params.has("w")) {
    const w = params.get("w");
    if (WINDOW_PRESETS.some((p) => p.id === w)) state.window = { preset: w };
    else problems.push(`ignored w=${String(w).slice(0, 20)}: expected one of ${WINDOW_PRESETS.map((p) => p.id).join(", ")}`);
  }
  const origin = {};
  for (const key of ORIGIN_KEYS) {
    const value = params.get(key);
    if (value) origin[key] = value.slice(0, MAX_LABEL_CHARS);
  }
  if (Object.keys(origin).length) state.window = { ...state.window, origin };
  Object.assign(state, parseSort(params.get("sort"), ROUTE_SORT_KEYS, "p95", problems, "sort"));
  const requests = parseSort(params.get("rsort"), REQUEST_SORT_KEYS, "duration", problems, "rsort");
  state.requestSort = requests.sort;
  state.requestAscending = requests.ascending;
  const frames = parseSort(params.get("fsort"), FRAME_SORT_KEYS, "extra_self", problems, "fsort");
  state.frameSort = frames.sort;
  state.frameAscending = frames.ascending;
  const latency = params.get("lat");
  if (latency !== null) {
    if (LATENCY_MODES.includes(latency)) state.latency = latency;
    else problems.push(`ignored lat=${latency.slice(0, 20)}: expected one of ${LATENCY_MODES.join(", ")}`);
  }
  const va = params.get("va");
  const vb = params.get("vb");
  if (va && vb && va !== vb) state.compare = { a: va.slice(0, MAX_LABEL_CHARS), b: vb.slice(0, MAX_LABEL_CHARS) };
  else if (va || vb) problems.push("ignored va/vb: give two different versions to compare");
  const zoom = params.get("zoom");
  if (zoom) {
    if (/^\d+$/.test(zoom)) state.zoom = zoom;
    else problems.push(`ignored zoom=${zoom.slice(0, 40)}: expected a node id`);
  }
  return state;
}

function windowQuery(window, params) {
  if (window && "from" in window) {
    params.set("from", String(Number(window.from.toFixed(3))));
    params.set("to", String(Number(window.to.toFixed(3))));
  } else if (window && window.preset && window.preset !== "all") params.set("w", window.preset);
  return originParams(window, params);
}

/** The origin labels a fleet's requests carry, filterable on every routes view (`window.origin`). */
export const ORIGIN_KEYS = ["service", "host", "version", "env"];
const MAX_LABEL_CHARS = 200;

function originParams(window, params) {
  const origin = (window && window.origin) || {};
  for (const key of ORIGIN_KEYS) if (origin[key]) params.set(key, origin[key]);
  return params;
}

/** `next` window with the origin filter of `current` kept, unless `next` sets its own. */
export function keepOrigin(next, current) {
  return current && current.origin && next && !("origin" in next) ? { ...next, origin: current.origin } : next;
}

/** `window` with its origin filter set to `origin` (keys with an empty value dropped; none left: no filter). */
export function withOrigin(window, origin) {
  const kept = {};
  for (const key of ORIGIN_KEYS) if (origin && origin[key]) kept[key] = String(origin[key]).slice(0, MAX_LABEL_CHARS);
  const { origin: _dropped, ...rest } = window || { preset: "all" };
  return Object.keys(kept).length ? { ...rest, origin: kept } : rest;
}

/** GET /api/routes/origins -> { service: [value], host: [...], ... } (labels without values left out). */
export function parseOrigins(json) {
  const where = "origins";
  need(json && json.origins && typeof json.origins === "object", where, "origins is not an object");
  const out = {};
  for (const key of ORIGIN_KEYS) {
    if (json.origins[key] === undefined) continue;
    const values = arr(json.origins, key, where);
    need(values.every((v) => typeof v === "string"), where, `${key} holds a value that is not a string`);
    out[key] = values;
  }
  return out;
}

/** The address of a routes page state (defaults left out). */
export function buildRoutesLocation(state) {
  const params = new URLSearchParams();
  if (state.page === "route") params.set("route", state.route || "");
  windowQuery(state.window, params);
  if (state.latency) params.set("lat", state.latency);
  if (state.page === "routes" && (state.sort !== "p95" || state.ascending)) params.set("sort", (state.ascending ? "-" : "") + state.sort);
  if (state.page === "route") {
    if (state.requestSort !== "duration" || state.requestAscending) params.set("rsort", (state.requestAscending ? "-" : "") + state.requestSort);
    if (state.frameSort !== "extra_self" || state.frameAscending) params.set("fsort", (state.frameAscending ? "-" : "") + state.frameSort);
    if (state.compare) {
      params.set("va", state.compare.a);
      params.set("vb", state.compare.b);
    }
    if (state.zoom) params.set("zoom", String(state.zoom));
  }
  const query = params.toString();
  const path = state.page === "route" ? `/routes/${encodeURIComponent(state.method || "GET")}` : "/routes";
  return `${path}${query ? "?" + query : ""}`;
}

/** Link to one route's page over `window` (with the `latency` mode, when one was picked). */
export function routeHref(route, method, window, latency = null) {
  return buildRoutesLocation({ page: "route", route, method, window, latency, requestSort: "duration", frameSort: "extra_self" });
}

/** Link to the route table over `window`. */
export function routesHref(window, latency = null) {
  return buildRoutesLocation({ page: "routes", window, latency, sort: "p95" });
}

/** `params` with the API's latency parameter for a picked mode (none: the server's default). */
export function latencyApiParams(latency, params = new URLSearchParams()) {
  if (latency) params.set("latency", latency);
  return params;
}

/** Epoch seconds -> epoch ns as a decimal string (exact to the ms; ns exceed 2^53). */
export function epochNs(seconds) {
  return (BigInt(Math.round(seconds * 1000)) * 1000000n).toString();
}

/** API window parameters for a window state: { since } or { since_ns, until_ns } or {}. */
export function windowApiParams(window, params = new URLSearchParams()) {
  if (window && "from" in window) {
    params.set("since_ns", epochNs(window.from));
    params.set("until_ns", epochNs(window.to));
  } else {
    const preset = WINDOW_PRESETS.find((p) => window && p.id === window.preset);
    if (preset && preset.since) params.set("since", preset.since);
  }
  return originParams(window, params);
}

function latencyOf(json, where) {
  const latency = json.latency === undefined ? "app" : str(json, "latency", where);
  need(LATENCY_MODES.includes(latency), where, `latency is ${String(latency).slice(0, 20)}, not total or app`);
  return latency;
}

function optionalNum(obj, key, where) {
  return obj[key] === undefined || obj[key] === null ? null : num(obj, key, where);
}

/**
 * GET /api/routes -> { window: { start, end, durationS } | null, latency ("total" | "app"),
 * queueKnown, source ("rows": exact percentiles from every request | "sketches": from the minutes'
 * latency sketches, within 1%, past a million requests), routes: [row] } (a row's
 * queueP50/queueP95 are null where no request knew its queue time).
 */
export function parseRouteTable(json) {
  const where = "routes";
  const routes = arr(json, "routes", where).map((r, i) => {
    const w = `${where}.routes[${i}]`;
    return {
      route: str(r, "route", w), method: str(r, "method", w), count: num(r, "count", w), rps: num(r, "rps", w),
      errorRate: num(r, "error_rate", w), p50: num(r, "p50_ms", w), p90: num(r, "p90_ms", w), p95: num(r, "p95_ms", w),
      p99: num(r, "p99_ms", w), max: num(r, "max_ms", w), queueP50: optionalNum(r, "queue_p50_ms", w), queueP95: optionalNum(r, "queue_p95_ms", w),
    };
  });
  let window = null;
  if (json.window !== null) {
    need(json.window && typeof json.window === "object", where, "window is neither an object nor null");
    window = { start: num(json.window, "start", `${where}.window`), end: num(json.window, "end", `${where}.window`), durationS: num(json.window, "duration_s", `${where}.window`) };
  }
  const source = json.source === undefined ? "rows" : json.source;
  need(source === "rows" || source === "sketches", where, `source is ${JSON.stringify(source).slice(0, 40)}, expected "rows" or "sketches"`);
  return { window, routes, latency: latencyOf(json, where), queueKnown: json.queue_known === true, source };
}

/** GET /api/routes/latency -> { route, method, count, bucketS, latency, queueKnown, histogram: [{low, high, count}] (ms), series: [{t, count, p50, p95, p99, max}] }. */
export function parseRouteLatency(json) {
  const where = "routes/latency";
  return {
    route: str(json, "route", where),
    method: str(json, "method", where),
    count: num(json, "count", where),
    bucketS: num(json, "bucket_s", where),
    latency: latencyOf(json, where),
    queueKnown: json.queue_known === true,
    histogram: arr(json, "histogram", where).map((b, i) => {
      const w = `${where}.histogram[${i}]`;
      return { low: num(b, "low_ms", w), high: num(b, "high_ms", w), count: num(b, "count", w) };
    }),
    series: arr(json, "series", where).map((s, i) => {
      const w = `${where}.series[${i}]`;
      return { t: num(s, "t", w), count: num(s, "count", w), p50: num(s, "p50_ms", w), p95: num(s, "p95_ms", w), p99: num(s, "p99_ms", w), max: num(s, "max_ms", w) };
    }),
  };
}

/**
 * GET /api/routes/load -> { latency, capacity, capacitySource, requests, levels: [{low, high (null: open),
 * requests, p50, p95, p99}] (utilisation as fractions, ms), throughput: [{lowRps, highRps, requests, p50,
 * p95, p99}], baselineP99, knee (null: not reached), kneeP99, kneeFactor, peak, peakRps, headroom, trafficToKnee }.
 */
export function parseLoadCurve(json) {
  const where = "routes/load";
  const band = (l, w) => ({ requests: num(l, "requests", w), p50: num(l, "p50_ms", w), p95: num(l, "p95_ms", w), p99: num(l, "p99_ms", w) });
  return {
    latency: latencyOf(json, where),
    capacity: num(json, "capacity", where),
    capacitySource: str(json, "capacity_source", where),
    requests: num(json, "requests", where),
    levels: arr(json, "levels", where).map((l, i) => {
      const w = `${where}.levels[${i}]`;
      return { low: num(l, "low", w), high: numOrNull(l, "high", w), ...band(l, w) };
    }),
    throughput: arr(json, "throughput", where).map((l, i) => {
      const w = `${where}.throughput[${i}]`;
      return { lowRps: num(l, "low_rps", w), highRps: num(l, "high_rps", w), ...band(l, w) };
    }),
    baselineP99: numOrNull(json, "baseline_p99_ms", where),
    knee: numOrNull(json, "knee", where),
    kneeP99: numOrNull(json, "knee_p99_ms", where),
    kneeFactor: num(json, "knee_factor", where),
    peak: num(json, "peak_utilisation", where),
    peakRps: num(json, "peak_rps", where),
    headroom: num(json, "headroom", where),
    trafficToKnee: numOrNull(json, "traffic_to_knee", where),
  };
}

/** GET /api/routes/utilisation -> { capacity, capacitySource, bucketS, series: [{t, busyAvg, busyMax, utilisation}] }. */
export function parseUtilisation(json) {
  const where = "routes/utilisation";
  return {
    capacity: num(json, "capacity", where),
    capacitySource: str(json, "capacity_source", where),
    bucketS: json.bucket_s === null ? null : num(json, "bucket_s", where),
    series: arr(json, "series", where).map((s, i) => {
      const w = `${where}.series[${i}]`;
      return { t: num(s, "t", w), busyAvg: num(s, "busy_avg", w), busyMax: num(s, "busy_max", w), utilisation: numOrNull(s, "utilisation", w) };
    }),
  };
}

function parseRequestRow(r, where) {
  return {
    id: num(r, "id", where), route: str(r, "route", where), method: str(r, "method", where), path: str(r, "path", where),
    status: r.status === null ? null : num(r, "status", where), durationMs: num(r, "duration_ms", where), cpuMs: num(r, "cpu_ms", where),
    queueMs: optionalNum(r, "queue_ms", where), totalMs: r.total_ms === undefined ? num(r, "duration_ms", where) : num(r, "total_ms", where),
    start: num(r, "start", where), profileId: numOrNull(r, "profile_id", where), error: typeof r.error === "string" ? r.error : null,
  };
}

/** GET /api/requests -> [request] ({ id, route, method, path, status, durationMs (the app's), queueMs (null: unknown), totalMs, cpuMs, start (epoch s), profileId, error }). */
export function parseRequestList(json) {
  return arr(json, "requests", "requests").map((r, i) => parseRequestRow(r, `requests[${i}]`));
}

/** GET /api/requests/<id> -> a request plus { labels, responseBytes, profile: { id, capture, collector, ... } | null }. */
export function parseRequestDetail(json) {
  const where = "request";
  const row = parseRequestRow(json, where);
  row.responseBytes = typeof json.response_bytes === "number" ? json.response_bytes : 0;
  row.labels = json.labels && typeof json.labels === "object" ? json.labels : {};
  row.profile = null;
  if (json.profile) {
    const w = `${where}.profile`;
    row.profile = { id: num(json.profile, "id", w), kind: str(json.profile, "kind", w), sampleCount: num(json.profile, "sample_count", w),
      capture: typeof json.profile.capture === "string" ? json.profile.capture : null,
      collector: typeof json.profile.collector === "string" ? json.profile.collector : null };
  }
  return row;
}

/**
 * The tail diff's flame tree (side a typical, b tail, ns per request, widths from the tail):
 * a FlameTree whose nodes also carry aTotal, bTotal, aSelf, bSelf, aFraction, bFraction and
 * deltaNs (extra ns per request).
 */
export function parseTailTree(json, where = "routes/tail.diff.tree") {
  const functions = parseFunctions(json.functions, where);
  need(json.base === "b", where, `base is ${JSON.stringify(json.base)}, expected "b" (widths from the tail)`);
  const timeKeys = { total: "b_total_ns", self: "b_self_ns", cpu: "b_cpu_ns", wait: "b_wait_ns", runnable: "__none__", gil: "b_gil_ns", unknown: "__none__" };
  const extra = (raw, node, w) => {
    node.aTotal = num(raw, "a_total_ns", w);
    node.bTotal = num(raw, "b_total_ns", w);
    node.aSelf = num(raw, "a_self_ns", w);
    node.bSelf = num(raw, "b_self_ns", w);
    node.aFraction = num(raw, "a_fraction", w);
    node.bFraction = num(raw, "b_fraction", w);
    node.deltaNs = num(raw, "delta_ns", w);
    node.delta = node.deltaNs;
    node.unknown = Math.max(0, node.total - node.cpu - node.wait - node.gil);
  };
  const { nodes } = treeFromApiNodes(arr(json, "nodes", where), functions, where, { extra, timeKeys });
  return new FlameTree(nodes, {
    focus: 0,
    typicalNs: num(json.a || {}, "root_total_ns", `${where}.a`),
    tailNs: num(json.b || {}, "root_total_ns", `${where}.b`),
  });
}

/**
 * GET /api/routes/tail -> { route, method, requests, tailPercentile, tailMs, typicalBand [lo, hi] (percentiles),
 * typicalMs [lo, hi], tailRequests,
 * typicalRequests, minProfiles, tailProfileIds, typicalProfileIds, message, diff: null |
 * { tailProfiles, typicalProfiles, tailSampledMs, typicalSampledMs, extraMs, frames, tree } }.
 */
export function parseTail(json) {
  const where = "routes/tail";
  const out = {
    route: str(json, "route", where), method: str(json, "method", where), requests: num(json, "requests", where),
    tailPercentile: num(json, "tail_percentile", where), tailMs: num(json, "tail_ms", where),
    typicalBand: pair(json, "typical_band", where), typicalMs: pair(json, "typical_ms", where),
    tailRequests: num(json, "tail_requests", where), typicalRequests: num(json, "typical_requests", where),
    minProfiles: typeof json.min_profiles === "number" ? json.min_profiles : 1,
    tailProfileIds: arr(json, "tail_profile_ids", where).slice(), typicalProfileIds: arr(json, "typical_profile_ids", where).slice(),
    message: typeof json.message === "string" ? json.message : null, diff: null,
  };
  if (json.diff) {
    const d = json.diff;
    const w = `${where}.diff`;
    out.diff = {
      tailProfiles: num(d, "tail_profiles", w), typicalProfiles: num(d, "typical_profiles", w),
      tailSampledMs: num(d, "tail_sampled_ms", w), typicalSampledMs: num(d, "typical_sampled_ms", w), extraMs: num(d, "extra_ms", w),
      frames: arr(d, "frames", w).map((f, i) => {
        const fw = `${w}.frames[${i}]`;
        return {
          function: str(f, "function", fw), file: str(f, "file", fw),
          tailTotal: num(f, "tail_total_ms", fw), typicalTotal: num(f, "typical_total_ms", fw), extraTotal: num(f, "extra_total_ms", fw),
          tailSelf: num(f, "tail_self_ms", fw), typicalSelf: num(f, "typical_self_ms", fw), extraSelf: num(f, "extra_self_ms", fw),
          extraCpu: num(f, "extra_cpu_ms", fw), extraWait: num(f, "extra_wait_ms", fw),
          extraGil: typeof f.extra_gil_ms === "number" ? f.extra_gil_ms : 0, share: num(f, "share_of_extra", fw),
        };
      }),
      tree: parseTailTree(d.tree || {}, `${w}.tree`),
    };
  } else {
    need(out.message !== null, where, "diff is null without a message");
  }
  return out;
}

/**
 * GET /api/routes/versions?a=&b= (no route) -> { a, b, latency, routes: [{ route, method, a: row | null,
 * b: row | null, p95Change: number | null }] } (rows as parseRouteTable's). With a route the answer
 * has parseTail's shape (its tail: B's slow requests; its typical: A's) plus `versions`.
 */
export function parseVersionTable(json) {
  const where = "routes/versions";
  const row = (r, w) => (r === null ? null : parseRouteTable({ routes: [r], window: null }).routes[0]);
  return {
    a: str(json, "a", where), b: str(json, "b", where), latency: latencyOf(json, where),
    routes: arr(json, "routes", where).map((r, i) => {
      const w = `${where}.routes[${i}]`;
      return { route: str(r, "route", w), method: str(r, "method", w), a: row(r.a, w), b: row(r.b, w), p95Change: optionalNum(r, "p95_change", w) };
    }),
  };
}

/** The versions part of GET /api/routes/versions?route=...: { a, b (version names), aStats, bStats (route rows), p95Change }. */
export function parseVersionsOfRoute(json) {
  const where = "routes/versions.versions";
  const v = json.versions;
  need(v && typeof v === "object", where, "versions is not an object");
  const table = parseRouteTable({ routes: [v.a, v.b], window: null }).routes;
  return { a: str(v, "a_version", where), b: str(v, "b_version", where), aStats: table[0], bStats: table[1], p95Change: optionalNum(v, "p95_change", where) };
}

const BUCKET_STEPS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

/** A time bucket (s) giving about `points` buckets over `durationS`, rounded like the server's default. */
export function autoBucket(durationS, points = 60) {
  const raw = Math.max(0.001, durationS / points);
  return BUCKET_STEPS.find((step) => step >= raw) ?? 86400;
}

/** The routes a latency chart of `count` lines draws: the slowest by P95 (up to two thirds of
 * them) first, then the busiest of the rest. */
export function chartedRoutes(routes, count) {
  const slowest = [...routes].sort((a, b) => b.p95 - a.p95).slice(0, Math.ceil((2 * count) / 3));
  const busiest = [...routes].sort((a, b) => b.count - a.count).filter((r) => !slowest.includes(r));
  return [...slowest, ...busiest].slice(0, count);
}
