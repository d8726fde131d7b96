/**
 * API query strings from UI state. DOM-free, no imports: boot.js uses it to start the first
 * requests before the rest of the app has loaded, so it must build exactly the URLs the
 * views ask for.
 */

/** UI state filter ("all" | "cpu" | "wait") -> API `states` value (null = no restriction). */
export function statesParam(filter) {
  if (filter === "cpu") return "cpu";
  if (filter === "wait") return "waiting";
  return null;
}

/**
 * Query parameters for the common filters of a UI state: threads (indices), the time window
 * (seconds from the origin -> start_ns/end_ns) and states. `prefix` is "" or "a_" / "b_".
 */
export function filterParams(state, prefix = "", params = new URLSearchParams()) {
  const threads = prefix === "b_" ? state.otherThreads : state.threads;
  const window = prefix === "b_" ? state.otherWindow : state.window;
  if (threads && threads.length) params.set(`${prefix}threads`, threads.join(","));
  if (window) {
    params.set(`${prefix}start_ns`, String(Math.round(window[0] * 1e9)));
    params.set(`${prefix}end_ns`, String(Math.round(window[1] * 1e9)));
  }
  const states = statesParam(state.states);
  if (states) params.set(`${prefix}states`, states);
  return params;
}

/** "/api/profiles/3/flamegraph?threads=0" from a path and URLSearchParams (or a plain object). */
export function apiUrl(path, params) {
  const query = params instanceof URLSearchParams ? params : new URLSearchParams(params || {});
  const text = query.toString();
  return `/api${path}${text ? "?" + text : ""}`;
}

/** The URL of a profile's flame tree for a UI state (root 0 unless `root` is given). */
export function flamegraphUrl(profileId, state, root = null) {
  const params = filterParams(state);
  if (root) params.set("root", String(root));
  return apiUrl(`/profiles/${profileId}/flamegraph`, params);
}
