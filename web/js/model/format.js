/**
 * Text and number formatting shared by every view. DOM-free (imported by node tests too).
 *
 * Everything that comes from a profiled program (function, file, thread names...) is hostile:
 * views put it into the page only through textContent / d3 .text(), after displayText() has
 * neutralised bidi controls and truncated it.
 */

/** Bidi embedding/override/isolate controls, LRM/RLM/ALM, and other C0/C1 controls except tab. */
const CONTROL_CHARS = /[\u0000-\u0008\u000A-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;

/** Longest label kept for display anywhere (tooltips may show this much). */
export const MAX_LABEL = 300;

/**
 * A string safe to show as text: control and bidi-override characters replaced by a visible
 * marker like "[U+202E]", and cut to `max` characters with an ellipsis.
 * Non-strings are converted with String(); null/undefined become "".
 */
export function displayText(value, max = MAX_LABEL) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (text.length > max * 2) text = text.slice(0, max * 2);
  text = text.replace(CONTROL_CHARS, (c) => `[U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
  if (text.length > max) text = text.slice(0, Math.max(1, max - 1)) + "\u2026";
  return text;
}

/** Shorten a file path for labels: keep the last `parts` path components. */
export function shortFile(file, parts = 2) {
  if (!file) return "";
  const pieces = String(file).split(/[\\/]/).filter(Boolean);
  return pieces.length <= parts ? String(file) : "\u2026/" + pieces.slice(-parts).join("/");
}

/** "1.23 s", "45.6 ms", "789 µs", "12 ns" for a duration in nanoseconds. */
export function formatDuration(ns) {
  if (!Number.isFinite(ns)) return "\u2013";
  const abs = Math.abs(ns);
  if (abs >= 3600e9) return `${(ns / 3600e9).toFixed(2)} h`;
  if (abs >= 60e9) return `${(ns / 60e9).toFixed(2)} min`;
  if (abs >= 1e9) return `${(ns / 1e9).toFixed(abs >= 100e9 ? 1 : 2)} s`;
  if (abs >= 1e6) return `${(ns / 1e6).toFixed(abs >= 100e6 ? 0 : 1)} ms`;
  if (abs >= 1e3) return `${(ns / 1e3).toFixed(abs >= 100e3 ? 0 : 1)} \u00b5s`;
  return `${Math.round(ns)} ns`;
}

/** "12.3%" for a fraction in [0, 1]; small non-zero shares keep two decimals. */
export function formatPercent(fraction) {
  if (!Number.isFinite(fraction)) return "\u2013";
  const pct = fraction * 100;
  if (pct !== 0 && Math.abs(pct) < 1) return `${pct.toFixed(2)}%`;
  return `${pct.toFixed(1)}%`;
}

/** A signed percentage, "+12.3%" / "-4.0%". */
export function formatSignedPercent(fraction) {
  const text = formatPercent(Math.abs(fraction));
  return (fraction > 0 ? "+" : fraction < 0 ? "\u2212" : "\u00b1") + text;
}

/** Thousands separators for counts: 1234567 -> "1,234,567". */
export function formatCount(n) {
  if (!Number.isFinite(n)) return "\u2013";
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Local date-time "2026-11-28 01:02:03" for epoch seconds. */
export function formatDateTime(epochSeconds) {
  if (!Number.isFinite(epochSeconds) || epochSeconds <= 0) return "\u2013";
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The label of a frame for flame graphs: "function" plus, when asked, " (file:line)". */
export function frameLabel(node, withFile = false) {
  const name = node.name || "(unknown)";
  if (!withFile || !node.file) return name;
  return `${name} (${shortFile(node.file)}${node.line ? ":" + node.line : ""})`;
}
