/**
 * Trace spans for the correlation view: categories (database, HTTP client, ...), the current
 * selection (one span, every span of a name, or the "(no span)" entry), aggregates over a
 * name, and the span flame graph query. DOM-free (node tests import it).
 *
 * Spans are the objects of model/api.js parseCorrelation(): times in ns from the profile
 * origin, sample times by state in ns.
 */

/** Categories of spans, in legend order, with their bar colours (RGB). */
export const SPAN_CATEGORIES = [
  { id: "server", label: "server / request", color: [120, 129, 140] },
  { id: "db", label: "database", color: [206, 145, 38] },
  { id: "http", label: "HTTP client", color: [44, 160, 122] },
  { id: "messaging", label: "messaging", color: [196, 98, 160] },
  { id: "internal", label: "internal", color: [122, 128, 200] },
];

const CATEGORY_BY_ID = new Map(SPAN_CATEGORIES.map((c) => [c.id, c]));

/** The "(no span)" entry's id in selections and in the URL (span=none). */
export const NO_SPAN = "none";

function hasAny(attributes, keys) {
  return keys.some((k) => Object.prototype.hasOwnProperty.call(attributes, k));
}

/**
 * A span's category id from its kind and OpenTelemetry semantic-convention attributes:
 * "db" (db.system / db.statement / db.query.text), "http" (a client span with an HTTP method
 * or URL), "messaging" (messaging.system, or a producer / consumer span), "server", else
 * "internal".
 */
export function spanCategory(span) {
  const attributes = span.attributes || {};
  if (hasAny(attributes, ["db.system", "db.system.name", "db.statement", "db.query.text"])) return "db";
  if (hasAny(attributes, ["messaging.system"]) || span.kind === "producer" || span.kind === "consumer") return "messaging";
  if (span.kind === "server") return "server";
  if (span.kind === "client" && hasAny(attributes, ["http.method", "http.request.method", "http.url", "url.full"])) return "http";
  if (span.kind === "client") return hasAny(attributes, ["rpc.system"]) ? "http" : "internal";
  return "internal";
}

/** The category object {id, label, color} of a category id (unknown ids are "internal"). */
export function categoryInfo(id) {
  return CATEGORY_BY_ID.get(id) || CATEGORY_BY_ID.get("internal");
}

/**
 * The attributes worth showing first, as [label, key, value] triples: SQL text, URL, HTTP
 * status, route, error description. The rest follow in key order (see orderedAttributes).
 */
const HEADLINE_KEYS = [
  ["SQL", ["db.statement", "db.query.text"]],
  ["URL", ["url.full", "http.url"]],
  ["Method", ["http.request.method", "http.method"]],
  ["HTTP status", ["http.response.status_code", "http.status_code"]],
  ["Route", ["http.route"]],
  ["Database", ["db.system", "db.system.name", "db.name", "db.namespace"]],
  ["Error", ["otel.status_description", "exception.message"]],
];

/** [[label, key, value]] of a span's attributes: headline ones first, then the others by key. */
export function orderedAttributes(attributes) {
  const attrs = attributes || {};
  const out = [];
  const used = new Set();
  for (const [label, keys] of HEADLINE_KEYS) {
    for (const key of keys) {
      if (Object.prototype.hasOwnProperty.call(attrs, key) && !used.has(key)) {
        out.push([label, key, attrs[key]]);
        used.add(key);
      }
    }
  }
  for (const key of Object.keys(attrs).sort()) {
    if (!used.has(key)) out.push([key, key, attrs[key]]);
  }
  return out;
}

/** An attribute value as display text (arrays joined, objects as JSON). */
export function attributeText(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(attributeText).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * The selection the URL state asks for in a correlation: { kind: "none" } for the "(no
 * span)" entry, { kind: "name", name, spans, anchor } when aggregating by name (every span
 * named like the selected one), { kind: "span", span, spans: [span] }, or null when nothing
 * is selected. `problem` is set (and the selection null) when the URL names a span that is
 * not there.
 */
export function resolveSelection(correlation, { span = null, aggregate = false } = {}) {
  if (!span) return { selection: null, problem: null };
  if (span === NO_SPAN) {
    if (correlation.noSpan) return { selection: { kind: "none", spans: [] }, problem: null };
    return { selection: null, problem: "this profile has no \"(no span)\" entry: it is not a request's profile" };
  }
  const anchor = correlation.spans.find((s) => s.spanId === span);
  if (!anchor) return { selection: null, problem: `span ${span.slice(0, 40)} is not joined to this profile` };
  if (aggregate) {
    const spans = correlation.spans.filter((s) => s.name === anchor.name);
    return { selection: { kind: "name", name: anchor.name, anchor, spans }, problem: null };
  }
  return { selection: { kind: "span", span: anchor, anchor, spans: [anchor] }, problem: null };
}

/**
 * Sums over spans (all durations and times in ns): count, durationNs (sum), meanNs, maxNs,
 * samples, cpuNs, waitNs, runnableNs, gilNs, selfNs, uncoveredNs.
 */
export function aggregateSpans(spans) {
  const out = { count: spans.length, durationNs: 0, meanNs: 0, maxNs: 0, samples: 0, cpuNs: 0, waitNs: 0, runnableNs: 0, gilNs: 0, selfNs: 0, uncoveredNs: 0 };
  for (const s of spans) {
    out.durationNs += s.durationNs;
    out.maxNs = Math.max(out.maxNs, s.durationNs);
    out.samples += s.samples;
    out.cpuNs += s.cpuNs;
    out.waitNs += s.waitNs;
    out.runnableNs += s.runnableNs;
    out.gilNs += s.gilNs || 0;
    out.selfNs += s.selfNs;
    out.uncoveredNs += s.uncoveredNs;
  }
  out.meanNs = spans.length ? out.durationNs / spans.length : 0;
  return out;
}

/** Time windows [[startNs, endNs]] a selection covers (the "(no span)" gaps for kind "none"). */
export function selectionWindows(correlation, selection) {
  if (!selection) return [];
  if (selection.kind === "none") return correlation.noSpan ? correlation.noSpan.intervals : [];
  return selection.spans.map((s) => [s.startNs, s.endNs]);
}

/**
 * Query string of GET /api/profiles/<id>/span-flamegraph for a selection: span_id, name or
 * no_span=1, with children=1 when child spans' samples are included.
 */
export function spanFlamegraphParams(selection, includeChildren) {
  const params = new URLSearchParams();
  if (selection.kind === "none") params.set("no_span", "1");
  else if (selection.kind === "name") params.set("name", selection.name);
  else params.set("span_id", selection.span.spanId);
  if (selection.kind !== "none" && includeChildren) params.set("children", "1");
  return params;
}

/** Names shared by more than one span, with their counts (what "aggregate by name" groups). */
export function repeatedNames(spans) {
  const counts = new Map();
  for (const s of spans) counts.set(s.name, (counts.get(s.name) || 0) + 1);
  return new Map([...counts].filter(([, n]) => n > 1));
}

/**
 * Depth below `focus` (a FlameTree index) of the last frame every sample passes through: where
 * the stacks fork. A span's samples share the framework's outer frames; the view starts there.
 */
export function forkDepth(tree, focus) {
  let index = focus;
  let depth = 0;
  for (;;) {
    const node = tree.nodes[index];
    const children = node.children;
    if (children.length !== 1 || node.self > 0) return depth;
    const child = tree.nodes[children[0]];
    if (child.kind === "other" || child.total < node.total) return depth;
    index = child.index;
    depth++;
  }
}
