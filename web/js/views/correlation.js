/**
 * Correlation view (profile tab "Spans", view=correlation): trace spans lined up against the
 * samples of the same thread on one shared time axis.
 *
 *   axis (brush to zoom)   | shared by everything below
 *   span waterfall         | one row per span (tree order, indented, coloured by category),
 *                          | first row "(no span)": request time outside every child span
 *   flame chart            | the span threads' time-ordered stacks (ui/flamechart.js)
 *   state lane             | CPU / waiting by reason / runnable of those threads
 *   span flame graph + details of the selected span (CPU vs wait, attributes: SQL, URL, status)
 *
 * Selecting a span (click its row, or a frame of the flame chart: the innermost span open
 * there) highlights its window over the flame chart and loads the flame graph of its samples
 * (self only, or including child spans); "aggregate by name" selects every span with the same
 * name, so many short queries add up to one profile. URL state: span, children, agg, t (the
 * visible range of the shared axis); see model/urlstate.js.
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseCorrelation, parseSpanFlamegraph, parseTimeline } from "../model/api.js";
import {
  NO_SPAN, SPAN_CATEGORIES, aggregateSpans, attributeText, categoryInfo, forkDepth, orderedAttributes, repeatedNames, resolveSelection,
  selectionWindows, spanCategory, spanFlamegraphParams,
} from "../model/spans.js";
import { laneColor, rgb } from "../model/colors.js";
import { displayText, formatCount, formatDuration, formatPercent, shortFile } from "../model/format.js";
import { d3 } from "../d3.js";
import { h, clear, append } from "../ui/dom.js";
import { prepareCanvas } from "../ui/canvas.js";
import { FlameChart } from "../ui/flamechart.js";
import { FlameGraph } from "../ui/flamegraph.js";
import { Waterfall } from "../ui/waterfall.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { setStatus } from "../ui/chrome.js";
import { debugState, markAfterPaint } from "../ui/debug.js";

export const correlationView = {
  id: "correlation",
  label: "Spans",
  mount(container, ctx) {
    return new CorrelationView(container, ctx);
  },
};

const MAX_THREADS = 6;
const LANE_HEIGHT = 12;
const NO_SPAN_KEY = NO_SPAN;

function plural(n, word) {
  return `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
}

class CorrelationView {
  constructor(container, ctx) {
    this.ctx = ctx;
    this.container = container;
    this.slot = new RequestSlot();
    this.timelineSlot = new RequestSlot();
    this.detailSlot = new RequestSlot();
    this.flameSlot = new RequestSlot();
    this.correlation = null;
    this.timeline = null;
    this.detail = null;
    this.selection = null;
    this.flameTree = null;
    this.flameFocus = 0;
    this.build();
    debugState().correlation = {
      rowCenter: (key) => (this.waterfall ? this.waterfall.reveal(key) : null),
      spanX: (ns) => (this.chart && this.chart.x ? this.chart.plot.getBoundingClientRect().left + this.chart.x(ns) : null),
    };
    this.load();
  }

  unmount() {
    for (const slot of [this.slot, this.timelineSlot, this.detailSlot, this.flameSlot]) slot.cancel();
    hideTooltip();
    if (this.chart) this.chart.destroy();
    if (this.waterfall) this.waterfall.destroy();
    if (this.flame) this.flame.destroy();
    delete debugState().correlation;
  }

  // -- layout ----------------------------------------------------------------------------

  build() {
    const button = (label, title, fn, attrs = {}) => h("button", { type: "button", title, on: { click: fn }, ...attrs }, label);
    this.modeButtons = [
      button("Self only", "Samples the span owns: no child span was open", () => this.ctx.setState({ children: false }), { class: "seg", data: { children: "0" } }),
      button("Including child spans", "Every sample inside the span's window on its thread", () => this.ctx.setState({ children: true }), { class: "seg", data: { children: "1" } }),
    ];
    this.aggregateBox = h("input", { type: "checkbox", id: "corr-aggregate" });
    this.aggregateBox.addEventListener("change", () => this.ctx.setState({ aggregate: this.aggregateBox.checked }));
    this.zoomTools = h("span", { class: "corr-zoom" },
      button("+", "Zoom in", () => this.chart && this.chart.zoomBy(2)),
      button("\u2212", "Zoom out", () => this.chart && this.chart.zoomBy(0.5)),
      button("Reset", "Show every span", () => this.zoomTo(null)));
    this.legend = h("span", { class: "corr-legend" },
      SPAN_CATEGORIES.map((c) => h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: rgb(c.color) } }), c.label)),
      h("span", { class: "legend-item" }, h("span", { class: "swatch hatch" }), "(no span)"));
    this.tools = h("div", { class: "corr-tools" },
      h("div", { class: "segmented", role: "group", aria: { label: "Span flame graph samples" } }, this.modeButtons),
      h("label", { class: "corr-check", for: "corr-aggregate", title: "Select every span with the selected span's name: many short spans add up to one profile" },
        this.aggregateBox, "Aggregate spans with the same name"),
      this.zoomTools,
      this.legend);
    this.banner = h("div", { class: "corr-banner", id: "no-span", hidden: true });
    this.message = h("div", { class: "view-message", role: "status" });
    this.stack = h("div", { class: "chart-box corr-stack", id: "corr-stack", hidden: true });
    this.flameTitle = h("div", { class: "corr-flame-title" });
    this.flameSummary = h("div", { class: "corr-summary", id: "span-summary" });
    this.flameMessage = h("div", { class: "view-message", role: "status" });
    this.flameBox = h("div", { class: "flame-box", id: "span-flame", data: { orientation: "icicle" } });
    this.flameScroll = h("div", { class: "flame-scroll corr-flame-scroll" }, this.flameBox);
    this.details = h("aside", { class: "corr-details", id: "span-details" });
    this.lower = h("div", { class: "corr-lower", hidden: true },
      h("section", { class: "corr-flame" }, this.flameTitle, this.flameSummary, this.flameMessage, this.flameScroll),
      this.details);
    append(this.container, this.tools, this.banner, this.message, this.stack, this.lower);
    this.syncControls();
  }

  syncControls() {
    const s = this.ctx.state;
    for (const b of this.modeButtons) b.setAttribute("aria-pressed", String((b.dataset.children === "1") === s.children));
    this.aggregateBox.checked = s.aggregate;
  }

  /** The flame chart, waterfall and lane, created once the correlation has spans. */
  buildStack() {
    this.chart = new FlameChart(this.stack, {
      rowHeight: 14,
      onHover: (hit, event) => showTooltip(event, this.chartTooltip(hit)),
      onLeave: () => hideTooltip(),
      onClick: (hit, event) => this.selectAt(hit, event),
      onBrush: (range) => this.zoomTo(range),
      onView: (domain) => this.onView(domain),
      onDraw: () => this.onChartDraw(),
    });
    this.chartBody = this.chart.plot.parentElement;
    this.waterfall = new Waterfall(h("div", { class: "wf", id: "waterfall" }), {
      onSelect: (row) => this.select(row.key),
      onHover: (row, event) => showTooltip(event, this.rowTooltip(row)),
      onLeave: () => hideTooltip(),
    });
    // One shared axis on top: axis, waterfall, flame chart, state lane.
    this.stack.insertBefore(this.waterfall.container, this.chartBody);
    this.overlay = document.createElement("canvas");
    this.overlay.className = "corr-overlay";
    this.overlay.id = "span-highlight";
    this.chart.plot.appendChild(this.overlay);
    this.laneLabels = h("div", { class: "chart-labels corr-lane-labels" });
    this.laneCanvas = document.createElement("canvas");
    this.laneCanvas.className = "corr-lane";
    this.laneCanvas.id = "state-lane";
    this.laneCanvas.setAttribute("role", "img");
    this.laneCanvas.addEventListener("mousemove", (e) => this.onLaneMove(e));
    this.laneCanvas.addEventListener("mouseleave", () => hideTooltip());
    append(this.stack, h("div", { class: "chart-body corr-lane-row" }, this.laneLabels, h("div", { class: "chart-plot" }, this.laneCanvas)));
  }

  // -- data ------------------------------------------------------------------------------

  load() {
    this.message.textContent = "Loading spans\u2026";
    this.slot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/correlation`), { signal }))
      .then((json) => {
        this.correlation = parseCorrelation(json);
        this.message.textContent = "";
        if (!this.correlation.spans.length && !this.correlation.noSpan) {
          this.showEmpty();
          return;
        }
        this.showCorrelation();
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.message.textContent = `Could not load the spans: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  showEmpty() {
    this.tools.hidden = true;
    this.container.dataset.spans = "0";
    const c = this.correlation;
    append(this.message,
      h("div", { class: "corr-empty", id: "corr-empty" },
        h("h3", {}, "No trace spans for this profile"),
        h("p", {}, "Spans are joined to samples by process, thread and time; none are stored for this profile's process and time range",
          c.skipped ? ` (${formatCount(c.skipped)} spans of other processes or threads were skipped)` : "", "."),
        h("p", {}, "To record spans of a Python app: call ", h("code", {}, "profviz.otel.setup_otel(store)"),
          " after configuring OpenTelemetry (it adds profviz's span processor, which stamps each span with its thread, plus the installed instrumentations: sqlite3, psycopg, SQLAlchemy, requests, urllib3, httpx)."),
        h("p", {}, "From any OpenTelemetry SDK or Collector: export OTLP/HTTP traces to this server, ", h("code", {}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:<port>/v1/traces"),
          " (spans without a thread.id attribute join by time only). Then profile the app again (per-request profiles, or profviz attach) and reopen this tab.")));
    markAfterPaint("correlation-painted", { spans: 0 });
  }

  showCorrelation() {
    const c = this.correlation;
    this.container.dataset.spans = String(c.spans.length);
    this.stack.hidden = false;
    this.lower.hidden = false;
    if (!this.chart) this.buildStack();
    this.renderBanner();
    this.rows = this.waterfallRows();
    this.waterfall.setRows(this.rows);
    const threads = c.lanes.map((l) => l.thread).slice(0, MAX_THREADS);
    if (c.lanes.length > MAX_THREADS) this.message.textContent = `Showing the first ${MAX_THREADS} of ${c.lanes.length} span threads in the flame chart.`;
    if (c.truncated) this.message.textContent = `Only the first ${formatCount(c.spans.length)} spans are shown.`;
    if (!c.spans.length) {
      this.message.textContent = "No trace spans were recorded on this request's thread: all of its time is \"(no span)\". "
        + "Record spans with profviz.otel.setup_otel(store) (or otel=\"auto\" in the middleware) to see its queries and calls.";
    }
    this.threads = threads;
    this.fullDomain = this.domainOf(c);
    this.timelineSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/timeline`, this.timelineParams(this.fullDomain)), { signal }))
      .then((json) => {
        this.timeline = parseTimeline(json);
        this.chart.setData(this.timeline, { colorByState: true, colorOf: () => "#ccc", matchedKeys: null, window: null, fullDomain: this.fullDomain });
        this.renderLaneLabels();
        this.applyWindow();
        this.applySelection();
        markAfterPaint("correlation-painted", { spans: c.spans.length });
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.message.textContent = `Could not load the flame chart: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  /** The axis range: the request (or the spans' extent), never empty. */
  domainOf(c) {
    let [a, b] = c.window;
    if (!(b > a)) b = a + 1e6;
    return [a, b];
  }

  timelineParams(domain) {
    const params = new URLSearchParams();
    params.set("threads", this.threads.join(","));
    params.set("start_ns", String(Math.floor(domain[0])));
    params.set("end_ns", String(Math.ceil(domain[1])));
    params.set("width", String(Math.min(10000, this.chart.plotWidth)));
    return params;
  }

  waterfallRows() {
    const c = this.correlation;
    const rows = [];
    if (c.noSpan) {
      const n = c.noSpan;
      rows.push({
        key: NO_SPAN_KEY, label: "(no span)", depth: 0, startNs: n.startNs, endNs: n.endNs,
        intervals: n.intervals, emphasis: true, note: formatDuration(n.durationNs), span: n,
      });
    }
    for (const s of c.spans) {
      const category = spanCategory(s);
      rows.push({
        key: s.spanId, label: s.name, depth: s.depth, startNs: s.startNs, endNs: s.endNs, color: categoryInfo(category).color,
        split: { cpu: s.cpuNs, wait: s.waitNs, runnable: s.runnableNs, gil: s.gilNs }, approximate: s.approximate, error: s.status === "error",
        span: s, category,
      });
    }
    return rows;
  }

  renderBanner() {
    const n = this.correlation.noSpan;
    const banner = clear(this.banner);
    banner.hidden = !n;
    if (!n) return;
    const [a, b] = this.correlation.window;
    const total = b - a;
    const sampled = n.cpuNs + n.waitNs + n.runnableNs + (n.gilNs || 0);
    append(banner,
      h("strong", { class: "corr-banner-title" }, "Not covered by any span: "),
      h("span", { class: "corr-no-span-time", data: { durationNs: n.durationNs } }, formatDuration(n.durationNs)),
      total > 0 ? ` (${formatPercent(n.durationNs / total)} of the request)` : "",
      ` \u00b7 ${plural(n.samples, "sample")}: `,
      h("span", { class: "t-cpu" }, `CPU ${formatDuration(n.cpuNs)}`), " \u00b7 ",
      h("span", { class: "t-wait" }, `waiting ${formatDuration(n.waitNs)}`),
      n.runnableNs ? h("span", { class: "t-runnable" }, ` \u00b7 runnable ${formatDuration(n.runnableNs)}`) : null,
      n.gilNs ? h("span", { class: "t-gil" }, ` \u00b7 waiting for the GIL ${formatDuration(n.gilNs)}`) : null,
      n.uncoveredNs ? ` \u00b7 ${formatDuration(n.uncoveredNs)} without samples` : "",
      n.topFunctions.length ? h("span", { class: "corr-banner-top" }, " \u00b7 mostly in ", h("bdi", { class: "fn-name" }, displayText(n.topFunctions[0].name, 60))) : null,
      " ",
      h("button", { type: "button", class: "corr-banner-show", on: { click: () => this.select(NO_SPAN_KEY) } }, sampled > 0 ? "Show its flame graph" : "Select"));
  }

  renderLaneLabels() {
    const labels = clear(this.laneLabels);
    const tracks = this.timeline.tracks;
    labels.style.height = `${Math.max(1, tracks.length) * LANE_HEIGHT + 4}px`;
    tracks.forEach((t, i) => {
      labels.appendChild(h("div", { class: "chart-label corr-lane-label", style: { top: `${i * LANE_HEIGHT}px`, height: `${LANE_HEIGHT}px` } },
        h("bdi", { class: "chart-tid" }, `state \u00b7 ${displayText(t.name || "(unnamed)", 30)}`)));
    });
  }

  // -- drawing on the shared axis ------------------------------------------------------------

  onChartDraw() {
    const x = this.chart.x;
    if (!x) return;
    const labelWidth = this.chart.labels.getBoundingClientRect().width;
    this.waterfall.setScale(x, labelWidth);
    this.drawOverlay();
    this.drawLane();
  }

  /** The timeline drawn now: the zoomed detail when it covers the view, else the overview. */
  source() {
    const [a, b] = this.chart.x.domain();
    const d = this.detail;
    return d && d.startNs <= a + 1 && d.endNs >= b - 1 ? d : this.timeline;
  }

  drawLane() {
    const canvas = this.laneCanvas;
    const width = this.chart.plotWidth;
    const tracks = this.source().tracks;
    const height = Math.max(1, tracks.length) * LANE_HEIGHT;
    const ctx = prepareCanvas(canvas, width, height);
    const x = this.chart.x;
    let runs = 0;
    tracks.forEach((track, i) => {
      const st = track.states;
      for (let k = 0; k < st.start.length; k++) {
        const x0 = x(st.start[k]);
        const x1 = x(st.end[k]);
        if (x1 < 0 || x0 > width) continue;
        ctx.fillStyle = laneColor(st.state[k] === "waiting" ? "wait" : st.state[k], st.reason[k]);
        ctx.fillRect(x0, i * LANE_HEIGHT + 1, Math.max(0.6, x1 - x0), LANE_HEIGHT - 2);
        runs++;
      }
    });
    this.drawWindows(ctx, width, height, false);
    canvas.dataset.runs = String(runs);
    canvas.setAttribute("aria-label", `Thread state lane: ${runs} runs of CPU, waiting and runnable`);
  }

  /** The selected windows over the flame chart: everything else dimmed, the windows outlined. */
  drawOverlay() {
    const chartCanvas = this.chart.canvas;
    const width = parseFloat(chartCanvas.style.width) || this.chart.plotWidth;
    if (!(width > 0)) return; // not laid out yet: the chart's next draw calls this again
    const height = parseFloat(chartCanvas.style.height) || 40;
    const canvas = this.overlay;
    const ctx = prepareCanvas(canvas, width, height);
    const drawn = this.drawWindows(ctx, width, height, true);
    canvas.dataset.windows = String(drawn.length);
    canvas.dataset.firstWindowPx = drawn.length ? drawn[0].map((v) => v.toFixed(1)).join("-") : "";
  }

  /** Draw the selection's windows on a canvas in plot coordinates; returns the drawn [x0, x1] pairs. */
  drawWindows(ctx, width, height, dimOutside) {
    const windows = this.selection ? selectionWindows(this.correlation, this.selection) : [];
    if (!windows.length) return [];
    const x = this.chart.x;
    const drawn = [];
    for (const [a, b] of windows.slice(0, 5000)) {
      const x0 = Math.max(-2, x(a));
      const x1 = Math.min(width + 2, x(b));
      if (x1 < 0 || x0 > width) continue;
      drawn.push([x0, Math.max(x1, x0 + 1)]);
    }
    if (dimOutside) {
      ctx.fillStyle = "rgba(40, 38, 34, 0.26)";
      ctx.fillRect(0, 0, width, height);
      for (const [x0, x1] of drawn) ctx.clearRect(x0, 0, x1 - x0, height);
    }
    ctx.fillStyle = "rgba(232, 119, 46, 0.08)";
    for (const [x0, x1] of drawn) ctx.fillRect(x0, 0, x1 - x0, height);
    ctx.fillStyle = "rgb(184, 67, 27)";
    for (const [x0, x1] of drawn) {
      ctx.fillRect(x0 - 1, 0, 2, height);
      ctx.fillRect(x1 - 1, 0, 2, height);
    }
    return drawn;
  }

  // -- zoom and URL window ---------------------------------------------------------------------

  /** Show [from, to] ns (null: everything) on the shared axis. */
  zoomTo(range) {
    if (!this.chart || !this.chart.x) return;
    const [f0, f1] = this.fullDomain;
    const sel = d3.select(this.chart.canvas);
    if (!range) {
      sel.call(this.chart.zoom.transform, d3.zoomIdentity);
      return;
    }
    const a = Math.max(f0, Math.min(range[0], range[1]));
    const b = Math.min(f1, Math.max(range[0], range[1]));
    if (!(b - a > 1000)) return;
    const k = (f1 - f0) / (b - a);
    sel.call(this.chart.zoom.transform, d3.zoomIdentity.translate(-k * this.chart.baseX(a), 0).scale(k));
  }

  /** Zoom to the URL's window (t=, seconds from the origin) if it differs from what is shown. */
  applyWindow() {
    const w = this.ctx.state.window;
    if (!this.chart || !this.chart.x) return;
    const [a, b] = this.chart.x.domain();
    if (!w) {
      const [f0, f1] = this.fullDomain;
      if (Math.abs(a - f0) > 1000 || Math.abs(b - f1) > 1000) this.zoomTo(null);
      return;
    }
    const want = [w[0] * 1e9, w[1] * 1e9];
    const tolerance = Math.max(2000, (b - a) * 1e-4);
    if (Math.abs(want[0] - a) > tolerance || Math.abs(want[1] - b) > tolerance) this.zoomTo(want);
  }

  onView(domain) {
    const [f0, f1] = this.fullDomain;
    const full = domain[1] - domain[0] >= (f1 - f0) * 0.999;
    this.ctx.setState({ window: full ? null : [Math.max(0, domain[0]) / 1e9, domain[1] / 1e9] });
    if (domain[1] - domain[0] >= (f1 - f0) * 0.98) {
      this.detailSlot.cancel();
      this.detail = null;
      this.chart.setDetail(null);
      return;
    }
    this.detailSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/timeline`, this.timelineParams(domain)), { signal }))
      .then((json) => {
        this.detail = parseTimeline(json);
        this.chart.setDetail(this.detail);
      })
      .catch(() => {});
  }

  // -- selection ---------------------------------------------------------------------------

  update(ctx, changed) {
    this.ctx = ctx;
    this.syncControls();
    if (!this.correlation || !this.timeline) return;
    if (changed.has("window")) this.applyWindow();
    if (changed.has("span") || changed.has("aggregate") || changed.has("children")) this.applySelection();
    else if (changed.has("color") && this.flameTree) this.drawFlame();
  }

  select(key) {
    this.ctx.setState({ span: key });
  }

  /** Escape clears the selection. */
  onKey(event) {
    if (event.key === "Escape" && this.ctx.state.span) this.ctx.setState({ span: null });
  }

  /** A click on the flame chart selects the innermost span open there on that thread ("(no span)" in a gap). */
  selectAt(hit, event) {
    hideTooltip();
    const time = this.chart.x.invert(event.clientX - this.chart.canvas.getBoundingClientRect().left);
    let best = null;
    for (const s of this.correlation.spans) {
      if (s.startNs <= time && time < s.endNs && (s.tid === hit.track.tid || s.tid === null || s.approximate)) {
        if (!best || s.depth > best.depth || (s.depth === best.depth && s.startNs > best.startNs)) best = s;
      }
    }
    const n = this.correlation.noSpan;
    const inGap = n && n.tid === hit.track.tid && n.intervals.some(([a, b]) => a <= time && time < b);
    if (inGap) this.select(NO_SPAN_KEY);
    else if (best) this.select(best.spanId);
  }

  applySelection() {
    const state = this.ctx.state;
    const { selection, problem } = resolveSelection(this.correlation, { span: state.span, aggregate: state.aggregate });
    if (problem) setStatus(`ignored span=${state.span}: ${problem}`, true);
    this.selection = selection;
    const keys = !selection ? [] : selection.kind === "none" ? [NO_SPAN_KEY] : selection.spans.map((s) => s.spanId);
    this.waterfall.setHighlight(keys, selectionWindows(this.correlation, selection));
    this.container.dataset.selected = selection ? (selection.kind === "none" ? NO_SPAN : selection.kind === "name" ? `name:${selection.spans.length}` : selection.span.spanId) : "";
    if (selection && selection.kind !== "none") this.waterfall.reveal(selection.anchor.spanId);
    this.drawOverlay();
    this.drawLane();
    this.renderDetails();
    this.loadFlame();
  }

  loadFlame() {
    const selection = this.selection;
    const state = this.ctx.state;
    if (!selection) {
      this.flameSlot.cancel();
      this.flameTree = null;
      this.flameScroll.hidden = true;
      clear(this.flameSummary);
      delete this.flameSummary.dataset.samples;
      this.flameTitle.textContent = "Span flame graph";
      this.flameMessage.textContent = "Select a span in the waterfall (or a frame in the flame chart) to see the flame graph of its samples.";
      return;
    }
    const params = spanFlamegraphParams(selection, state.children);
    this.flameTitle.textContent = this.flameHeading(selection, state.children);
    this.flameBox.classList.add("loading");
    this.flameSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/span-flamegraph`, params), { signal }))
      .then((json) => {
        this.flameBox.classList.remove("loading");
        this.flameTree = parseSpanFlamegraph(json);
        this.flameFocus = this.flameTree.info.focus;
        this.renderFlameSummary();
        this.drawFlame();
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.flameBox.classList.remove("loading");
        this.flameMessage.textContent = `Could not load the span flame graph: ${err.message}`;
        this.flameMessage.classList.add("error");
      });
  }

  flameHeading(selection, children) {
    const scope = selection.kind === "none" ? "" : children ? " \u2014 including child spans" : " \u2014 self only (outside child spans)";
    if (selection.kind === "none") return "Flame graph of \"(no span)\": request time outside every child span";
    if (selection.kind === "name") return `Flame graph of ${selection.spans.length} spans named \u201c${displayText(selection.name, 80)}\u201d${scope}`;
    return `Flame graph of \u201c${displayText(selection.span.name, 80)}\u201d${scope}`;
  }

  renderFlameSummary() {
    const tree = this.flameTree;
    const root = tree.nodes[tree.info.focus];
    const el = clear(this.flameSummary);
    const total = root.total;
    const pct = (v) => (total > 0 ? ` (${formatPercent(v / total)})` : "");
    Object.assign(el.dataset, {
      samples: String(tree.info.totalSamples), totalNs: String(total), cpuNs: String(root.cpu), waitNs: String(root.wait),
      runnableNs: String(root.runnable), gilNs: String(root.gil || 0),
    });
    this.flameMessage.classList.remove("error");
    if (!tree.info.totalSamples) {
      this.flameScroll.hidden = true;
      this.flameMessage.textContent = this.ctx.state.children || this.selection.kind === "none"
        ? "No samples were taken inside this window: it was shorter than the sampling interval."
        : "No samples belong to this span itself (its child spans own them, or it is shorter than the sampling interval). Try \u201cIncluding child spans\u201d, or aggregate spans with the same name.";
      append(el, `${formatCount(0)} samples`);
      return;
    }
    this.flameScroll.hidden = false;
    this.flameMessage.textContent = "";
    append(el,
      h("strong", {}, plural(tree.info.totalSamples, "sample")), ` \u00b7 ${formatDuration(total)} sampled`,
      h("span", { class: "t-cpu" }, ` \u00b7 CPU ${formatDuration(root.cpu)}${pct(root.cpu)}`),
      h("span", { class: "t-wait" }, ` \u00b7 waiting ${formatDuration(root.wait)}${pct(root.wait)}`),
      root.runnable ? h("span", { class: "t-runnable" }, ` \u00b7 runnable ${formatDuration(root.runnable)}${pct(root.runnable)}`) : null,
      root.gil ? h("span", { class: "t-gil" }, ` \u00b7 waiting for the GIL ${formatDuration(root.gil)}${pct(root.gil)}`) : null,
      root.waits ? h("span", { class: "hint" }, ` \u00b7 waits: ${Object.entries(root.waits).map(([r, ns]) => `${displayText(r, 30)} ${formatDuration(ns)}`).join(", ")}`) : null);
  }

  drawFlame() {
    const tree = this.flameTree;
    if (!tree || !tree.info.totalSamples) return;
    if (!this.flame) {
      this.flame = new FlameGraph(this.flameBox, {
        orientation: "icicle",
        onClick: (node) => {
          this.flameFocus = node.index === this.flameFocus || node.kind === "other" ? tree.info.focus : node.index;
          this.drawFlame();
        },
        onHover: (node, event) => showTooltip(event, this.ctx.tooltipFor(node, this.flameTree, this.flameTree.nodes[this.flameTree.info.focus].total)),
        onLeave: () => hideTooltip(),
      });
    }
    const count = this.flame.draw(this.flameTree, { focus: this.flameFocus, colorOf: this.ctx.colorOf(this.flameTree, this.flameFocus), split: this.ctx.split });
    // Every sample of a span shares the framework's outer frames: start the view where they fork.
    const trunk = forkDepth(this.flameTree, this.flameFocus);
    this.flameScroll.scrollTop = Math.max(0, (trunk - 2) * 18);
    this.flameBox.dataset.trunkDepth = String(trunk);
    markAfterPaint("span-flame-painted", { nodes: count });
  }

  renderDetails() {
    const el = clear(this.details);
    const selection = this.selection;
    if (!selection) {
      append(el, h("h3", {}, "Span details"), h("p", { class: "hint" }, "Click a span row to see its timing, CPU vs waiting and attributes (SQL text, URL, status)."),
        this.repeatedHint());
      return;
    }
    const row = (label, value, cls) => h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: cls }, value));
    if (selection.kind === "none") {
      const n = this.correlation.noSpan;
      append(el,
        h("h3", { class: "corr-no-span-title" }, "(no span): not covered by any span"),
        h("p", { class: "hint" }, "Time of the request outside every child span: work no instrumentation covers (template rendering, serialisation, pure-Python loops, unlisted I/O). Unsuspected bottlenecks hide here."),
        h("table", { class: "corr-stats" }, h("tbody", {},
          row("Time outside spans", formatDuration(n.durationNs)),
          row("Pieces", formatCount(n.intervals.length)),
          row("Samples", formatCount(n.samples)),
          row("CPU", formatDuration(n.cpuNs), "t-cpu"),
          row("Waiting", formatDuration(n.waitNs), "t-wait"),
          row("Runnable", formatDuration(n.runnableNs), "t-runnable"),
          row("Waiting for the GIL", formatDuration(n.gilNs || 0), "t-gil"),
          row("Not covered by samples", formatDuration(n.uncoveredNs)))),
        this.topFunctions(n.topFunctions));
      return;
    }
    const anchor = selection.anchor;
    const category = categoryInfo(spanCategory(anchor));
    const title = h("h3", { class: "corr-span-title" }, h("span", { class: "swatch", style: { background: rgb(category.color) } }), " ", h("bdi", { class: "corr-span-name" }, displayText(anchor.name, 300)));
    append(el, title, h("div", { class: "corr-span-kind hint" }, `${category.label} \u00b7 ${displayText(anchor.kind, 20)} span \u00b7 status ${displayText(anchor.status, 20)}`,
      anchor.approximate ? " \u00b7 no thread id: joined by time only" : ""));
    if (selection.kind === "name") {
      const agg = aggregateSpans(selection.spans);
      append(el, h("table", { class: "corr-stats", id: "span-aggregate", data: { count: agg.count } }, h("tbody", {},
        row("Spans", formatCount(agg.count)),
        row("Total duration", formatDuration(agg.durationNs)),
        row("Mean / max", `${formatDuration(agg.meanNs)} / ${formatDuration(agg.maxNs)}`),
        row("Samples inside", formatCount(agg.samples)),
        row("CPU", formatDuration(agg.cpuNs), "t-cpu"),
        row("Waiting", formatDuration(agg.waitNs), "t-wait"),
        row("Runnable", formatDuration(agg.runnableNs), "t-runnable"),
          row("Waiting for the GIL", formatDuration(agg.gilNs || 0), "t-gil"),
        row("Self (outside child spans)", formatDuration(agg.selfNs)),
        row("Not covered by samples", formatDuration(agg.uncoveredNs)))),
      h("p", { class: "hint" }, "Attributes of the span you clicked:"));
    } else {
      const origin = this.correlation.window[0];
      append(el, h("table", { class: "corr-stats" }, h("tbody", {},
        row("Duration", formatDuration(anchor.durationNs)),
        row("Starts at", `+${formatDuration(anchor.startNs - origin)}`),
        row("Thread", anchor.tid !== null ? `${displayText(anchor.threadName || "(unnamed)", 60)} (tid ${anchor.tid})` : "unknown"),
        row("Samples inside", formatCount(anchor.samples)),
        row("CPU", formatDuration(anchor.cpuNs), "t-cpu"),
        row("Waiting", formatDuration(anchor.waitNs), "t-wait"),
        row("Runnable", formatDuration(anchor.runnableNs), "t-runnable"),
          row("Waiting for the GIL", formatDuration(anchor.gilNs || 0), "t-gil"),
        row("Self (outside child spans)", formatDuration(anchor.selfNs)),
        row("Not covered by samples", formatDuration(anchor.uncoveredNs)))));
      const same = this.correlation.spans.filter((s) => s.name === anchor.name).length;
      if (same > 1 && !this.ctx.state.aggregate) {
        append(el, h("p", { class: "hint" }, `${same} spans have this name: `,
          h("button", { type: "button", class: "linkish", on: { click: () => this.ctx.setState({ aggregate: true }) } }, "aggregate them")));
      }
    }
    const attributes = orderedAttributes(anchor.attributes);
    const table = h("table", { class: "corr-attrs", id: "span-attributes" }, h("tbody", {}, attributes.map(([label, key, value]) => {
      const text = attributeText(value);
      return h("tr", { data: { key: displayText(key, 200) } },
        h("th", { scope: "row", title: key }, displayText(label, 60)),
        h("td", {}, h("code", { class: label === "SQL" ? "attr-value sql" : "attr-value" }, displayText(text, 2000)),
          text.length > 2000 ? h("span", { class: "hint" }, ` (${formatCount(text.length)} characters)`) : null));
    })));
    append(el, h("h4", {}, "Attributes"), attributes.length ? table : h("p", { class: "hint" }, "No attributes."), this.topFunctions(anchor.topFunctions));
  }

  topFunctions(list) {
    if (!list || !list.length) return null;
    return h("div", { class: "corr-top" }, h("h4", {}, "Top functions by self time"),
      h("ol", {}, list.map((f) => h("li", {}, h("bdi", { class: "fn-name" }, displayText(f.name, 80)), " ",
        h("span", { class: "fn-file" }, `${shortFile(f.file, 2)}${f.line ? ":" + f.line : ""}`), " ", h("span", { class: "hint" }, formatDuration(f.selfNs))))));
  }

  repeatedHint() {
    const repeated = [...repeatedNames(this.correlation.spans)].sort((a, b) => b[1] - a[1]).slice(0, 3);
    if (!repeated.length) return null;
    return h("p", { class: "hint" }, "Repeated span names (select one and aggregate): ",
      repeated.map(([name, n], i) => [i ? ", " : "", h("bdi", {}, displayText(name, 40)), ` \u00d7${n}`]));
  }

  // -- tooltips ----------------------------------------------------------------------------

  rowTooltip(row) {
    const s = row.span;
    const sampled = s.cpuNs + s.waitNs + s.runnableNs + (s.gilNs || 0);
    const rows = [
      ["Duration", formatDuration(s.durationNs)],
      ["Samples", formatCount(s.samples)],
      ["CPU", formatDuration(s.cpuNs)],
      ["Waiting", formatDuration(s.waitNs)],
    ];
    if (s.runnableNs) rows.push(["Runnable", formatDuration(s.runnableNs)]);
    if (s.gilNs) rows.push(["Waiting for the GIL", formatDuration(s.gilNs)]);
    rows.push(["Self", formatDuration(s.selfNs)], ["No samples", formatDuration(s.uncoveredNs)]);
    const headline = orderedAttributes(s.attributes).slice(0, 2);
    for (const [label, , value] of headline) rows.push([label, displayText(attributeText(value), 160)]);
    return {
      title: row.key === NO_SPAN_KEY ? "(no span): request time outside every child span" : s.name,
      subtitle: row.key === NO_SPAN_KEY ? `${row.intervals.length} pieces` : `${categoryInfo(row.category).label} \u00b7 ${s.kind}${s.status !== "unset" ? " \u00b7 " + s.status : ""}`,
      bars: sampled ? [
        { className: "part-cpu", fraction: s.cpuNs / sampled },
        { className: "part-wait", fraction: s.waitNs / sampled },
        { className: "part-runnable", fraction: s.runnableNs / sampled },
        { className: "part-gil", fraction: (s.gilNs || 0) / sampled },
      ] : [],
      rows,
    };
  }

  chartTooltip(hit) {
    const thread = `${displayText(hit.track.name || "(unnamed)", 60)} (tid ${hit.track.tid})`;
    const when = `${formatDuration(hit.start - this.fullDomain[0])} \u2013 ${formatDuration(hit.end - this.fullDomain[0])}`;
    if (hit.kind === "state") return { title: hit.reason ? `Waiting: ${hit.reason}` : hit.state, subtitle: thread, rows: [["Time", when]] };
    const node = hit.node || { name: "?", file: "", line: 0 };
    return {
      title: node.name,
      subtitle: node.file ? `${shortFile(node.file, 3)}${node.line ? ":" + node.line : ""}` : "",
      rows: [["Thread", thread], ["Time", when], ["", "click: select the span open here"]],
    };
  }

  onLaneMove(event) {
    if (!this.timeline || !this.chart.x) return;
    const rect = this.laneCanvas.getBoundingClientRect();
    const i = Math.floor((event.clientY - rect.top) / LANE_HEIGHT);
    const track = this.source().tracks[i];
    if (!track) return hideTooltip();
    const t = this.chart.x.invert(event.clientX - rect.left);
    const st = track.states;
    for (let k = 0; k < st.start.length; k++) {
      if (st.start[k] <= t && t < st.end[k]) {
        const label = { cpu: "On CPU", waiting: "Waiting", runnable: "Runnable (waiting for a CPU)", gil: "Waiting for the GIL", unknown: "Unknown state" }[st.state[k]] || st.state[k];
        showTooltip(event, { title: st.reason[k] ? `${label}: ${st.reason[k]}` : label, subtitle: `${displayText(track.name || "(unnamed)", 60)} (tid ${track.tid})`,
          rows: [["Time", `${formatDuration(st.start[k] - this.fullDomain[0])} \u2013 ${formatDuration(st.end[k] - this.fullDomain[0])}`]] });
        return;
      }
    }
    hideTooltip();
  }
}

