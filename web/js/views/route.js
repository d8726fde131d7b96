/**
 * One route's page (/routes/<METHOD>?route=<route>): its figures over the window, latency
 * histogram (log x), latency over time (P50/P95/P99 per bucket, a dot per slow request;
 * brushing sets the window), the slowest requests (a kept profile opens its flame graph), and
 * "Why is the tail slow?": the diff flame graph of the route's requests above P95 against its
 * typical ones (P40..P60), each side in time per request (widths: tail; colour: extra time per
 * request), with the table of functions that account for the extra time.
 *
 * Also `requestInfoLine(profile)`: the request line of a request profile's page.
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import {
  parseRoutesLocation, buildRoutesLocation, routesHref, routeHref, windowApiParams, parseRouteTable, parseRouteLatency,
  parseRequestList, parseTail, autoBucket, latencyApiParams, parseLoadCurve, keepOrigin, withOrigin, parseOrigins,
  parseVersionsOfRoute,
} from "../model/routes.js";
import { diffColor } from "../model/colors.js";
import { displayText, formatCount, formatDuration, formatPercent, shortFile } from "../model/format.js";
import { h, clear, append } from "../ui/dom.js";
import { renderTable } from "../ui/table.js";
import { setCrumbs, setStatus } from "../ui/chrome.js";
import { FlameGraph } from "../ui/flamegraph.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { drawHistogram, drawTimeChart, drawLoadChart, keepWidth, formatMs } from "../ui/routecharts.js";
import { markAfterPaint, mark } from "../ui/debug.js";
import { drawFindings } from "../ui/findings.js";
import { parseFindings } from "../model/findings.js";
import { windowBar, requestColumns, errorBox, latencySwitch, loadNote } from "./routes.js";

const SLOWEST_FETCHED = 200;
const SLOWEST_LISTED = 50;

function signedMs(ms) {
  return `${ms > 0 ? "+" : ms < 0 ? "\u2212" : "\u00b1"}${formatMs(Math.abs(ms))}`;
}

export const routePage = {
  name: "route",
  match: (pathname) => (parseRoutesLocation(pathname).page === "route" ? {} : null),
  mount(root) {
    return new RoutePage(root);
  },
};

class RoutePage {
  constructor(root) {
    this.state = parseRoutesLocation(window.location.pathname, window.location.search);
    this.slot = new RequestSlot();
    const { route, method } = this.state;
    const label = `${method} ${route ?? ""}`;
    setCrumbs([{ label: "Profiles", href: "/" }, { label: "Routes", href: routesHref(this.state.window, this.state.latency) }, { label }]);
    document.title = `profviz: ${displayText(label, 80)}`;
    this.windowHost = h("div", { class: "routes-window-host" });
    this.latencyHost = h("div", { class: "latency-host" });
    this.stats = h("div", { class: "route-stats", id: "route-stats" }, h("span", { class: "hint" }, "Loading\u2026"));
    this.histBox = h("div", { class: "chart-panel", id: "route-histogram" });
    this.latencyBox = h("div", { class: "chart-panel", id: "route-latency" });
    this.requestsBox = h("div", { class: "table-wrap", id: "route-requests" });
    this.loadBox = h("div", { class: "chart-panel", id: "route-load" });
    this.loadNote = h("p", { class: "hint", id: "route-load-note" });
    this.findingsBox = h("div", { class: "findings", id: "route-findings" }, h("span", { class: "hint" }, "Looking for bottlenecks\u2026"));
    this.findingsSlot = new RequestSlot();
    this.compareHost = h("div", { class: "tail-compare", id: "tail-compare" });
    this.compareSlot = new RequestSlot();
    this.tailSummary = h("div", { class: "tail-summary", id: "tail-summary" }, h("span", { class: "hint" }, "Comparing profiles\u2026"));
    this.tailMessage = h("div", { class: "view-message", id: "tail-message", role: "status" });
    this.flameBox = h("div", { class: "flame-box", id: "tail-flame" });
    this.framesBox = h("div", { class: "table-wrap", id: "tail-frames" });
    this.tailBody = h("div", { class: "tail-body", hidden: true },
      h("div", { class: "legend diff-legend" },
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(-1) } }), "less time per request in the tail"),
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(0) } }), "same"),
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(1) } }), "extra time per request in the tail"),
        h("span", { class: "hint" }, "widths: time per tail request \u00b7 click a frame to zoom, click the bottom row to zoom out")),
      h("div", { class: "flame-scroll" }, this.flameBox),
      h("h3", {}, "Functions accounting for the extra time (per request)"),
      this.framesBox);
    root.appendChild(h("section", { class: "route-page" },
      h("header", { class: "routes-head" },
        h("h1", {}, h("span", { class: "method" }, displayText(method, 12)), " ", h("bdi", { class: "route-name", id: "route-title" }, displayText(route ?? "(no route)", 200))),
        this.windowHost, this.latencyHost),
      this.stats,
      h("div", { class: "panel findings-panel" }, h("h2", {}, "What to fix first"), this.findingsBox),
      h("div", { class: "routes-charts" },
        h("div", { class: "panel" }, h("h2", {}, "Latency distribution"), this.histBox),
        h("div", { class: "panel" }, h("h2", {}, "Latency over time"),
          h("div", { class: "legend route-legend" },
            h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p50" }), "P50"),
            h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p95" }), "P95"),
            h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p99" }), "P99"),
            h("span", { class: "legend-item" }, h("span", { class: "swatch dot-swatch" }), "slow request (click: its flame graph)")),
          this.latencyBox)),
      h("div", { class: "panel" }, h("h2", {}, "Latency against load: this route, by how busy the workers were when each request arrived"),
        this.loadNote, this.loadBox),
      h("div", { class: "panel tail-panel", id: "route-tail" },
        h("h2", {}, "Why is the tail slow?"), this.compareHost,
        this.tailSummary, this.tailMessage, this.tailBody),
      h("div", { class: "panel" }, h("h2", {}, "Slowest requests"), this.requestsBox)));
    this.graph = new FlameGraph(this.flameBox, {
      orientation: "flame",
      onClick: (node) => this.zoom(node),
      onHover: (node, event) => showTooltip(event, this.tooltip(node)),
      onLeave: () => hideTooltip(),
    });
    this.stopResize = [keepWidth(this.histBox, () => this.drawHistogram()), keepWidth(this.latencyBox, () => this.drawLatency()),
      keepWidth(this.loadBox, () => drawLoadChart(this.loadBox, this.loadCurve))];
    setStatus(this.state.problems.join("; "), this.state.problems.length > 0);
    this.renderWindow();
    if (route) this.load();
    else clear(this.stats).appendChild(h("p", { class: "error" }, "No route in the address. ", h("a", { href: "/routes" }, "Pick one from the route table.")));
  }

  unmount() {
    this.slot.cancel();
    this.findingsSlot.cancel();
    this.compareSlot.cancel();
    hideTooltip();
    this.graph.destroy();
    for (const stop of this.stopResize) stop();
  }

  setState(patch) {
    if ("window" in patch) patch = { ...patch, window: keepOrigin(patch.window, this.state.window) };
    const reload = ("window" in patch && JSON.stringify(patch.window) !== JSON.stringify(this.state.window))
      || ("latency" in patch && patch.latency !== this.state.latency);
    Object.assign(this.state, patch);
    window.history.replaceState(null, "", buildRoutesLocation(this.state));
    if (reload) {
      this.state.zoom = null;
      window.history.replaceState(null, "", buildRoutesLocation(this.state));
      setCrumbs([{ label: "Profiles", href: "/" }, { label: "Routes", href: routesHref(this.state.window, this.state.latency) }, { label: `${this.state.method} ${this.state.route}` }]);
      this.renderWindow();
      this.load();
    }
  }

  renderWindow() {
    clear(this.windowHost).appendChild(windowBar(this.state.window, { onChange: (w) => this.setState({ window: w }), onRefresh: () => this.load() }));
  }

  routeParams(extra = {}) {
    return latencyApiParams(this.state.latency, windowApiParams(this.state.window, new URLSearchParams({ route: this.state.route, method: this.state.method, ...extra })));
  }

  loadFindings() {
    this.findingsSlot.run((signal) => getJSON(apiUrl("/findings", this.routeParams({ limit: "20" })), { signal, fresh: true }).then((json) => {
      const { findings, notes } = parseFindings(json);
      drawFindings(this.findingsBox, findings, { withRoute: false, window: this.state.window, limit: 10, notes,
        empty: "No bottleneck over the detectors' thresholds on this route in this window." });
      mark("findings-painted", { findings: findings.length });
    })).catch((err) => {
      if (isAbort(err)) return;
      clear(this.findingsBox).appendChild(errorBox(`Could not load the findings: ${err.message}`));
    });
  }

  load() {
    this.loadFindings();
    const opts = (signal) => ({ signal, fresh: true });
    this.slot.run((signal) => getJSON(apiUrl("/routes", latencyApiParams(this.state.latency, windowApiParams(this.state.window))), opts(signal)).then(async (json) => {
      const table = parseRouteTable(json);
      this.table = table;
      clear(this.latencyHost).appendChild(latencySwitch(table.latency, table.queueKnown, (mode) => this.setState({ latency: mode })));
      this.row = table.routes.find((r) => r.route === this.state.route && r.method === this.state.method) || null;
      this.drawStats(table);
      if (!this.row) {
        this.latency = null;
        this.requests = [];
        this.drawHistogram();
        this.drawLatency();
        this.drawRequests();
        this.tailSummary.textContent = "";
        this.tailBody.hidden = true;
        this.tailMessage.textContent = "No requests of this route in this window, so nothing to compare.";
        return;
      }
      this.domain = "from" in this.state.window ? [this.state.window.from, this.state.window.to] : [table.window.start, table.window.end];
      this.bucketS = autoBucket(this.domain[1] - this.domain[0]);
      const [latency, requests, loadCurve] = await Promise.all([
        getJSON(apiUrl("/routes/latency", this.routeParams({ bins: "40", bucket_s: String(this.bucketS) })), opts(signal)).then(parseRouteLatency),
        getJSON(apiUrl("/requests", this.routeParams({ slowest: String(SLOWEST_FETCHED), latency: table.latency })), opts(signal)).then(parseRequestList),
        getJSON(apiUrl("/routes/load", this.routeParams()), opts(signal)).then(parseLoadCurve),
      ]);
      this.loadCurve = loadCurve;
      this.loadNote.textContent = loadNote(loadCurve);
      drawLoadChart(this.loadBox, loadCurve);
      this.latency = latency;
      this.requests = requests;
      this.drawHistogram();
      this.drawLatency();
      this.drawRequests();
      markAfterPaint("route-charts", { count: latency.count });
      this.loadVersions();
      await this.loadTail(signal);
    })).catch((err) => {
      if (isAbort(err)) return;
      setStatus(`Could not load ${this.state.method} ${this.state.route}: ${err.message}`, true);
      this.tailMessage.textContent = `Could not load this route: ${err.message}`;
      this.tailMessage.classList.add("error");
    });
  }

  /** The tail panel's diff: slow against typical requests, or (state.compare) version B's slow requests against A's. */
  async loadTail(signal) {
    const compare = this.state.compare;
    this.tailSummary.textContent = compare ? `Loading the profiles of the slow requests of ${compare.a} and ${compare.b}\u2026`
      : "Loading the profiles of slow and typical requests\u2026";
    const json = compare
      ? await getJSON(apiUrl("/routes/versions", this.routeParams({ a: compare.a, b: compare.b })), { signal, fresh: true })
      : await getJSON(apiUrl("/routes/tail", this.routeParams()), { signal, fresh: true });
    this.tail = parseTail(json);
    this.versions = compare ? parseVersionsOfRoute(json) : null;
    this.drawTail();
    markAfterPaint("route-tail", { diff: Boolean(this.tail.diff), versions: Boolean(this.versions) });
  }

  /** The compare select, when the window's requests of this route's service have two versions or more. */
  loadVersions() {
    const { version: _own, ...others } = this.state.window.origin || {};
    const params = windowApiParams(withOrigin(this.state.window, others));
    this.compareSlot.run((signal) => getJSON(apiUrl("/routes/origins", params), { signal, fresh: true }).then((json) => {
      const versions = parseOrigins(json).version || [];
      clear(this.compareHost);
      if (versions.length < 2 && !this.state.compare) return;
      const pairs = [];
      for (const a of versions) for (const b of versions) if (a !== b) pairs.push([a, b]);
      const select = h("select", { id: "compare-versions", aria: { label: "What to compare" } },
        h("option", { value: "" }, "its slow requests against its typical ones"),
        pairs.map(([a, b]) => h("option", { value: JSON.stringify([a, b]) }, `version ${displayText(b, 40)}'s slow requests against ${displayText(a, 40)}'s`)));
      select.value = this.state.compare ? JSON.stringify([this.state.compare.a, this.state.compare.b]) : "";
      select.addEventListener("change", () => {
        const picked = select.value ? JSON.parse(select.value) : null;
        this.state.compare = picked ? { a: picked[0], b: picked[1] } : null;
        this.state.zoom = null;
        window.history.replaceState(null, "", buildRoutesLocation(this.state));
        this.slot.run((s) => this.loadTail(s)).catch((err) => {
          if (isAbort(err)) return;
          this.tailMessage.textContent = `Could not compare: ${err.message}`;
          this.tailMessage.classList.add("error");
        });
      });
      this.compareHost.appendChild(h("label", { class: "compare-choice" }, "Compare ", select));
    })).catch((err) => {
      if (!isAbort(err)) clear(this.compareHost).appendChild(h("span", { class: "hint" }, `Could not list the versions: ${err.message}`));
    });
  }

  drawStats(table) {
    const r = this.row;
    if (!r) {
      clear(this.stats).appendChild(h("p", {}, "No requests of this route in this window. ",
        h("a", { href: routesHref({ preset: "all" }) }, "See every route over all requests"), " or pick a longer window."));
      return;
    }
    const stat = (label, value, cls = "") => h("div", { class: `stat ${cls}`, data: { stat: label.toLowerCase() } }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value));
    append(clear(this.stats),
      stat("Requests", formatCount(r.count)),
      stat("RPS", r.rps >= 10 ? r.rps.toFixed(1) : r.rps.toFixed(2)),
      stat("Errors", formatPercent(r.errorRate), r.errorRate > 0 ? "worse" : ""),
      stat("P50", formatMs(r.p50)), stat("P90", formatMs(r.p90)), stat("P95", formatMs(r.p95)), stat("P99", formatMs(r.p99)), stat("Max", formatMs(r.max)),
      r.queueP95 !== null ? stat("Queued P95", formatMs(r.queueP95)) : null,
      h("span", { class: "hint" }, `${table.latency === "total" ? "total latency (queued + app)" : "the app's time"} over ${table.window.durationS.toFixed(1)} s`));
  }

  drawHistogram() {
    const r = this.row;
    drawHistogram(this.histBox, this.latency ? this.latency.histogram : [], {
      marks: r ? [{ label: "P50", value: r.p50, className: "p50" }, { label: "P95", value: r.p95, className: "p95" }, { label: "P99", value: r.p99, className: "p99" }] : [],
    });
  }

  drawLatency() {
    if (!this.latency) {
      drawTimeChart(this.latencyBox, { domain: [0, 0] });
      return;
    }
    const s = this.latency.series;
    const threshold = this.row ? this.row.p90 : 0;
    const total = this.latency.latency === "total";
    const shown = (q) => (total ? q.totalMs : q.durationMs);
    const dots = this.requests.filter((q) => shown(q) >= threshold).map((q) => ({
      t: q.start, v: shown(q), className: q.profileId !== null ? "has-profile" : "no-profile", data: q,
      tip: { title: displayText(q.path, 200), rows: [
        ...(q.queueMs !== null ? [["Total", formatMs(q.totalMs)], ["Queued", formatMs(q.queueMs)], ["App", formatMs(q.durationMs)]] : [["Duration", formatMs(q.durationMs)]]),
        ["Status", String(q.status ?? "\u2013")], ["Profile", q.profileId !== null ? "click for its flame graph" : "not kept"]] },
    }));
    drawTimeChart(this.latencyBox, {
      domain: this.domain, bucketS: this.bucketS, yLog: true, yFormat: formatMs, yLabel: "latency",
      series: [
        { name: "P50", className: "p50", points: s.map((p) => ({ t: p.t, v: p.p50 })) },
        { name: "P95", className: "p95", points: s.map((p) => ({ t: p.t, v: p.p95 })) },
        { name: "P99", className: "p99", points: s.map((p) => ({ t: p.t, v: p.p99 })) },
      ],
      dots,
      onBrush: (a, b) => this.setState({ window: { from: a, to: b } }),
      onDot: (d) => { if (d.data.profileId !== null) window.location.assign(`/profiles/${d.data.profileId}`); },
    });
  }

  drawRequests() {
    if (!this.requests.length) {
      clear(this.requestsBox).appendChild(h("p", { class: "hint" }, "No requests in this window."));
      return;
    }
    const rows = this.requests.slice(0, SLOWEST_LISTED);
    renderTable(this.requestsBox, {
      columns: requestColumns({ withQueue: Boolean(this.table && this.table.queueKnown) }), rows, sort: this.state.requestSort, ascending: this.state.requestAscending,
      onSort: (key, ascending) => { this.setState({ requestSort: key, requestAscending: ascending }); this.drawRequests(); },
    });
    this.requestsBox.dataset.rows = String(rows.length);
    if (this.requests.length > rows.length) this.requestsBox.appendChild(h("p", { class: "hint" }, `The ${rows.length} slowest of this window.`));
  }

  drawTail() {
    const t = this.tail;
    const v = this.versions;
    const kept = (ids) => `${ids.length} of them profiled`;
    const requests = (n) => `${formatCount(n)} request${n === 1 ? "" : "s"}`;
    const [low, high] = t.typicalBand;
    this.sides = v ? [`${displayText(v.a, 40)}'s slow`, `${displayText(v.b, 40)}'s slow`] : ["typical", "tail"];
    append(clear(this.tailSummary),
      v ? h("p", { id: "versions-summary" }, `P95 of version ${displayText(v.a, 40)}: ${formatMs(v.aStats.p95)} over ${formatCount(v.aStats.count)} requests; `,
        `of ${displayText(v.b, 40)}: ${formatMs(v.bStats.p95)} over ${formatCount(v.bStats.count)}`,
        v.p95Change === null ? "" : h("strong", {}, ` (${v.p95Change >= 0 ? "+" : ""}${formatPercent(v.p95Change)})`)) : "",
      h("p", {},
        h("span", { class: "side-tag b" }, this.sides[1]), ` ${requests(t.tailRequests)} at or above P${t.tailPercentile} (${formatMs(t.tailMs)}), ${kept(t.tailProfileIds)}`,
        h("span", { class: "sep" }, " \u00b7 "),
        h("span", { class: "side-tag a" }, this.sides[0]), v
          ? ` ${requests(t.typicalRequests)} at or above P${low} (${formatMs(t.typicalMs[0])}\u2013${formatMs(t.typicalMs[1])}), ${kept(t.typicalProfileIds)}`
          : ` ${requests(t.typicalRequests)} between P${low} and P${high} (${formatMs(t.typicalMs[0])}\u2013${formatMs(t.typicalMs[1])}), ${kept(t.typicalProfileIds)}`));
    this.tailMessage.classList.remove("error");
    if (!t.diff) {
      this.tailBody.hidden = true;
      clear(this.tailMessage).appendChild(h("div", { class: "tail-few" }, h("p", {}, t.message)));
      return;
    }
    const d = t.diff;
    clear(this.tailMessage);
    this.tailSummary.appendChild(h("p", { class: "tail-headline", id: "tail-headline" }, v
      ? `Compared ${d.tailProfiles} and ${d.typicalProfiles} profiles of slow requests: one of ${displayText(v.b, 40)} spends ${formatMs(d.tailSampledMs)} in sampled code against ${formatMs(d.typicalSampledMs)} for one of ${displayText(v.a, 40)}, `
      : `Compared ${d.tailProfiles} tail and ${d.typicalProfiles} typical request profiles: a tail request spends ${formatMs(d.tailSampledMs)} in sampled code against ${formatMs(d.typicalSampledMs)} for a typical one, `,
      h("strong", {}, `${signedMs(d.extraMs)} per request`), "."));
    this.tailBody.hidden = false;
    this.tree = d.tree;
    this.focus = Math.max(0, this.state.zoom ? this.tree.indexOfId(this.state.zoom) : 0);
    this.drawFlame();
    this.drawFrames();
  }

  drawFlame() {
    let maxAbs = 0;
    for (const n of this.tree.nodes) if (n.index && Math.abs(n.deltaNs) > maxAbs) maxAbs = Math.abs(n.deltaNs);
    const scale = Math.max(1e6, maxAbs);
    this.graph.draw(this.tree, { focus: Math.min(this.focus, this.tree.size - 1), colorOf: (n) => diffColor(n.deltaNs / scale) });
    this.flameBox.dataset.maxDeltaNs = String(maxAbs);
  }

  zoom(node) {
    hideTooltip();
    this.focus = node.kind === "other" ? node.parent : (node.index === this.focus && node.parent >= 0 ? node.parent : node.index);
    const id = this.focus > 0 ? String(this.tree.nodes[this.focus].id) : null;
    this.setState({ zoom: id });
    this.drawFlame();
  }

  tooltip(node) {
    return {
      title: node.name,
      subtitle: node.file ? `${shortFile(node.file, 3)}${node.line ? ":" + node.line : ""}` : "",
      rows: [
        [this.sides[1], `${formatDuration(node.bTotal)} per request (${formatPercent(node.bFraction)})`],
        [this.sides[0], `${formatDuration(node.aTotal)} per request (${formatPercent(node.aFraction)})`],
        ["Extra", `${signedMs(node.deltaNs / 1e6)} per request`],
        ["Self tail / typical", `${formatDuration(node.bSelf)} / ${formatDuration(node.aSelf)}`],
      ],
    };
  }

  drawFrames() {
    const frames = this.tail.diff.frames;
    const ms = (key) => (f) => h("span", { class: f[key] > 0 ? "worse" : f[key] < 0 ? "better" : "" }, signedMs(f[key]));
    const columns = [
      { key: "function", label: "Function", className: "fn-col", value: (f) => f.function, defaultAscending: true, cell: (f) => h("bdi", { class: "fn-name", title: `${f.function} ${f.file}` }, displayText(f.function, 80)) },
      { key: "file", label: "File", sortable: false, value: (f) => f.file, text: (f) => shortFile(f.file, 2) },
      { key: "extra_self", label: "Extra self", numeric: true, value: (f) => f.extraSelf, cell: ms("extraSelf"), title: "Extra time per request in the function itself (tail minus typical)" },
      { key: "extra_total", label: "Extra total", numeric: true, value: (f) => f.extraTotal, cell: ms("extraTotal"), title: "Extra time per request in the function and what it calls" },
      { key: "tail_self", label: "Tail self", numeric: true, value: (f) => f.tailSelf, text: (f) => formatMs(f.tailSelf) },
      { key: "typical_self", label: "Typical self", numeric: true, value: (f) => f.typicalSelf, text: (f) => formatMs(f.typicalSelf) },
      { key: "extra_wait", label: "Extra wait", numeric: true, value: (f) => f.extraWait, text: (f) => signedMs(f.extraWait) },
      { key: "extra_cpu", label: "Extra CPU", numeric: true, value: (f) => f.extraCpu, text: (f) => signedMs(f.extraCpu) },
      frames.some((f) => f.extraGil !== 0) ? { key: "extra_gil", label: "Extra GIL", numeric: true, value: (f) => f.extraGil, text: (f) => signedMs(f.extraGil), title: "Extra time per request waiting for the interpreter's GIL" } : null,
      { key: "share", label: "Share", numeric: true, sortable: false, value: (f) => f.share, text: (f) => formatPercent(f.share) },
    ].filter(Boolean);
    renderTable(this.framesBox, {
      columns, rows: frames, sort: this.state.frameSort, ascending: this.state.frameAscending, maxRows: 30,
      onSort: (key, ascending) => { this.setState({ frameSort: key, frameAscending: ascending }); this.drawFrames(); },
    });
    this.framesBox.dataset.rows = String(Math.min(frames.length, 30));
  }
}

/** The request line of a request profile's page: method, path, status, duration, route link; null for other profiles. */
export function requestInfoLine(profile) {
  const labels = profile.labels || {};
  if (profile.kind !== "request" || typeof labels.route !== "string") return null;
  const method = typeof labels.method === "string" ? labels.method : "GET";
  const parts = [
    h("span", { class: "side-tag b" }, "request"), " ",
    h("bdi", { class: "req-path" }, `${displayText(method, 12)} ${displayText(labels.path ?? "", 200)}`),
    typeof labels.status === "number" ? ` \u2192 ${labels.status}` : "",
    typeof labels.duration_ms === "number" ? ` in ${formatMs(labels.duration_ms)}` : "",
    typeof labels.cpu_ms === "number" ? ` (CPU ${formatMs(labels.cpu_ms)})` : "",
    typeof labels.capture === "string" ? ` \u00b7 kept as ${displayText(labels.capture, 20)}` : "",
    " \u00b7 route ",
    h("a", { href: routeHref(labels.route, method, { preset: "all" }), id: "request-route-link" }, h("bdi", { class: "route-name" }, displayText(labels.route, 200))),
  ];
  return h("p", { class: "request-line", id: "request-line" }, parts);
}
