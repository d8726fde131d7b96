/**
 * Canvas span waterfall: one row per span (indented by depth, coloured by category) with its
 * bar on a time scale shared with a flame chart, and a CPU / waiting / runnable / GIL strip under
 * each bar. Rows are virtualised (only the visible ones are drawn), so tens of thousands of
 * spans stay cheap.
 *
 *   const wf = new Waterfall(container, { onSelect(row, event), onHover(row, event), onLeave() });
 *   wf.setRows(rows);                 // [{ key, label, depth, startNs, endNs, color: [r,g,b],
 *                                     //    intervals?, split?: {cpu, wait, runnable, gil}, approximate,
 *                                     //    error, emphasis, note }]
 *   wf.setScale(x, labelWidth);       // x: ns -> px in the plot (a d3 scale), plot starts at labelWidth
 *   wf.setHighlight(keys, windows);   // selected row keys, time windows [[a, b]] to band
 *
 * `intervals` (optional) draws several hatched pieces instead of one bar (the "(no span)" row).
 * The container exposes data-rows, data-rows-drawn and data-selected (selected row count).
 */
import { displayText, formatDuration } from "../model/format.js";
import { STATE_COLORS, rgb } from "../model/colors.js";
import { h, append } from "./dom.js";
import { prepareCanvas } from "./canvas.js";

const FONT = '11px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';
const SMALL_FONT = '10px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace';
const INDENT = 11;
const MAX_INDENT_LEVELS = 12;
const EMPHASIS = "rgb(201, 52, 36)";

export class Waterfall {
  constructor(container, options = {}) {
    this.options = { rowHeight: 18, maxHeight: 300, ...options };
    this.container = container;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "wf-canvas";
    this.canvas.setAttribute("role", "img");
    this.spacer = h("div", { class: "wf-spacer" }, this.canvas);
    this.scroller = h("div", { class: "wf-scroll" }, this.spacer);
    append(container, this.scroller);
    this.ctx = this.canvas.getContext("2d");
    this.rows = [];
    this.x = null;
    this.labelWidth = 170;
    this.selected = new Set();
    this.windows = [];
    this.hover = -1;
    this.frame = 0;
    this.hatch = null;
    this.scroller.addEventListener("scroll", () => this._schedule());
    this.canvas.addEventListener("mousemove", (e) => this._onMove(e));
    this.canvas.addEventListener("mouseleave", () => this._onLeave());
    this.canvas.addEventListener("click", (e) => this._onClick(e));
  }

  destroy() {
    cancelAnimationFrame(this.frame);
  }

  setRows(rows) {
    this.rows = rows;
    this.keyIndex = new Map(rows.map((r, i) => [r.key, i]));
    const total = rows.length * this.options.rowHeight;
    this.spacer.style.height = `${total}px`;
    this.scroller.style.maxHeight = `${this.options.maxHeight}px`;
    this.container.dataset.rows = String(rows.length);
    this._paint();
  }

  setScale(x, labelWidth) {
    this.x = x;
    this.labelWidth = labelWidth;
    this._paint();
  }

  setHighlight(keys, windows) {
    this.selected = new Set(keys);
    this.windows = windows || [];
    this.container.dataset.selected = String(this.selected.size);
    this._paint();
  }

  /** Scroll so row `key` is visible; returns its client-coordinate centre (of its bar if drawn), or null. */
  reveal(key) {
    const i = this.keyIndex ? this.keyIndex.get(key) : undefined;
    if (i === undefined) return null;
    const rowH = this.options.rowHeight;
    const view = this.scroller.clientHeight;
    const top = i * rowH;
    if (top < this.scroller.scrollTop || top + rowH > this.scroller.scrollTop + view) {
      this.scroller.scrollTop = Math.max(0, top - view / 2);
    }
    this._paint();
    const rect = this.canvas.getBoundingClientRect();
    const y = rect.top + top - this.scroller.scrollTop + rowH / 2;
    const row = this.rows[i];
    let x = rect.left + this.labelWidth / 2;
    if (this.x && row.endNs > row.startNs) {
      const a = Math.max(0, this.x(row.startNs));
      const b = Math.min(this.plotWidth, this.x(row.endNs));
      if (b > a) x = rect.left + this.labelWidth + (a + b) / 2;
    }
    return { x, y };
  }

  get plotWidth() {
    return this.x ? this.x.range()[1] : 0;
  }

  _schedule() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this._paint());
  }

  _hatchPattern() {
    if (this.hatch) return this.hatch;
    const tile = document.createElement("canvas");
    tile.width = 6;
    tile.height = 6;
    const t = tile.getContext("2d");
    t.fillStyle = "rgb(250, 214, 200)";
    t.fillRect(0, 0, 6, 6);
    t.strokeStyle = EMPHASIS;
    t.lineWidth = 1.6;
    t.beginPath();
    t.moveTo(-1, 7);
    t.lineTo(7, -1);
    t.moveTo(-1, 1);
    t.lineTo(1, -1);
    t.moveTo(5, 7);
    t.lineTo(7, 5);
    t.stroke();
    this.hatch = this.ctx.createPattern(tile, "repeat");
    return this.hatch;
  }

  _paint() {
    const { ctx, canvas, rows } = this;
    const rowH = this.options.rowHeight;
    const labelWidth = this.labelWidth;
    const plotWidth = this.plotWidth;
    const width = Math.max(1, Math.floor(labelWidth + plotWidth));
    const height = Math.max(rowH, Math.min(rows.length * rowH, this.scroller.clientHeight || this.options.maxHeight));
    prepareCanvas(canvas, width, height, ctx);
    if (!this.x || !rows.length) return;
    const x = this.x;
    const scrollTop = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(scrollTop / rowH));
    const last = Math.min(rows.length, Math.ceil((scrollTop + height) / rowH));
    ctx.textBaseline = "middle";
    ctx.font = FONT;
    const charWidth = ctx.measureText("abcdefghij").width / 10 || 6.6;
    // Grid lines at the axis ticks.
    ctx.fillStyle = "rgba(0, 0, 0, 0.06)";
    for (const tick of x.ticks(Math.max(2, Math.floor(plotWidth / 90)))) {
      const px = labelWidth + x(tick);
      if (px >= labelWidth && px <= width) ctx.fillRect(Math.round(px), 0, 1, height);
    }
    let drawn = 0;
    for (let i = first; i < last; i++) {
      const row = rows[i];
      const y = i * rowH - scrollTop;
      const selected = this.selected.has(row.key);
      if (selected) {
        ctx.fillStyle = "rgba(248, 196, 120, 0.35)";
        ctx.fillRect(0, y, width, rowH);
      } else if (i === this.hover) {
        ctx.fillStyle = "rgba(0, 0, 0, 0.045)";
        ctx.fillRect(0, y, width, rowH);
      }
      this._label(row, y, rowH, labelWidth, charWidth, selected);
      ctx.save();
      ctx.beginPath();
      ctx.rect(labelWidth, y, plotWidth, rowH);
      ctx.clip();
      this._bar(row, y, rowH, labelWidth, plotWidth, charWidth, selected);
      ctx.restore();
      drawn++;
    }
    // Selected windows as faint bands across every row.
    ctx.save();
    ctx.beginPath();
    ctx.rect(labelWidth, 0, plotWidth, height);
    ctx.clip();
    for (const [a, b] of this.windows.slice(0, 5000)) {
      const x0 = labelWidth + x(a);
      const x1 = labelWidth + x(b);
      if (x1 < labelWidth || x0 > width) continue;
      ctx.fillStyle = "rgba(232, 119, 46, 0.10)";
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), height);
    }
    ctx.restore();
    ctx.fillStyle = "rgba(0, 0, 0, 0.12)";
    ctx.fillRect(labelWidth - 1, 0, 1, height);
    this.container.dataset.rowsDrawn = String(drawn);
    this.canvas.setAttribute("aria-label", `Span waterfall: ${rows.length} rows, rows ${first + 1} to ${last} shown`);
  }

  _label(row, y, rowH, labelWidth, charWidth, selected) {
    const { ctx } = this;
    const indent = Math.min(row.depth, MAX_INDENT_LEVELS) * INDENT + 4;
    const mid = y + rowH / 2;
    ctx.font = SMALL_FONT;
    const duration = row.note !== undefined ? row.note : formatDuration(row.endNs - row.startNs);
    const durationWidth = ctx.measureText(duration).width;
    ctx.fillStyle = "#77746b";
    ctx.fillText(duration, labelWidth - 6 - durationWidth, mid);
    if (row.intervals) {
      ctx.fillStyle = this._hatchPattern();
    } else {
      ctx.fillStyle = rgb(row.color);
    }
    ctx.fillRect(indent, mid - 4, 8, 8);
    ctx.font = FONT;
    const room = labelWidth - 6 - durationWidth - 6 - (indent + 12);
    const max = Math.floor(room / charWidth);
    let text = row.text || (row.text = displayText(row.label, 200));
    if (text.length > max) text = max > 1 ? text.slice(0, max - 1) + "\u2026" : "";
    ctx.fillStyle = row.emphasis ? EMPHASIS : row.error ? "#b3261e" : "#1d1d1b";
    if (row.emphasis || selected) ctx.font = `bold ${FONT}`;
    ctx.fillText(text, indent + 12, mid);
    ctx.font = FONT;
  }

  _bar(row, y, rowH, labelWidth, plotWidth, charWidth, selected) {
    const { ctx, x } = this;
    const top = y + 3;
    const height = rowH - 6;
    if (row.intervals) {
      ctx.fillStyle = this._hatchPattern();
      for (const [a, b] of row.intervals) {
        const x0 = labelWidth + x(a);
        const x1 = labelWidth + x(b);
        if (x1 < labelWidth || x0 > labelWidth + plotWidth) continue;
        ctx.fillRect(x0, top, Math.max(1.5, x1 - x0), height);
      }
      return;
    }
    const x0 = labelWidth + x(row.startNs);
    const x1 = labelWidth + x(row.endNs);
    const w = Math.max(1.5, x1 - x0);
    ctx.globalAlpha = row.approximate ? 0.45 : 1;
    ctx.fillStyle = rgb(row.color);
    ctx.fillRect(x0, top, w, height);
    ctx.globalAlpha = 1;
    const split = row.split;
    const total = split ? split.cpu + split.wait + split.runnable + (split.gil || 0) : 0;
    if (total > 0 && w > 4) {
      let left = x0;
      for (const [key, value] of [["cpu", split.cpu], ["wait", split.wait], ["runnable", split.runnable], ["gil", split.gil || 0]]) {
        const pw = (value / total) * w;
        ctx.fillStyle = rgb(STATE_COLORS[key]);
        ctx.fillRect(left, top + height - 3, pw, 3);
        left += pw;
      }
    }
    if (row.approximate) {
      ctx.setLineDash([3, 2]);
      ctx.strokeStyle = "#555";
      ctx.lineWidth = 1;
      ctx.strokeRect(x0 + 0.5, top + 0.5, Math.max(0, w - 1), height - 1);
      ctx.setLineDash([]);
    }
    if (selected) {
      ctx.strokeStyle = "#1d1d1b";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0 + 0.75, top + 0.75, Math.max(0, w - 1.5), height - 1.5);
    }
    const text = formatDuration(row.endNs - row.startNs);
    const tw = text.length * charWidth * 0.92;
    ctx.font = SMALL_FONT;
    ctx.fillStyle = "#4a4842";
    const right = labelWidth + plotWidth;
    if (x1 + 4 + tw < right) ctx.fillText(text, x1 + 4, y + rowH / 2);
    else if (x0 - 4 - tw > labelWidth) ctx.fillText(text, x0 - 4 - tw, y + rowH / 2);
    ctx.font = FONT;
  }

  _rowAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    const y = event.clientY - rect.top + this.scroller.scrollTop;
    const i = Math.floor(y / this.options.rowHeight);
    return i >= 0 && i < this.rows.length ? i : -1;
  }

  _onMove(event) {
    const i = this._rowAt(event);
    if (i !== this.hover) {
      this.hover = i;
      this._schedule();
    }
    this.canvas.style.cursor = i >= 0 ? "pointer" : "default";
    if (i >= 0 && this.options.onHover) this.options.onHover(this.rows[i], event);
    else if (i < 0 && this.options.onLeave) this.options.onLeave();
  }

  _onLeave() {
    if (this.hover !== -1) {
      this.hover = -1;
      this._schedule();
    }
    if (this.options.onLeave) this.options.onLeave();
  }

  _onClick(event) {
    const i = this._rowAt(event);
    if (i >= 0 && this.options.onSelect) this.options.onSelect(this.rows[i], event);
  }
}
