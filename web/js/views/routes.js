/**
 * The routes page (/routes): per-route request count, RPS, error rate, P50/P90/P95/P99 and max
 * over a time window (last 5 min / hour / 24 h / all, or a range brushed on a chart), the P95
 * latency over time of the busiest routes, what the server saw (busy worker threads against
 * capacity), and the slowest requests. Clicking a route opens its page (views/route.js);
 * a request with a kept profile links to its flame graph.
 *
 * Also the pieces the route page shares: the window bar, the origin filter (service, host,
 * version, env of a fleet's requests) and the requests table.
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import {
  WINDOW_PRESETS, parseRoutesLocation, buildRoutesLocation, routeHref, windowApiParams, parseRouteTable,
  parseRouteLatency, parseUtilisation, parseRequestList, autoBucket, latencyApiParams, parseLoadCurve,
  chartedRoutes, ORIGIN_KEYS, keepOrigin, withOrigin, parseOrigins,
} from "../model/routes.js";
import { displayText, formatCount, formatDateTime, formatPercent } from "../model/format.js";
import { h, clear, append } from "../ui/dom.js";
import { renderTable } from "../ui/table.js";
import { setCrumbs, setStatus } from "../ui/chrome.js";
import { drawTimeChart, drawLoadChart, keepWidth, formatMs } from "../ui/routecharts.js";
import { mark } from "../ui/debug.js";
import { drawFindings } from "../ui/findings.js";
import { parseFindings, topPerRoute } from "../model/findings.js";
import { navigate } from "../router.js";

const SLOWEST_LISTED = 15;
const TOP_ROUTES_CHARTED = 6;

/** "09:12:03" or, across days, "2026-11-28 09:12:03" for an epoch-seconds window edge. */
function windowEdge(seconds) {
  return formatDateTime(seconds);
}

/**
 * The origin filter: a select per label that has more than one value in the window (or is
 * filtered already), "all" first. `onChange(origin)` gets the new filter.
 */
export function originBar(values, current, onChange) {
  const chosen = { ...(current || {}) };
  const shown = ORIGIN_KEYS.filter((key) => (values[key] || []).length > 1 || chosen[key]);
  if (!shown.length) return h("span", { class: "origin-filter empty" });
  return h("div", { class: "origin-filter", role: "group", aria: { label: "Filter by origin" } }, shown.map((key) => {
    const options = [...new Set([...(values[key] || []), ...(chosen[key] ? [chosen[key]] : [])])];
    const select = h("select", { id: `origin-${key}`, aria: { label: `Only requests of this ${key}` } },
      h("option", { value: "" }, `all ${key === "env" ? "envs" : key + "s"}`),
      options.map((value) => h("option", { value }, displayText(value))));
    select.value = chosen[key] || "";
    select.addEventListener("change", () => onChange({ ...chosen, [key]: select.value }));
    return h("label", { class: "origin-choice" }, `${key} `, select);
  }));
}

/** The distinct origin labels of `window`'s requests (not narrowed by its own origin filter), into `host`. */
export function loadOriginBar(host, slot, window, onChange) {
  const params = windowApiParams(withOrigin(window, null));
  return slot.run((signal) => getJSON(apiUrl("/routes/origins", params), { signal, fresh: true }).then((json) => {
    clear(host).appendChild(originBar(parseOrigins(json), window && window.origin, onChange));
  })).catch((err) => {
    if (!isAbort(err)) clear(host).appendChild(h("span", { class: "hint" }, `Could not load the origin labels: ${err.message}`));
  });
}

/**
 * The window selector: preset buttons, the brushed range (with a clear button) and a refresh
 * button. `onChange(window)` gets the new window state; `onRefresh()` reloads.
 */
export function windowBar(window, { onChange, onRefresh }) {
  const custom = window && "from" in window;
  const buttons = WINDOW_PRESETS.map((p) => h("button", {
    type: "button", class: "seg", data: { window: p.id }, aria: { pressed: String(!custom && window.preset === p.id) },
    on: { click: () => onChange({ preset: p.id }) },
  }, p.label));
  const chip = custom
    ? h("span", { class: "window-chip", id: "routes-window-chip" }, `${windowEdge(window.from)} \u2013 ${windowEdge(window.to)}`,
      h("button", { type: "button", class: "chip-clear", title: "Back to all requests", aria: { label: "Clear the time range" }, on: { click: () => onChange({ preset: "all" }) } }, "\u00d7"))
    : h("span", { class: "hint" }, "Drag across a chart to zoom into a time range.");
  return h("div", { class: "routes-window" },
    h("div", { class: "segmented", role: "group", aria: { label: "Time window" } }, buttons),
    chip,
    h("button", { type: "button", id: "routes-refresh", title: "Load the latest requests", on: { click: onRefresh } }, "\u21bb Refresh"));
}

/**
 * The latency switch, shown once queue times were recorded: total (queued before the app + the
 * app's time, what clients saw) or the app's alone. `onChange(mode)` gets "total" or "app".
 */
export function latencySwitch(latency, queueKnown, onChange) {
  if (!queueKnown) return h("span", { class: "hint latency-note", id: "latency-switch", title: "Set X-Request-Start at your proxy to see the time requests queue before the app (docs/queue-time.md)" }, "Latency: the app's time (no queue times recorded)");
  const button = (mode, label, title) => h("button", { type: "button", class: "seg", title, data: { latency: mode }, aria: { pressed: String(latency === mode) }, on: { click: () => onChange(mode) } }, label);
  return h("div", { class: "segmented", role: "group", id: "latency-switch", aria: { label: "Latency" } },
    button("total", "Total (queue + app)", "What clients waited: the time queued before the app (from the proxy's X-Request-Start) plus the app's"),
    button("app", "App only", "The app's time alone, from when a worker picked the request up"));
}

/** One line saying where the knee is and how much headroom the observed peak left. */
export function loadNote(curve) {
  if (!curve || !curve.requests) return "No requests in this window.";
  const pct = (v) => `${Math.round(v * 100)}%`;
  const knee = curve.baselineP99 === null ? "Too few requests per load level to tell the low-load P99."
    : curve.knee === null ? `No knee: P99 stayed under ${curve.kneeFactor}\u00d7 its low-load ${formatMs(curve.baselineP99)} up to ${pct(curve.levels[curve.levels.length - 1].low)} busy.`
      : `Knee at ${pct(curve.knee)} busy: P99 ${formatMs(curve.kneeP99)}, ${(curve.kneeP99 / curve.baselineP99).toFixed(1)}\u00d7 its low-load ${formatMs(curve.baselineP99)}.`;
  let peak = ` Peak ${pct(curve.peak)} of ${curve.capacity} workers busy (${curve.peakRps.toFixed(1)} req/s): headroom ${pct(curve.headroom)}`;
  if (curve.trafficToKnee !== null) peak += curve.trafficToKnee <= 1.05 ? ", at the knee already." : `, about ${curve.trafficToKnee.toFixed(1)}\u00d7 that traffic before the knee.`;
  else peak += ".";
  return knee + peak;
}

function statusCell(r) {
  if (r.status === null) return h("span", { class: "worse" }, r.error ? "error" : "\u2013");
  return h("span", { class: r.status >= 500 || r.error ? "worse" : r.status >= 400 ? "warn" : "" }, String(r.status));
}

/** A profile link for a request with a kept profile, else a dash saying why not. */
export function profileCell(r) {
  if (r.profileId === null) return h("span", { class: "hint", title: "No profile kept: only slow requests and a few typical ones are profiled" }, "\u2013");
  return h("a", { href: `/profiles/${r.profileId}`, class: "profile-link", data: { profile: r.profileId } }, "flame graph");
}

/** Columns of a requests table; `withRoute` adds the route column, `withQueue` the queue and total times. */
export function requestColumns({ withRoute = false, withQueue = false } = {}) {
  return [
    { key: "id", label: "#", numeric: true, value: (r) => r.id, text: (r) => String(r.id) },
    withRoute ? { key: "route", label: "Route", value: (r) => r.route, cell: (r) => h("bdi", { class: "route-name" }, `${r.method} ${displayText(r.route, 80)}`), defaultAscending: true } : null,
    { key: "path", label: "Path", value: (r) => r.path, cell: (r) => h("bdi", { class: "req-path", title: r.path }, displayText(r.path, 90)), defaultAscending: true },
    { key: "status", label: "Status", numeric: true, value: (r) => r.status ?? 999, cell: statusCell },
    withQueue ? { key: "total", label: "Total", numeric: true, title: "Queued + app", value: (r) => r.totalMs, text: (r) => formatMs(r.totalMs) } : null,
    withQueue ? { key: "queue", label: "Queued", numeric: true, title: "Before the app (from the proxy's X-Request-Start)", value: (r) => r.queueMs ?? -1, text: (r) => (r.queueMs === null ? "\u2013" : formatMs(r.queueMs)) } : null,
    { key: "duration", label: withQueue ? "App" : "Duration", numeric: true, value: (r) => r.durationMs, text: (r) => formatMs(r.durationMs) },
    { key: "cpu", label: "CPU", numeric: true, value: (r) => r.cpuMs, text: (r) => formatMs(r.cpuMs) },
    { key: "start", label: "Started", value: (r) => r.start, text: (r) => formatDateTime(r.start) },
    { key: "profile", label: "Profile", sortable: false, value: (r) => r.profileId ?? -1, cell: profileCell },
  ].filter(Boolean);
}

export function errorBox(message) {
  return h("p", { class: "error" }, message);
}

export const routesPage = {
  name: "routes",
  match: (pathname) => (parseRoutesLocation(pathname).page === "routes" ? {} : null),
  mount(root) {
    return new RoutesPage(root);
  },
};

class RoutesPage {
  constructor(root) {
    this.state = parseRoutesLocation(window.location.pathname, window.location.search);
    this.slot = new RequestSlot();
    this.table = null;
    setCrumbs([{ label: "Profiles", href: "/" }, { label: "Routes" }]);
    document.title = "profviz: routes";
    this.windowHost = h("div", { class: "routes-window-host" });
    this.latencyHost = h("div", { class: "latency-host" });
    this.originHost = h("div", { class: "origin-host", id: "routes-origin" });
    this.originSlot = new RequestSlot();
    this.summary = h("p", { class: "routes-summary", id: "routes-summary" }, "Loading requests\u2026");
    this.tableBox = h("div", { class: "table-wrap", id: "route-table" });
    this.latencyBox = h("div", { class: "chart-panel", id: "routes-latency" });
    this.latencyLegend = h("div", { class: "legend route-legend", id: "routes-latency-legend" });
    this.utilBox = h("div", { class: "chart-panel", id: "routes-utilisation" });
    this.loadBox = h("div", { class: "chart-panel", id: "routes-load" });
    this.loadNote = h("p", { class: "hint", id: "routes-load-note" });
    this.utilNote = h("p", { class: "hint", id: "routes-utilisation-note" });
    this.slowBox = h("div", { class: "table-wrap", id: "routes-slowest" });
    this.findingsBox = h("div", { class: "findings", id: "routes-findings" }, h("span", { class: "hint" }, "Looking for bottlenecks\u2026"));
    this.findingsSlot = new RequestSlot();
    root.appendChild(h("section", { class: "routes-page" },
      h("header", { class: "routes-head" }, h("h1", {}, "Routes"), this.windowHost, this.originHost, this.latencyHost),
      this.summary,
      h("div", { class: "panel findings-panel" }, h("h2", {}, "What to fix first: the top finding of each route"), this.findingsBox),
      this.tableBox,
      h("div", { class: "routes-charts" },
        h("div", { class: "panel" }, h("h2", {}, `P95 latency over time (the slowest and busiest ${TOP_ROUTES_CHARTED} routes)`), this.latencyLegend, this.latencyBox),
        h("div", { class: "panel" }, h("h2", {}, "Server utilisation: busy worker threads"), this.utilNote, this.utilBox)),
      h("div", { class: "panel" }, h("h2", {}, "Latency against load: every route, by how busy the workers were when each request arrived"),
        h("div", { class: "legend route-legend" },
          h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p50" }), "P50"),
          h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p95" }), "P95"),
          h("span", { class: "legend-item" }, h("span", { class: "swatch route-swatch p99" }), "P99")),
        this.loadNote, this.loadBox),
      h("div", { class: "panel" }, h("h2", {}, "Slowest requests"), this.slowBox)));
    this.stopResize = [
      keepWidth(this.latencyBox, () => this.drawLatency()),
      keepWidth(this.utilBox, () => this.drawUtilisation()),
      keepWidth(this.loadBox, () => drawLoadChart(this.loadBox, this.loadCurve)),
    ];
    if (this.state.problems.length) setStatus(this.state.problems.join("; "), true);
    else setStatus("");
    this.renderWindow();
    this.load();
  }

  unmount() {
    this.slot.cancel();
    this.findingsSlot.cancel();
    this.originSlot.cancel();
    for (const stop of this.stopResize) stop();
  }

  loadFindings() {
    const params = windowApiParams(this.state.window, new URLSearchParams({ limit: "100" }));
    this.findingsSlot.run((signal) => getJSON(apiUrl("/findings", params), { signal, fresh: true }).then((json) => {
      const parsed = parseFindings(json);
      const findings = topPerRoute(parsed.findings);
      drawFindings(this.findingsBox, findings, { window: this.state.window, limit: 6, notes: parsed.notes });
      mark("findings-painted", { findings: findings.length });
    })).catch((err) => {
      if (isAbort(err)) return;
      clear(this.findingsBox).appendChild(errorBox(`Could not load the findings: ${err.message}`));
    });
  }

  setState(patch) {
    if ("window" in patch) patch = { ...patch, window: keepOrigin(patch.window, this.state.window) };
    const reload = ("window" in patch && JSON.stringify(patch.window) !== JSON.stringify(this.state.window))
      || ("latency" in patch && patch.latency !== this.state.latency);
    Object.assign(this.state, patch);
    window.history.replaceState(null, "", buildRoutesLocation(this.state));
    if (reload) {
      this.renderWindow();
      this.load();
    } else this.drawTable();
  }

  apiParams(extra = {}) {
    return latencyApiParams(this.state.latency, windowApiParams(this.state.window, new URLSearchParams(extra)));
  }

  renderWindow() {
    clear(this.windowHost).appendChild(windowBar(this.state.window, {
      onChange: (w) => this.setState({ window: w }),
      onRefresh: () => this.load(),
    }));
  }

  load() {
    const params = this.apiParams();
    this.loadFindings();
    loadOriginBar(this.originHost, this.originSlot, this.state.window,
      (origin) => this.setState({ window: withOrigin(this.state.window, origin) }));
    this.tableBox.classList.add("loading");
    this.slot.run((signal) => getJSON(apiUrl("/routes", params), { signal, fresh: true }).then(async (json) => {
      this.table = parseRouteTable(json);
      this.tableBox.classList.remove("loading");
      clear(this.latencyHost).appendChild(latencySwitch(this.table.latency, this.table.queueKnown, (mode) => this.setState({ latency: mode })));
      if (this.table.source === "sketches") {
        this.latencyHost.appendChild(h("span", { class: "hint", id: "routes-source", title: "Over a million requests: the table merges each minute's latency sketches instead of reading every request" },
          "Percentiles from latency sketches (within 1%)"));
      }
      this.drawSummary();
      this.drawTable();
      mark("routes-table", { routes: this.table.routes.length });
      if (!this.table.window) {
        this.latency = [];
        this.util = null;
        this.slowest = [];
        this.loadCurve = null;
      } else {
        this.domain = "from" in this.state.window ? [this.state.window.from, this.state.window.to] : [this.table.window.start, this.table.window.end];
        this.bucketS = autoBucket(this.domain[1] - this.domain[0]);
        const top = chartedRoutes(this.table.routes, TOP_ROUTES_CHARTED);
        const latencyOf = (r) => getJSON(apiUrl("/routes/latency", this.apiParams({ route: r.route, method: r.method, bins: "1", bucket_s: String(this.bucketS) })), { signal, fresh: true })
          .then((body) => ({ row: r, latency: parseRouteLatency(body) }));
        const utilParams = windowApiParams(this.state.window, new URLSearchParams({ bucket_s: String(this.bucketS) }));
        const slowParams = this.apiParams({ slowest: String(SLOWEST_LISTED), latency: this.table.latency });
        const [latency, util, slowest, load] = await Promise.all([
          Promise.all(top.map(latencyOf)),
          getJSON(apiUrl("/routes/utilisation", utilParams), { signal, fresh: true }).then(parseUtilisation),
          getJSON(apiUrl("/requests", slowParams), { signal, fresh: true }).then(parseRequestList),
          getJSON(apiUrl("/routes/load", this.apiParams()), { signal, fresh: true }).then(parseLoadCurve),
        ]);
        this.latency = latency;
        this.util = util;
        this.slowest = slowest;
        this.loadCurve = load;
      }
      this.drawLatency();
      this.drawUtilisation();
      this.loadNote.textContent = loadNote(this.loadCurve);
      drawLoadChart(this.loadBox, this.loadCurve);
      this.drawSlowest();
      mark("routes-painted", { routes: this.table.routes.length });
    })).catch((err) => {
      if (isAbort(err)) return;
      this.tableBox.classList.remove("loading");
      setStatus(`Could not load the routes: ${err.message}`, true);
      clear(this.tableBox).appendChild(errorBox(`Could not load the routes: ${err.message}`));
    });
  }

  drawSummary() {
    const { window: span, routes } = this.table;
    if (!span) {
      clear(this.summary).appendChild(h("span", {}, "No requests in this window. ",
        h("span", { class: "hint" }, "Requests are recorded by the WSGI middleware (profviz.wsgi.ProfilerMiddleware, profviz.flask.init_app, profviz.django.ProfvizMiddleware); try a longer window.")));
      return;
    }
    const total = routes.reduce((s, r) => s + r.count, 0);
    append(clear(this.summary),
      `${formatCount(total)} requests on ${routes.length} route${routes.length === 1 ? "" : "s"} from ${formatDateTime(span.start)} to ${formatDateTime(span.end)} (${span.durationS.toFixed(1)} s). `,
      h("span", { class: "hint", id: "routes-latency-kind" }, this.table.latency === "total"
        ? "Latencies are totals: the time queued before the app plus the app's."
        : "Latencies are the app's time, from when a worker picked the request up."));
  }

  drawTable() {
    if (!this.table) return;
    if (!this.table.routes.length) {
      clear(this.tableBox);
      return;
    }
    const columns = [
      { key: "route", label: "Route", value: (r) => r.route, defaultAscending: true,
        cell: (r) => h("a", { href: routeHref(r.route, r.method, this.state.window, this.state.latency), class: "route-link", on: { click: (e) => { if (!e.ctrlKey && !e.metaKey && !e.shiftKey) e.preventDefault(); } } },
          h("bdi", { class: "route-name" }, displayText(r.route, 120))) },
      { key: "method", label: "Method", value: (r) => r.method, text: (r) => displayText(r.method, 12), defaultAscending: true },
      { key: "count", label: "Requests", numeric: true, value: (r) => r.count, text: (r) => formatCount(r.count) },
      { key: "rps", label: "RPS", numeric: true, value: (r) => r.rps, text: (r) => (r.rps >= 10 ? r.rps.toFixed(1) : r.rps.toFixed(2)) },
      { key: "errors", label: "Errors", numeric: true, value: (r) => r.errorRate, cell: (r) => h("span", { class: r.errorRate > 0 ? "worse" : "" }, formatPercent(r.errorRate)) },
      { key: "p50", label: "P50", numeric: true, value: (r) => r.p50, text: (r) => formatMs(r.p50) },
      { key: "p90", label: "P90", numeric: true, value: (r) => r.p90, text: (r) => formatMs(r.p90) },
      { key: "p95", label: "P95", numeric: true, value: (r) => r.p95, text: (r) => formatMs(r.p95) },
      { key: "p99", label: "P99", numeric: true, value: (r) => r.p99, text: (r) => formatMs(r.p99) },
      { key: "max", label: "Max", numeric: true, value: (r) => r.max, text: (r) => formatMs(r.max) },
      this.table.queueKnown ? { key: "queue", label: "Queued P95", numeric: true, title: "P95 of the time requests waited before the app (from the proxy's X-Request-Start)",
        value: (r) => r.queueP95 ?? -1, text: (r) => (r.queueP95 === null ? "\u2013" : formatMs(r.queueP95)) } : null,
    ].filter(Boolean);
    renderTable(this.tableBox, {
      columns, rows: this.table.routes, sort: this.state.sort, ascending: this.state.ascending,
      onSort: (key, ascending) => this.setState({ sort: key, ascending }),
      onRowClick: (r) => navigate(routeHref(r.route, r.method, this.state.window, this.state.latency)),
    });
    this.tableBox.dataset.rows = String(this.table.routes.length);
  }

  brushTo(from, to) {
    this.setState({ window: { from, to } });
  }

  drawLatency() {
    if (!this.latency || !this.domain) {
      if (this.table && !this.table.window) drawTimeChart(this.latencyBox, { domain: [0, 0] });
      return;
    }
    const classes = ["s0", "s1", "s2", "s3", "s4", "s5"];
    const series = this.latency.map(({ row, latency }, i) => ({
      name: `${row.method} ${row.route}`, className: `route-line ${classes[i % classes.length]}`,
      points: latency.series.map((p) => ({ t: p.t, v: p.p95 })),
    }));
    drawTimeChart(this.latencyBox, {
      domain: this.domain, series, bucketS: this.bucketS, yLog: true, yFormat: formatMs, yLabel: "P95",
      onBrush: (a, b) => this.brushTo(a, b),
    });
    clear(this.latencyLegend);
    this.latency.forEach(({ row }, i) => this.latencyLegend.appendChild(h("span", { class: "legend-item" },
      h("span", { class: `swatch route-swatch ${classes[i % classes.length]}` }), h("bdi", {}, `${row.method} ${displayText(row.route, 60)}`))));
  }

  drawUtilisation() {
    if (!this.util || !this.domain) {
      if (this.table && !this.table.window) drawTimeChart(this.utilBox, { domain: [0, 0] });
      return;
    }
    const u = this.util;
    const source = { configured: "configured worker threads", observed: "threads seen serving requests", argument: "given capacity" }[u.capacitySource] || u.capacitySource;
    const peak = u.series.reduce((m, s) => Math.max(m, s.utilisation ?? 0), 0);
    this.utilNote.textContent = `Capacity ${u.capacity} (${source}); busiest ${u.bucketS} s bucket at ${formatPercent(peak)} of capacity on average.`;
    drawTimeChart(this.utilBox, {
      domain: this.domain, bucketS: 0, yFormat: (v) => String(v), yLabel: "threads",
      series: [
        { name: "busy (average)", className: "util-avg", area: true, points: u.series.map((s) => ({ t: s.t, v: s.busyAvg })) },
        { name: "busy (peak)", className: "util-max", area: false, points: u.series.map((s) => ({ t: s.t + u.bucketS / 2, v: s.busyMax })) },
      ],
      hlines: [{ value: u.capacity, label: `capacity ${u.capacity}`, className: "capacity" }],
      onBrush: (a, b) => this.brushTo(a, b),
    });
  }

  drawSlowest() {
    if (!this.slowest || !this.slowest.length) {
      clear(this.slowBox).appendChild(h("p", { class: "hint" }, "No requests in this window."));
      return;
    }
    const withQueue = this.table.queueKnown;
    renderTable(this.slowBox, { columns: requestColumns({ withRoute: true, withQueue }), rows: this.slowest,
      sort: withQueue && this.table.latency === "total" ? "total" : "duration", ascending: false });
    this.slowBox.dataset.rows = String(this.slowest.length);
  }
}
