/**
 * Canvas time-ordered flame chart ("stack chart"): one track per thread, all sharing one time
 * axis, each with a state lane (CPU / waiting by reason / runnable) above its frames.
 *
 *   const chart = new FlameChart(container, { onHover, onLeave, onClick, onBrush, onView });
 *   chart.setData(timeline, { colorOf, matchedKeys, fullDomain, window, colorByState });
 *
 * `timeline` is model/api.parseTimeline's result (times in ns from the profile origin).
 * d3 provides the time scale, the axis, wheel/drag zoom (onView(domain) fires, debounced, so
 * the caller can fetch finer data) and the brush on the axis strip (onBrush([from, to]) in ns,
 * or null when cleared). The container exposes data-tiles-drawn and data-tracks.
 */
import { d3 } from "../d3.js";
import { displayText } from "../model/format.js";
import { laneColor } from "../model/colors.js";
import { h, clear, append } from "./dom.js";
import { prepareCanvas } from "./canvas.js";

const FONT = '11px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';
const MATCH_COLOR = "rgb(230, 0, 180)";
const DIM_COLOR = "rgb(218, 218, 214)";
const MAX_DEPTH = 32;

export class FlameChart {
  constructor(container, options = {}) {
    this.options = { rowHeight: 16, laneHeight: 8, trackGap: 10, labelWidth: 170, ...options };
    this.container = container;
    this.axisSvg = d3.create("svg").attr("class", "chart-axis").attr("height", 34);
    this.labels = h("div", { class: "chart-labels" });
    this.canvas = document.createElement("canvas");
    this.canvas.className = "chart-canvas";
    this.canvas.setAttribute("role", "img");
    this.plot = h("div", { class: "chart-plot" }, this.canvas);
    this.axisBox = h("div", { class: "chart-axis-box" }, h("div", { class: "chart-axis-corner" }, "time (s)"), this.axisSvg.node());
    append(container, this.axisBox, h("div", { class: "chart-body" }, this.labels, this.plot));
    this.ctx = this.canvas.getContext("2d");
    this.data = null;
    this.detail = null;
    this.transform = d3.zoomIdentity;
    this.brushing = false;
    this.zoom = d3.zoom()
      .scaleExtent([1, 1e6])
      // Ctrl/Cmd + wheel (and trackpad pinch) zooms, plain wheel scrolls the page, drag pans.
      .filter((event) => (event.type === "wheel" ? event.ctrlKey || event.metaKey : !event.button))
      .on("zoom", (event) => this._onZoom(event));
    d3.select(this.canvas).call(this.zoom).on("dblclick.zoom", null);
    this.brush = d3.brushX().on("end", (event) => this._onBrush(event));
    this.brushG = this.axisSvg.append("g").attr("class", "brush");
    this.axisG = this.axisSvg.append("g").attr("class", "axis").attr("transform", "translate(0,33)");
    this.canvas.addEventListener("mousemove", (e) => this._onMove(e));
    this.canvas.addEventListener("mouseleave", (e) => this.options.onLeave && this.options.onLeave(e));
    this.canvas.addEventListener("click", (e) => this._onClick(e));
    this.resizeObserver = new ResizeObserver(() => this._resize());
    this.resizeObserver.observe(this.container);
    this.viewTimer = 0;
  }

  destroy() {
    this.resizeObserver.disconnect();
    clearTimeout(this.viewTimer);
    d3.select(this.canvas).on(".zoom", null);
  }

  /** Width in CSS px of the time plot (what the timeline's `width` should be). */
  get plotWidth() {
    return Math.max(100, Math.floor(this.plot.clientWidth || this.container.clientWidth - this.options.labelWidth));
  }

  /** The visible time domain [from, to] in ns. */
  get domain() {
    return this.x ? this.x.domain() : null;
  }

  setData(timeline, opts) {
    const first = !this.data || opts.fullDomain[0] !== this.opts.fullDomain[0] || opts.fullDomain[1] !== this.opts.fullDomain[1];
    this.data = timeline;
    this.opts = { colorByState: true, ...opts };
    this.detail = null;
    if (first) this.transform = d3.zoomIdentity;
    this._resize(true);
  }

  /** Finer data for the current zoomed domain (drawn instead of the overview while it covers the view). */
  setDetail(timeline) {
    this.detail = timeline;
    this._draw();
  }

  /** Zoom the time axis by `factor` around the middle (factor > 1 zooms in); null resets. */
  zoomBy(factor) {
    const sel = d3.select(this.canvas);
    if (factor === null) sel.call(this.zoom.transform, d3.zoomIdentity);
    else sel.call(this.zoom.scaleBy, factor, [this.width / 2, 0]);
  }

  /** Update colouring / highlight options without new data. */
  setOptions(opts) {
    Object.assign(this.opts, opts);
    this._syncBrush();
    this._draw();
  }

  _resize(force = false) {
    if (!this.data) return;
    const width = this.plotWidth;
    if (!force && width === this.width) return;
    this.width = width;
    this.baseX = d3.scaleLinear().domain(this.opts.fullDomain).range([0, width]);
    this.zoom.extent([[0, 0], [width, 1]]).translateExtent([[0, 0], [width, 1]]);
    this.x = this.transform.rescaleX(this.baseX);
    this.axisSvg.attr("width", width);
    this.brush.extent([[0, 0], [width, 32]]);
    this.brushG.call(this.brush);
    this._layoutTracks();
    this._syncBrush();
    this._draw();
  }

  _layoutTracks() {
    const { rowHeight, laneHeight, trackGap } = this.options;
    let y = 0;
    this.tracks = this.data.tracks.map((track) => {
      const depth = Math.min(MAX_DEPTH, Math.max(1, track.maxDepth));
      const layout = { track, top: y, laneTop: y, framesTop: y + laneHeight + 2, depth, height: laneHeight + 2 + depth * rowHeight };
      y += layout.height + trackGap;
      return layout;
    });
    this.height = Math.max(40, y);
    clear(this.labels);
    for (const t of this.tracks) {
      const label = h("div", { class: "chart-label", data: { index: t.track.index, tid: t.track.tid }, style: { top: `${t.top}px`, height: `${t.height}px` } },
        h("bdi", { class: "chart-thread" }, displayText(t.track.name || "(unnamed)", 60)),
        h("span", { class: "chart-tid" }, `tid ${t.track.tid} \u00b7 ${t.track.samples} samples`));
      this.labels.appendChild(label);
    }
    this.labels.style.height = `${this.height}px`;
    this.container.dataset.tracks = String(this.tracks.length);
  }

  _syncBrush() {
    if (!this.x) return;
    const w = this.opts.window;
    this.syncing = true;
    if (w) {
      const a = Math.max(0, this.x(w[0]));
      const b = Math.min(this.width, this.x(w[1]));
      this.brushG.call(this.brush.move, b > a ? [a, b] : null);
    } else {
      this.brushG.call(this.brush.move, null);
    }
    this.syncing = false;
  }

  _onBrush(event) {
    if (this.syncing || !event.sourceEvent) return;
    const sel = event.selection;
    if (this.options.onBrush) this.options.onBrush(sel ? [this.x.invert(sel[0]), this.x.invert(sel[1])] : null);
  }

  _onZoom(event) {
    this.transform = event.transform;
    this.x = this.transform.rescaleX(this.baseX);
    this._syncBrush();
    this._draw();
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(() => this.options.onView && this.options.onView(this.x.domain()), 180);
  }

  /** The data to draw: the detail if it covers the visible domain, else the overview. */
  _source() {
    const [a, b] = this.x.domain();
    const d = this.detail;
    if (d && d.startNs <= a + 1 && d.endNs >= b - 1) return d;
    return this.data;
  }

  _draw() {
    if (!this.data || !this.x) return;
    const t0 = performance.now();
    const { ctx, canvas, width, height } = this;
    prepareCanvas(canvas, width, height, ctx);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    const charWidth = ctx.measureText("abcdefghij").width / 10 || 6;
    const x = this.x;
    const source = this._source();
    const { rowHeight, laneHeight } = this.options;
    const { colorOf, matchedKeys, colorByState } = this.opts;
    let tiles = 0;
    const byIndex = new Map(source.tracks.map((t) => [t.index, t]));
    for (const layout of this.tracks) {
      const track = byIndex.get(layout.track.index) || layout.track;
      const st = track.states;
      for (let i = 0; i < st.start.length; i++) {
        const x0 = x(st.start[i]);
        const x1 = x(st.end[i]);
        if (x1 < 0 || x0 > width) continue;
        ctx.fillStyle = laneColor(st.state[i] === "waiting" ? "wait" : st.state[i], st.reason[i]);
        ctx.fillRect(x0, layout.laneTop, Math.max(0.6, x1 - x0), laneHeight);
      }
      for (const row of track.depths) {
        if (row.depth > layout.depth) continue;
        const y = layout.framesTop + (row.depth - 1) * rowHeight;
        let s = 0;
        for (let i = 0; i < row.start.length; i++) {
          const x0 = x(row.start[i]);
          const x1 = x(row.end[i]);
          if (x1 < 0 || x0 > width) continue;
          const w = Math.max(0.6, x1 - x0);
          const node = source.nodes.get(row.node[i]);
          const matched = matchedKeys ? matchedKeys.has(node ? node.key : "") : false;
          if (matchedKeys) {
            ctx.fillStyle = matched ? MATCH_COLOR : DIM_COLOR;
            ctx.fillRect(x0, y, w, rowHeight - 1);
          } else if (colorByState) {
            // Split the frame by the thread's states under it, so CPU and waiting show in place.
            while (s > 0 && st.end[s - 1] > row.start[i]) s--;
            while (s < st.start.length && st.end[s] <= row.start[i]) s++;
            let k = s;
            let drawn = false;
            while (k < st.start.length && st.start[k] < row.end[i]) {
              const a = Math.max(x0, x(st.start[k]));
              const b = Math.min(x1, x(st.end[k]));
              if (b > a) {
                ctx.fillStyle = laneColor(st.state[k] === "waiting" ? "wait" : st.state[k], st.reason[k]);
                ctx.fillRect(a, y, Math.max(0.6, b - a), rowHeight - 1);
                drawn = true;
              }
              k++;
            }
            if (!drawn) {
              ctx.fillStyle = laneColor("unknown");
              ctx.fillRect(x0, y, w, rowHeight - 1);
            }
          } else {
            ctx.fillStyle = node ? colorOf(node) : DIM_COLOR;
            ctx.fillRect(x0, y, w, rowHeight - 1);
          }
          if (w > 2.5) {
            ctx.fillStyle = "rgba(255,255,255,0.6)";
            ctx.fillRect(x0 + w - 0.5, y, 0.5, rowHeight - 1);
          }
          tiles++;
          if (w > charWidth * 3 + 4 && node) {
            const max = Math.floor((w - 4) / charWidth);
            let text = node.label || (node.label = displayText(node.name, 160));
            if (text.length > max) text = text.slice(0, max - 1) + "\u2026";
            ctx.fillStyle = "#151515";
            ctx.fillText(text, Math.max(x0, 0) + 2, y + rowHeight / 2);
          }
        }
      }
    }
    const w = this.opts.window;
    if (w) {
      ctx.fillStyle = "rgba(60, 60, 60, 0.16)";
      const a = x(w[0]);
      const b = x(w[1]);
      if (a > 0) ctx.fillRect(0, 0, Math.min(width, a), height);
      if (b < width) ctx.fillRect(Math.max(0, b), 0, width - Math.max(0, b), height);
    }
    this.axisG.call(d3.axisTop(x).ticks(Math.max(2, Math.floor(width / 90))).tickFormat((ns) => formatSeconds(ns)));
    this.container.dataset.tilesDrawn = String(tiles);
    this.container.dataset.domain = this.x.domain().map((v) => Math.round(v)).join("-");
    this.canvas.setAttribute("aria-label", `Flame chart of ${this.tracks.length} threads, ${tiles} frames drawn`);
    if (this.options.onDraw) this.options.onDraw(tiles, performance.now() - t0);
  }

  /** What is under a client point: { track, kind: "state"|"frame", ... } or null. */
  hit(clientX, clientY) {
    if (!this.tracks) return null;
    const rect = this.canvas.getBoundingClientRect();
    const px = clientX - rect.left;
    const py = clientY - rect.top;
    const t = this.x.invert(px);
    const source = this._source();
    const layout = this.tracks.find((l) => py >= l.top && py < l.top + l.height);
    if (!layout) return null;
    const track = source.tracks.find((tr) => tr.index === layout.track.index) || layout.track;
    const find = (start, end) => {
      let lo = 0;
      let hi = start.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (t < start[mid]) hi = mid - 1;
        else if (t >= end[mid]) lo = mid + 1;
        else return mid;
      }
      return -1;
    };
    if (py < layout.framesTop) {
      const i = find(track.states.start, track.states.end);
      if (i < 0) return null;
      return { track, kind: "state", state: track.states.state[i], reason: track.states.reason[i], start: track.states.start[i], end: track.states.end[i] };
    }
    const depth = Math.floor((py - layout.framesTop) / this.options.rowHeight) + 1;
    const row = track.depths.find((r) => r.depth === depth);
    if (!row) return null;
    const i = find(row.start, row.end);
    if (i < 0) return null;
    return { track, kind: "frame", node: source.nodes.get(row.node[i]), start: row.start[i], end: row.end[i], depth };
  }

  _onMove(event) {
    const hit = this.hit(event.clientX, event.clientY);
    this.canvas.style.cursor = hit && hit.kind === "frame" ? "pointer" : "default";
    if (hit && this.options.onHover) this.options.onHover(hit, event);
    else if (!hit && this.options.onLeave) this.options.onLeave(event);
  }

  _onClick(event) {
    if (event.defaultPrevented) return;
    const hit = this.hit(event.clientX, event.clientY);
    if (hit && hit.kind === "frame" && this.options.onClick) this.options.onClick(hit, event);
  }
}

/** Axis labels: seconds from the profile origin with sensible precision. */
export function formatSeconds(ns) {
  const s = ns / 1e9;
  const abs = Math.abs(s);
  if (abs === 0) return "0";
  if (abs < 0.01) return `${(ns / 1e6).toFixed(2)} ms`;
  if (abs < 1) return `${s.toFixed(3)}`;
  if (abs < 100) return `${s.toFixed(2)}`;
  return `${s.toFixed(0)}`;
}
