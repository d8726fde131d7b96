/**
 * Colour mapping for flame graphs, flame charts and state lanes. DOM-free, no d3 needed.
 *
 * Modes: "state" (CPU warm, waiting cool and tinted by wait reason, runnable violet, waiting for
 * the GIL gold),
 * "package" (one stable hue per package/module), "hot" (self time heat), and the diverging
 * diff scale. Every function returns a CSS colour string.
 */

export const COLOR_MODES = ["state", "package", "hot"];

/** Base colours of the thread states (also used in legends and state lanes). */
export const STATE_COLORS = {
  cpu: [232, 93, 42],
  wait: [66, 133, 214],
  runnable: [156, 96, 204],
  gil: [204, 160, 20],
  unknown: [150, 150, 150],
};

/** Hues for the common wait reasons; other reasons get a stable hash of blue-green hues. */
const REASON_COLORS = {
  lock: [111, 86, 196],
  socket: [45, 140, 200],
  net: [45, 140, 200],
  network: [45, 140, 200],
  disk: [46, 160, 140],
  io: [46, 160, 140],
  sleep: [120, 160, 200],
  poll: [70, 170, 190],
  select: [70, 170, 190],
  futex: [111, 86, 196],
  gil: [204, 160, 20],
};

/** Stable 32-bit FNV-1a hash of a string. */
export function hashString(text) {
  let h = 0x811c9dc5;
  const s = String(text);
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function rgb([r, g, b]) {
  return `rgb(${Math.round(r)},${Math.round(g)},${Math.round(b)})`;
}

function mix(a, b, t) {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

/** Lighten an RGB triple towards white by t in [0, 1]. */
export function lighten(c, t) {
  return mix(c, [255, 255, 255], t);
}

/** The RGB triple of a wait reason ("lock", "socket", ...; anything else hashes to a blue). */
export function reasonColor(reason) {
  const key = String(reason || "").toLowerCase();
  for (const [name, color] of Object.entries(REASON_COLORS)) {
    if (key === name || key.startsWith(name)) return color;
  }
  if (!key || key === "unknown") return STATE_COLORS.wait;
  const h = hashString(key);
  return [40 + (h % 60), 110 + ((h >> 8) % 70), 170 + ((h >> 16) % 60)];
}

/**
 * The package or module a file belongs to: the distribution under site-packages, "stdlib" for
 * the standard library, "<native>" for non-file frames, else the file's top directory and name.
 */
export function packageOf(file) {
  const f = String(file || "");
  if (!f || f.startsWith("<")) return f.startsWith("<frozen") ? "stdlib" : "<native>";
  const site = f.match(/[\\/](?:site|dist)-packages[\\/]([^\\/]+)/);
  if (site) return site[1].replace(/\.py$/, "");
  if (/[\\/]lib[\\/]python\d(\.\d+)?[\\/]/.test(f)) return "stdlib";
  const parts = f.split(/[\\/]/).filter(Boolean);
  if (parts.length >= 2) return parts[parts.length - 2];
  return parts[0] ? parts[0].replace(/\.py$/, "") : "<native>";
}

/** A stable, readable colour for a package name. */
export function packageColor(pkg) {
  const h = hashString(pkg);
  const hue = h % 360;
  const sat = 45 + ((h >> 9) % 25);
  const light = 58 + ((h >> 17) % 14);
  return `hsl(${hue},${sat}%,${light}%)`;
}

/**
 * Colour of a node in "state" mode: the CPU/wait/runnable/GIL colours mixed by their shares of
 * the node's total, the wait share tinted by the node's dominant wait reason when known.
 * `node` has total, cpu, wait, runnable, gil, unknown (ns) and optionally waits {reason: ns}.
 */
export function stateColor(node) {
  let waitColor = STATE_COLORS.wait;
  if (node.waits) {
    let best = null;
    let bestNs = 0;
    for (const [reason, ns] of Object.entries(node.waits)) {
      if (ns > bestNs) {
        best = reason;
        bestNs = ns;
      }
    }
    if (best) waitColor = reasonColor(best);
  }
  const parts = [
    [STATE_COLORS.cpu, node.cpu || 0],
    [waitColor, node.wait || 0],
    [STATE_COLORS.runnable, node.runnable || 0],
    [STATE_COLORS.gil, node.gil || 0],
    [STATE_COLORS.unknown, node.unknown || 0],
  ];
  let r = 0, g = 0, b = 0, sum = 0, top = 0;
  for (const [c, w] of parts) {
    r += c[0] * w; g += c[1] * w; b += c[2] * w; sum += w;
    if (w > top) top = w;
  }
  if (!sum) return rgb(STATE_COLORS.unknown);
  const base = [r / sum, g / sum, b / sum];
  // Mixed frames fade towards white (their split shows in the state strip); pure ones stay
  // saturated. A little lightness jitter by name keeps neighbouring frames distinguishable.
  const purity = top / sum;
  const jitter = (hashString(node.name) % 100) / 100;
  return rgb(lighten(base, 0.1 + 0.2 * jitter + 0.9 * (1 - purity)));
}

/**
 * The state split of a node as [[css colour, fraction], ...] (CPU, waiting, runnable, GIL, other),
 * or null when one state covers (nearly) all of it. Drawn as a strip under mixed frames.
 */
export function stateSplit(node) {
  const total = node.total || 0;
  if (total <= 0) return null;
  const parts = [
    [rgb(STATE_COLORS.cpu), (node.cpu || 0) / total],
    [rgb(STATE_COLORS.wait), (node.wait || 0) / total],
    [rgb(STATE_COLORS.runnable), (node.runnable || 0) / total],
    [rgb(STATE_COLORS.gil), (node.gil || 0) / total],
    [rgb(STATE_COLORS.unknown), (node.unknown || 0) / total],
  ];
  if (Math.max(...parts.map((p) => p[1])) > 0.97) return null;
  return parts.filter((p) => p[1] > 0);
}

/**
 * "hot" mode: yellow (cold) to deep red (hot) by the node's self time as a share of the
 * largest self time in view (`maxSelf`); frames with no self time are pale.
 */
export function hotColor(node, maxSelf) {
  const t = maxSelf > 0 ? Math.sqrt(Math.max(0, node.self || 0) / maxSelf) : 0;
  const cold = [250, 226, 150];
  const hot = [200, 30, 20];
  return rgb(mix(cold, hot, Math.min(1, t)));
}

/**
 * The colour of a node under `mode`; `context` carries what a mode needs (maxSelf for "hot").
 * Unknown modes fall back to "state".
 */
export function nodeColor(node, mode, context = {}) {
  if (mode === "package") return packageColor(node.package || packageOf(node.file));
  if (mode === "hot") return hotColor(node, context.maxSelf || 0);
  return stateColor(node);
}

/**
 * Diverging diff colour for a normalised difference d in [-1, 1]: blue where the frame got
 * cheaper, red where it got more expensive, near-white when unchanged. |d| saturates at 1.
 */
export function diffColor(d) {
  const t = Math.max(-1, Math.min(1, Number.isFinite(d) ? d : 0));
  const neutral = [236, 234, 228];
  const worse = [214, 39, 40];
  const better = [31, 119, 180];
  const s = Math.sqrt(Math.abs(t));
  return rgb(mix(neutral, t >= 0 ? worse : better, s));
}

/** Colour of one thread-state value in state lanes ("cpu", "wait", "runnable", "gil", "unknown"). */
export function laneColor(state, reason) {
  if (state === "wait") return rgb(reason ? reasonColor(reason) : STATE_COLORS.wait);
  return rgb(STATE_COLORS[state] || STATE_COLORS.unknown);
}
