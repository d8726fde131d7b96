/**
 * Starts the first API requests of a page while the rest of the app is still loading (it is
 * loaded with `async`, ahead of main.js). api.js's getJSON() takes these responses from
 * window.__profvizPrefetch by URL, so the URLs must be the ones the views build (query.js).
 */
import { parseLocation } from "./model/urlstate.js";
import { apiUrl, flamegraphUrl } from "./model/query.js";

const early = (globalThis.__profvizPrefetch = new Map());

function prefetch(url) {
  if (!early.has(url)) early.set(url, fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }));
}

const state = parseLocation(window.location.pathname, window.location.search);
if (state.page === "profile") {
  prefetch(apiUrl(`/profiles/${state.profile}`));
  // Every view shows the totals line, which comes from the default flame tree.
  prefetch(flamegraphUrl(state.profile, state));
} else if (state.page === "list") {
  prefetch(apiUrl("/profiles"));
}
