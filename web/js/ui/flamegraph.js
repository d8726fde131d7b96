/**
 * Canvas flame graph / icicle renderer for a FlameTree (see model/tree.js).
 *
 *   const graph = new FlameGraph(container, { orientation: "flame", onClick, onHover, onLeave });
 *   graph.draw(tree, { focus, colorOf, matched, dimmed });
 *
 * `orientation` "flame" puts the root at the bottom, "icicle" at the top. `colorOf(node)`
 * returns a CSS colour; `split(node)` (optional) returns [[colour, fraction], ...] drawn as a
 * thin strip along the bottom of the frame (the CPU / wait split); `matched` (Uint8Array per
 * node, optional) highlights search hits and greys the rest. Callbacks get (node, event). The container exposes what was drawn for tests
 * and tools: data-nodes-drawn, data-focus (server node id), data-matched, data-draw-ms.
 * Handles devicePixelRatio and container resizes; one canvas, one draw per frame at most.
 */
import { layoutFlame, hitTest } from "../model/tree.js";
import { displayText } from "../model/format.js";
import { prepareCanvas } from "./canvas.js";

const FONT = '11px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';
const MATCH_COLOR = "rgb(230, 0, 180)";
const DIM_COLOR = "rgb(214, 214, 210)";

export class FlameGraph {
  constructor(container, options = {}) {
    this.container = container;
    this.options = { orientation: "flame", rowHeight: 18, minPixels: 0.35, ...options };
    this.canvas = document.createElement("canvas");
    this.canvas.className = "flame-canvas";
    this.canvas.setAttribute("role", "img");
    this.container.appendChild(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.tree = null;
    this.layout = null;
    this.hover = -1;
    this.frame = 0;
    this.width = 0;
    this.charWidth = 6.6;
    this.canvas.addEventListener("mousemove", (e) => this._onMove(e));
    this.canvas.addEventListener("mouseleave", (e) => this._onLeave(e));
    this.canvas.addEventListener("click", (e) => this._onClick(e));
    this.resizeObserver = new ResizeObserver(() => this._onResize());
    this.resizeObserver.observe(this.container);
  }

  /** Draw `tree` (or re-draw with new options). Returns the number of frames drawn. */
  draw(tree, opts = {}) {
    this.tree = tree;
    this.opts = { focus: 0, colorOf: () => "#ccc", matched: null, ...opts };
    this.width = this.container.clientWidth || 800;
    const minWidth = this.options.minPixels / Math.max(1, this.width);
    this.layout = layoutFlame(tree, this.opts.focus, minWidth);
    this.colors = new Map();
    this._paint();
    return this.layout.count;
  }

  destroy() {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
    this.canvas.remove();
  }

  /** The node under a client point, or null. */
  nodeAt(clientX, clientY) {
    if (!this.layout) return null;
    const rect = this.canvas.getBoundingClientRect();
    const x = (clientX - rect.left) / rect.width;
    const row = Math.floor((clientY - rect.top) / this.options.rowHeight);
    const depth = this.options.orientation === "flame" ? this.layout.maxDepth - row : row;
    const p = hitTest(this.layout, x, depth);
    return p < 0 ? null : this.tree.nodes[this.layout.index[p]];
  }

  /** Client coordinates of the middle of a drawn node (for tests and keyboard focus). */
  centerOf(nodeIndex) {
    const { layout } = this;
    const rect = this.canvas.getBoundingClientRect();
    for (let p = 0; p < layout.count; p++) {
      if (layout.index[p] !== nodeIndex) continue;
      const row = this.options.orientation === "flame" ? layout.maxDepth - layout.depth[p] : layout.depth[p];
      return {
        x: rect.left + ((layout.x0[p] + layout.x1[p]) / 2) * rect.width,
        y: rect.top + (row + 0.5) * this.options.rowHeight,
      };
    }
    return null;
  }

  /** Client coordinates of the widest drawn frame named `name` (for tests and tools), or null. */
  centerOfName(name) {
    return this._centerOfWidest((node) => node.name === name);
  }

  /** Client coordinates of the widest drawn frame at `depth` below the focus, or null. */
  centerOfDepth(depth) {
    const want = this.tree ? this.tree.nodes[this.layout.focus].depth + depth : -1;
    return this._centerOfWidest((node) => node.depth === want && node.kind !== "other");
  }

  _centerOfWidest(accept) {
    const { layout } = this;
    if (!layout) return null;
    let best = -1;
    for (let p = 0; p < layout.count; p++) {
      if (!accept(this.tree.nodes[layout.index[p]])) continue;
      if (best < 0 || layout.x1[p] - layout.x0[p] > layout.x1[best] - layout.x0[best]) best = p;
    }
    if (best < 0) return null;
    const center = this.centerOf(layout.index[best]);
    return { ...center, id: this.tree.nodes[layout.index[best]].id };
  }

  _colorOf(index) {
    let c = this.colors.get(index);
    if (c === undefined) {
      const { matched, colorOf } = this.opts;
      const node = this.tree.nodes[index];
      if (matched && this.opts.searching) c = matched[index] ? MATCH_COLOR : DIM_COLOR;
      else c = colorOf(node);
      this.colors.set(index, c);
    }
    return c;
  }

  _paint() {
    const t0 = performance.now();
    const { layout, ctx, canvas } = this;
    const rowH = this.options.rowHeight;
    const width = this.width;
    const height = Math.max(rowH, (layout.maxDepth + 1) * rowH);
    prepareCanvas(canvas, width, height, ctx);
    ctx.font = FONT;
    ctx.textBaseline = "middle";
    this.charWidth = ctx.measureText("abcdefghij").width / 10 || 6.6;
    const flame = this.options.orientation === "flame";
    const focusDepth = this.tree.nodes[layout.focus].depth;
    for (let p = 0; p < layout.count; p++) {
      const index = layout.index[p];
      const x = layout.x0[p] * width;
      const w = Math.max(0.5, (layout.x1[p] - layout.x0[p]) * width);
      const d = layout.depth[p];
      const y = (flame ? layout.maxDepth - d : d) * rowH;
      ctx.globalAlpha = d < focusDepth ? 0.55 : 1;
      ctx.fillStyle = this._colorOf(index);
      ctx.fillRect(x, y, w, rowH - 1);
      if (w > 3) {
        ctx.fillStyle = "rgba(255,255,255,0.55)";
        ctx.fillRect(x + w - 0.5, y, 0.5, rowH - 1);
      }
      if (index === this.hover) {
        ctx.strokeStyle = "#111";
        ctx.lineWidth = 1.5;
        ctx.strokeRect(x + 0.75, y + 0.75, Math.max(0, w - 1.5), rowH - 2.5);
      }
      if (this.opts.split && w > 8 && !(this.opts.searching && this.opts.matched)) this._strip(index, x, y + rowH - 4, w);
      if (w >= this.charWidth * 3 + 6) this._label(index, x, y, w, rowH);
    }
    ctx.globalAlpha = 1;
    const ms = performance.now() - t0;
    const ds = this.container.dataset;
    ds.nodesDrawn = String(layout.count);
    ds.focus = String(this.tree.nodes[layout.focus].id);
    ds.matched = String(this.opts.matchedCount || 0);
    ds.drawMs = ms.toFixed(2);
    this.canvas.setAttribute(
      "aria-label",
      `${this.options.orientation === "flame" ? "Flame graph" : "Icicle graph"}: ${layout.count} frames drawn, zoomed on ${displayText(this.tree.nodes[layout.focus].name, 80) || "all"}`,
    );
    if (this.options.onDraw) this.options.onDraw(layout.count, ms);
  }

  _strip(index, x, y, w) {
    const parts = this.opts.split(this.tree.nodes[index]);
    if (!parts) return;
    let left = x;
    for (const [color, fraction] of parts) {
      const pw = fraction * (w - 1);
      this.ctx.fillStyle = color;
      this.ctx.fillRect(left, y, pw, 3);
      left += pw;
    }
  }

  _label(index, x, y, w, rowH) {
    const node = this.tree.nodes[index];
    const max = Math.floor((w - 6) / this.charWidth);
    let text = node.label;
    if (text === undefined) text = node.label = displayText(node.name || "(root)", 200);
    if (text.length > max) text = max > 1 ? text.slice(0, max - 1) + "\u2026" : "";
    if (!text) return;
    this.ctx.fillStyle = "#1b1b1b";
    this.ctx.fillText(text, x + 3, y + rowH / 2);
  }

  _schedule() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this._paint());
  }

  _onResize() {
    if (!this.tree) return;
    const width = this.container.clientWidth;
    if (width && Math.abs(width - this.width) >= 1) this.draw(this.tree, this.opts);
  }

  _onMove(event) {
    const node = this.nodeAt(event.clientX, event.clientY);
    const index = node ? node.index : -1;
    if (index !== this.hover) {
      this.hover = index;
      this._schedule();
    }
    this.canvas.style.cursor = node ? "pointer" : "default";
    if (node && this.options.onHover) this.options.onHover(node, event);
    else if (!node && this.options.onLeave) this.options.onLeave(event);
  }

  _onLeave(event) {
    if (this.hover !== -1) {
      this.hover = -1;
      this._schedule();
    }
    if (this.options.onLeave) this.options.onLeave(event);
  }

  _onClick(event) {
    const node = this.nodeAt(event.clientX, event.clientY);
    if (node && this.options.onClick) this.options.onClick(node, event);
  }
}
