/**
 * View state <-> URL. DOM-free (imported by node tests too).
 *
 * Every piece of what a page shows lives in its URL, so a copied link reproduces the view:
 *
 *   /                          the profile list
 *   /profiles/<id>?view=...    one profile; query keys:
 *     view    flame | icicle | chart | sandwich | top | diff     (default flame)
 *     zoom    server node id of the zoomed frame (flame, icicle)
 *     threads comma-separated thread indices (threads[].index of the profile) to keep
 *     states  all | cpu | wait                                   (default all)
 *     t       time window "<from>-<to>" in seconds from the profile start
 *     q, re   search text; re=1 makes it a regular expression
 *     color   state | package | hot                              (default state)
 *     fn, file the selected function (sandwich)
 *     sort    top-functions sort key, "-" prefix for ascending (default self: the functions where the time is spent)
 *     b, bt, bthreads  diff: the other side's profile id, window and threads
 *     span    correlation: the selected span id (16 hex digits), or "none" for "(no span)"
 *     children correlation: 1 = the span flame graph includes child spans' samples
 *     agg     correlation: 1 = aggregate every span named like the selected one
 *             (in the correlation view, t is the visible range of the shared time axis)
 *
 * parseLocation() never throws: unknown or malformed values fall back to defaults, and it
 * reports them in `problems` so the page can say what it ignored.
 */

export const VIEWS = ["flame", "icicle", "chart", "sandwich", "top", "diff", "correlation"];
export const STATE_FILTERS = ["all", "cpu", "wait"];
export const COLOR_MODES = ["state", "package", "hot"];
export const SORT_KEYS = ["total", "self", "cpu", "wait", "runnable", "gil", "samples", "name"];

export const DEFAULTS = Object.freeze({
  page: "list",
  profile: null,
  view: "flame",
  zoom: null,
  threads: [],
  states: "all",
  window: null,
  search: "",
  regex: false,
  color: "state",
  fn: null,
  file: null,
  sort: "self",
  ascending: false,
  other: null,
  otherWindow: null,
  otherThreads: [],
  span: null,
  children: false,
  aggregate: false,
});

function parseWindow(text, problems, key) {
  if (!text) return null;
  const m = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(text);
  if (!m || !(Number(m[2]) > Number(m[1]))) {
    problems.push(`ignored ${key}=${text.slice(0, 40)}: expected "<from>-<to>" seconds with from < to`);
    return null;
  }
  return [Number(m[1]), Number(m[2])];
}

function formatWindow(window) {
  const fmt = (s) => String(Number(s.toFixed(6)));
  return `${fmt(window[0])}-${fmt(window[1])}`;
}

function parseList(text) {
  return text ? text.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

function pick(value, allowed, fallback, problems, key) {
  if (value === null || value === undefined || value === "") return fallback;
  if (allowed.includes(value)) return value;
  problems.push(`ignored ${key}=${String(value).slice(0, 40)}: expected one of ${allowed.join(", ")}`);
  return fallback;
}

/**
 * Parse a pathname and query string into a state object (see DEFAULTS for its fields) plus
 * `problems`, a list of one-line notes about ignored values.
 */
export function parseLocation(pathname, search = "") {
  const problems = [];
  const state = { ...DEFAULTS, threads: [], otherThreads: [], problems };
  const params = new URLSearchParams(search);
  const path = String(pathname || "/").replace(/\/+$/, "") || "/";
  const match = /^\/profiles\/(\d+)$/.exec(path);
  if (match) {
    state.page = "profile";
    state.profile = match[1];
  } else if (path === "/" || path === "/profiles") {
    state.page = "list";
  } else {
    state.page = "notfound";
  }
  state.view = pick(params.get("view"), VIEWS, DEFAULTS.view, problems, "view");
  const zoom = params.get("zoom");
  if (zoom) {
    if (/^\d+$/.test(zoom)) state.zoom = zoom;
    else problems.push(`ignored zoom=${zoom.slice(0, 40)}: expected a node id`);
  }
  state.threads = parseList(params.get("threads"));
  state.states = pick(params.get("states"), STATE_FILTERS, DEFAULTS.states, problems, "states");
  state.window = parseWindow(params.get("t"), problems, "t");
  state.search = params.get("q") || "";
  state.regex = params.get("re") === "1";
  state.color = pick(params.get("color"), COLOR_MODES, DEFAULTS.color, problems, "color");
  state.fn = params.get("fn");
  state.file = params.get("file");
  const sort = params.get("sort") || "";
  state.ascending = sort.startsWith("-");
  state.sort = pick(sort.replace(/^-/, ""), SORT_KEYS, DEFAULTS.sort, problems, "sort");
  const other = params.get("b");
  if (other) {
    if (/^\d+$/.test(other)) state.other = other;
    else problems.push(`ignored b=${other.slice(0, 40)}: expected a profile id`);
  }
  state.otherWindow = parseWindow(params.get("bt"), problems, "bt");
  state.otherThreads = parseList(params.get("bthreads"));
  const span = params.get("span");
  if (span) {
    if (/^([0-9a-f]{16}|none)$/.test(span)) state.span = span;
    else problems.push(`ignored span=${span.slice(0, 40)}: expected a span id (16 hex digits) or none`);
  }
  state.children = params.get("children") === "1";
  state.aggregate = params.get("agg") === "1";
  return state;
}

/** The path and query ("/profiles/3?view=icicle&q=sql") for a state; defaults are left out. */
export function buildLocation(state) {
  const s = { ...DEFAULTS, ...state };
  if (s.page !== "profile" || !s.profile) return "/";
  const params = new URLSearchParams();
  if (s.view !== DEFAULTS.view) params.set("view", s.view);
  if (s.zoom) params.set("zoom", String(s.zoom));
  if (s.threads && s.threads.length) params.set("threads", s.threads.join(","));
  if (s.states !== DEFAULTS.states) params.set("states", s.states);
  if (s.window) params.set("t", formatWindow(s.window));
  if (s.search) params.set("q", s.search);
  if (s.search && s.regex) params.set("re", "1");
  if (s.color !== DEFAULTS.color) params.set("color", s.color);
  if (s.fn) params.set("fn", s.fn);
  if (s.fn && s.file) params.set("file", s.file);
  if (s.sort !== DEFAULTS.sort || s.ascending) params.set("sort", (s.ascending ? "-" : "") + s.sort);
  if (s.other) params.set("b", String(s.other));
  if (s.otherWindow) params.set("bt", formatWindow(s.otherWindow));
  if (s.otherThreads && s.otherThreads.length) params.set("bthreads", s.otherThreads.join(","));
  if (s.span) params.set("span", s.span);
  if (s.children) params.set("children", "1");
  if (s.aggregate) params.set("agg", "1");
  const query = params.toString();
  return `/profiles/${encodeURIComponent(s.profile)}${query ? "?" + query : ""}`;
}
