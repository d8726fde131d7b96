/**
 * Time-ordered flame chart view: every selected thread on stacked tracks sharing one time
 * axis. Brushing the axis sets the page's time window (t=... in the URL), which filters every
 * other view; Ctrl+wheel zooms (finer data is fetched for the zoomed range), drag pans.
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseTimeline } from "../model/api.js";
import { functionKey } from "../model/tree.js";
import { nodeColor } from "../model/colors.js";
import { displayText, formatDuration, shortFile } from "../model/format.js";
import { h, append } from "../ui/dom.js";
import { FlameChart } from "../ui/flamechart.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { markAfterPaint } from "../ui/debug.js";

export const chartView = {
  id: "chart",
  label: "Flame chart",
  mount(container, ctx) {
    return new ChartView(container, ctx);
  },
};

class ChartView {
  constructor(container, ctx) {
    this.ctx = ctx;
    this.message = h("div", { class: "view-message", role: "status" });
    const button = (label, title, fn) => h("button", { type: "button", title, on: { click: fn } }, label);
    const tools = h("div", { class: "chart-tools" },
      button("+", "Zoom in", () => this.chart.zoomBy(2)),
      button("\u2212", "Zoom out", () => this.chart.zoomBy(0.5)),
      button("Reset", "Show the whole profile", () => this.chart.zoomBy(null)),
      h("span", { class: "hint" }, "Drag on the time axis to select a window (filters every view) \u00b7 Ctrl+wheel zooms \u00b7 drag pans \u00b7 click a frame to open it in the flame graph"));
    this.box = h("div", { class: "chart-box", id: "chart" });
    append(container, tools, this.message, this.box);
    this.chart = new FlameChart(this.box, {
      onHover: (hit, event) => showTooltip(event, this.tooltip(hit)),
      onLeave: () => hideTooltip(),
      onClick: (hit) => {
        hideTooltip();
        if (hit.node) this.ctx.setState({ view: "flame", zoom: String(hit.node.id) });
      },
      onBrush: (range) => this.ctx.setState({ window: range ? [Math.max(0, range[0]) / 1e9, range[1] / 1e9] : null }),
      onView: (domain) => this.loadDetail(domain),
    });
    this.slot = new RequestSlot();
    this.detailSlot = new RequestSlot();
    this.load();
  }

  unmount() {
    this.slot.cancel();
    this.detailSlot.cancel();
    hideTooltip();
    this.chart.destroy();
  }

  update(ctx, changed) {
    this.ctx = ctx;
    if (changed.has("threads") || changed.has("*")) this.load();
    else if (changed.has("window") || changed.has("color") || changed.has("searchResult") || changed.has("search")) this.restyle();
  }

  options() {
    const { state, search } = this.ctx;
    const matchedKeys = state.search && search ? new Set(search.functions.map((f) => functionKey(f.name, f.file))) : null;
    const win = state.window ? [state.window[0] * 1e9, state.window[1] * 1e9] : null;
    const mode = state.color;
    const hot = this.hotSelf;
    return {
      colorByState: mode === "state",
      colorOf: (node) => nodeColor({ ...node, self: hot ? hot.self.get(node.id) || 0 : 0 }, mode, { maxSelf: hot ? hot.max : 0 }),
      matchedKeys,
      window: win,
      fullDomain: this.ctx.info.timeRange,
    };
  }

  restyle() {
    if (this.ctx.state.color === "hot" && !this.hotSelf) {
      this.ctx.baseTree().then((tree) => {
        const self = new Map();
        let max = 0;
        for (const n of tree.nodes) {
          self.set(n.id, n.self);
          if (n.self > max) max = n.self;
        }
        this.hotSelf = { self, max };
        this.restyle();
      }).catch(() => {});
    }
    if (this.timeline) this.chart.setOptions(this.options());
  }

  params(domain) {
    const params = new URLSearchParams();
    const { state, info } = this.ctx;
    if (state.threads.length) params.set("threads", state.threads.join(","));
    const [a, b] = domain || info.timeRange;
    params.set("start_ns", String(Math.floor(a)));
    params.set("end_ns", String(Math.ceil(b)));
    params.set("width", String(Math.min(10000, this.chart.plotWidth)));
    return params;
  }

  load() {
    this.box.classList.add("loading");
    this.slot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/timeline`, this.params(null)), { signal }))
      .then((json) => {
        this.timeline = parseTimeline(json);
        this.box.classList.remove("loading");
        this.message.textContent = this.timeline.tracks.length ? "" : "No threads match the thread filter.";
        this.chart.setData(this.timeline, this.options());
        this.restyle();
        markAfterPaint("chart-painted", { tracks: this.timeline.tracks.length });
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.box.classList.remove("loading");
        this.message.textContent = `Could not load the flame chart: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  loadDetail(domain) {
    const full = this.ctx.info.timeRange;
    if (domain[1] - domain[0] >= (full[1] - full[0]) * 0.98) {
      this.detailSlot.cancel();
      this.chart.setDetail(null);
      return;
    }
    this.detailSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/timeline`, this.params(domain)), { signal }))
      .then((json) => this.chart.setDetail(parseTimeline(json)))
      .catch(() => {});
  }

  tooltip(hit) {
    const thread = `${displayText(hit.track.name || "(unnamed)", 60)} (tid ${hit.track.tid})`;
    const when = `${(hit.start / 1e9).toFixed(3)} s \u2013 ${(hit.end / 1e9).toFixed(3)} s (${formatDuration(hit.end - hit.start)})`;
    if (hit.kind === "state") {
      const label = { cpu: "On CPU", waiting: "Waiting", runnable: "Runnable (waiting for a CPU)", gil: "Waiting for the GIL", unknown: "Unknown state" }[hit.state] || hit.state;
      return { title: hit.reason ? `${label}: ${hit.reason}` : label, subtitle: thread, rows: [["Time", when]] };
    }
    const node = hit.node || { name: "?", file: "", line: 0 };
    return {
      title: node.name,
      subtitle: node.file ? `${shortFile(node.file, 3)}${node.line ? ":" + node.line : ""}` : "",
      rows: [["Thread", thread], ["Time", when], ["Depth", String(hit.depth)], ["", "click: open in the flame graph"]],
    };
  }
}
