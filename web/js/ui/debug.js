/**
 * Timing marks for benchmarks and tests: performance.mark("profviz:<name>") plus an entry in
 * window.__profviz.events ({ name, t: ms since navigation, ...detail }). `markAfterPaint`
 * records once the browser has painted the current frame (rAF, then a task after it).
 */
export function debugState() {
  if (!window.__profviz) window.__profviz = { events: [], counters: {} };
  return window.__profviz;
}

export function mark(name, detail = {}) {
  const t = performance.now();
  try {
    performance.mark(`profviz:${name}`, { detail });
  } catch {
    /* performance.mark with detail is unsupported: the events list still has it */
  }
  debugState().events.push({ name, t, ...detail });
  return t;
}

export function markAfterPaint(name, detail = {}) {
  requestAnimationFrame(() => setTimeout(() => mark(name, detail), 0));
}
