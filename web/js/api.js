/**
 * Browser client of the JSON API (docs/api.md): fetch with a small response cache, stale
 * request cancellation and one-line error messages. Parsing lives in model/api.js.
 */
import { errorMessage } from "./model/api.js";

export { apiUrl } from "./model/query.js";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const cache = new Map();

/** A response boot.js already requested for `url` (each is used once), or null. */
function takePrefetched(url) {
  const early = globalThis.__profvizPrefetch;
  if (!early || !early.has(url)) return null;
  const response = early.get(url);
  early.delete(url);
  return response;
}
const CACHE_SIZE = 24;

/**
 * GET `url` and return its JSON. Responses are cached by URL (profiles are immutable);
 * a failed request is not cached; `fresh` skips the cache (data that grows, like requests).
 * Throws ApiError with the server's message.
 */
export function getJSON(url, { signal, fresh = false } = {}) {
  const hit = fresh ? null : cache.get(url);
  if (hit) {
    cache.delete(url);
    cache.set(url, hit);
    return hit;
  }
  const promise = (takePrefetched(url) || fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }))
    .then(async (response) => {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (!response.ok) throw new ApiError(errorMessage(body, response.status), response.status);
      if (body === null) throw new ApiError(`${url} did not return JSON`, response.status);
      return body;
    });
  if (!fresh) {
    cache.set(url, promise);
    promise.catch(() => cache.delete(url));
    while (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
  }
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => reject(new DOMException("aborted", "AbortError"));
    if (signal.aborted) return abort();
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject);
  });
}

/** True for the rejection of a superseded request (not an error to show). */
export function isAbort(err) {
  return err && err.name === "AbortError";
}

/**
 * A per-view request slot: `run(promiseFactory)` aborts the previous request of the slot so
 * only the latest answer is drawn.
 */
export class RequestSlot {
  constructor() {
    this.controller = null;
  }

  run(factory) {
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    return factory(this.controller.signal);
  }

  cancel() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }
}
