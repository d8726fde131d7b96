/**
 * The single-profile page (/profiles/<id>): header, toolbar (view tabs, CPU/wait toggle,
 * colour mode, search, thread filter, time window), totals line, and the active view.
 *
 * Views register with registerView({ id, label, mount(container, ctx) -> { update(ctx, changed), unmount() } }).
 * `ctx` gives a view the page state and shared data:
 *   ctx.state          the URL state (model/urlstate.js); change it with ctx.setState(patch)
 *   ctx.info           the parsed profile info (threads, time range, ...)
 *   ctx.filters(prefix) URLSearchParams of the common filters
 *   ctx.baseTree(signal) the flame tree (root 0) for the current filters (shared, cached)
 *   ctx.zoomTree(id, signal) the flame tree rooted at node `id`
 *   ctx.search         the current search result (parseSearch) or null
 *   ctx.colorOf(tree)  a node -> colour function for the current colour mode
 *   ctx.split          node -> CPU/wait split strip (state colouring), or null
 *   ctx.tooltipFor(node, tree, total) tooltip content for a flame node
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseProfileInfo, parseFlamegraph, parseSearch, filterParams, threadLabel, parseFormats } from "../model/api.js";
import { parseLocation, buildLocation } from "../model/urlstate.js";
import { flamegraphUrl } from "../model/query.js";
import { displayText, formatCount, formatDateTime, formatDuration, formatPercent, shortFile } from "../model/format.js";
import { nodeColor, stateSplit, STATE_COLORS, reasonColor, rgb } from "../model/colors.js";
import { maxSelf } from "../model/tree.js";
import { h, clear, append } from "../ui/dom.js";
import { splitBar } from "../ui/table.js";
import { setCrumbs, setStatus } from "../ui/chrome.js";
import { mark } from "../ui/debug.js";
import { requestInfoLine } from "./route.js";

const views = [];

export function registerView(view) {
  views.push(view);
}

export const profilePage = {
  name: "profile",
  match(pathname) {
    const m = /^\/profiles\/(\d+)\/?$/.exec(pathname);
    return m ? { id: m[1] } : null;
  },
  mount(root, { params }) {
    return new ProfilePage(root, params.id);
  },
};

const OTHER_COLOR = "rgb(205, 205, 200)";

class ProfilePage {
  constructor(root, id) {
    this.root = root;
    this.id = id;
    this.state = parseLocation(window.location.pathname, window.location.search);
    this.info = null;
    this.view = null;
    this.viewId = null;
    this.search = null;
    this.treeCache = new Map();
    this.searchSlot = new RequestSlot();
    this.totalsSlot = new RequestSlot();
    this.build();
    mark("profile-start", { id });
    getJSON(apiUrl(`/profiles/${id}`))
      .then((json) => {
        this.info = parseProfileInfo(json);
        this.renderHeader();
        this.renderThreadFilter();
        this.refresh(new Set(["*"]));
      })
      .catch((err) => this.fail(`Could not load profile ${id}: ${err.message}`));
    this.keyHandler = (e) => this.onKey(e);
    document.addEventListener("keydown", this.keyHandler);
    // Start the default tree request right away, in parallel with the profile info.
    this.baseTree().catch(() => {});
  }

  unmount() {
    document.removeEventListener("keydown", this.keyHandler);
    if (this.view) this.view.unmount();
    this.searchSlot.cancel();
    this.totalsSlot.cancel();
  }

  fail(message) {
    setStatus(message, true);
    clear(this.host).appendChild(h("div", { class: "error-box" }, h("p", { class: "error" }, message), h("p", {}, h("a", { href: "/" }, "Back to the profile list"))));
  }

  // -- layout ----------------------------------------------------------------------------

  build() {
    setCrumbs([{ label: "Profiles", href: "/" }, { label: `#${this.id}` }]);
    document.title = `profviz: profile #${this.id}`;
    this.head = h("header", { class: "profile-head" }, h("h1", {}, `Profile #${this.id}`));
    this.tabs = h("nav", { class: "tabs", role: "tablist", aria: { label: "Views" } });
    for (const view of views) {
      const tab = h("button", { type: "button", role: "tab", class: "tab", data: { view: view.id }, on: { click: () => this.setState({ view: view.id }) } }, view.label);
      this.tabs.appendChild(tab);
    }
    this.stateButtons = ["all", "cpu", "wait"].map((value) =>
      h("button", { type: "button", class: "seg", data: { states: value }, on: { click: () => this.setState({ states: value }) } },
        { all: "All", cpu: "CPU", wait: "Waiting" }[value]));
    this.colorSelect = h("select", { id: "color-mode", aria: { label: "Colour by" }, on: { change: () => this.setState({ color: this.colorSelect.value }) } },
      h("option", { value: "state" }, "Colour: state"),
      h("option", { value: "package" }, "Colour: package"),
      h("option", { value: "hot" }, "Colour: hot/cold"));
    this.searchInput = h("input", { type: "search", id: "search", placeholder: "Search functions / files  ( / )", autocomplete: "off", spellcheck: "false", aria: { label: "Search functions" } });
    this.regexBox = h("input", { type: "checkbox", id: "search-regex" });
    this.searchInfo = h("span", { class: "search-info", id: "search-info", role: "status" });
    let debounce = 0;
    this.searchInput.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.setState({ search: this.searchInput.value.trim() }), 250);
    });
    this.searchInput.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        clearTimeout(debounce);
        this.setState({ search: this.searchInput.value.trim() });
      }
    });
    this.regexBox.addEventListener("change", () => this.setState({ regex: this.regexBox.checked }));
    this.threadBox = h("details", { class: "thread-filter", id: "thread-filter", hidden: true });
    this.windowChip = h("span", { class: "window-chip", id: "window-chip", hidden: true });
    const controls = h("div", { class: "controls" },
      h("div", { class: "segmented", role: "group", aria: { label: "Thread states" } }, this.stateButtons),
      this.colorSelect,
      this.threadBox,
      h("span", { class: "search-box" }, this.searchInput, h("label", { class: "regex", for: "search-regex", title: "Regular expression" }, this.regexBox, ".*"), this.searchInfo),
      this.windowChip);
    this.totals = h("div", { class: "totals", id: "totals" });
    this.legend = h("div", { class: "legend", id: "legend" });
    this.host = h("div", { class: "view-host", id: "view" });
    this.root.appendChild(h("section", { class: "profile-page" },
      this.head,
      h("div", { class: "toolbar" }, this.tabs, controls),
      h("div", { class: "subbar" }, this.totals, this.legend),
      this.host));
    if (this.state.problems.length) setStatus(this.state.problems.join("; "), true);
  }

  renderHeader() {
    const p = this.info.profile;
    const target = p.cmdline ? displayText(p.cmdline, 120) : (p.pid ? `pid ${p.pid}` : "");
    setCrumbs([{ label: "Profiles", href: "/" }, { label: `#${p.id} ${p.kind}` }]);
    clear(this.head).appendChild(h("h1", {}, `#${p.id} `, h("span", { class: "kind" }, displayText(p.kind, 40)), " ", h("bdi", { class: "target" }, target)));
    this.head.appendChild(h("div", { class: "meta" },
      h("span", {}, formatDateTime(p.startMs / 1000)),
      h("span", {}, formatDuration(p.durationNs)),
      h("span", {}, `${formatCount(p.sampleCount)} samples`),
      p.rateHz ? h("span", {}, `${Math.round(p.rateHz)} Hz`) : null,
      h("span", {}, `${this.info.threads.length} threads`),
      p.errors ? h("span", { class: "warn" }, `${formatCount(p.errors)} sampling errors`) : null,
      splitBar({ cpu: p.cpuNs, wait: p.waitNs, runnable: p.runnableNs, gil: p.gilNs }),
    ));
    for (const note of p.notes.slice(0, 3)) this.head.appendChild(h("p", { class: "note" }, displayText(note, 300)));
    const request = requestInfoLine(p);
    if (request) this.head.appendChild(request);
    const downloads = h("p", { class: "downloads", id: "profile-downloads" }, "Download as ");
    this.head.appendChild(downloads);
    getJSON(apiUrl("/formats")).then((json) => {
      parseFormats(json).forEach((f, i) => {
        const href = apiUrl(`/profiles/${p.id}/export`, new URLSearchParams({ format: f.name }));
        append(downloads, i ? " \u00b7 " : "", h("a", {
          href, download: `profile-${p.id}${f.extension}`, data: { format: f.name },
          title: `${f.description}${f.drops ? `; drops ${f.drops}` : ""}`,
        }, f.name));
      });
    }).catch((err) => { downloads.textContent = `Could not list the download formats: ${err.message}`; });
  }

  renderThreadFilter() {
    const box = this.threadBox;
    clear(box);
    box.hidden = false;
    const selected = new Set(this.state.threads.map(String));
    const all = this.info.threads;
    const summary = h("summary", {}, selected.size ? `Threads: ${selected.size} of ${all.length}` : `Threads: all ${all.length}`);
    const filter = h("input", { type: "search", placeholder: "Filter by name or tid", class: "thread-search", aria: { label: "Filter threads by name or id" } });
    const list = h("div", { class: "thread-list" });
    const rows = all.map((t) => {
      const box = h("input", { type: "checkbox", value: String(t.index), data: { tid: t.tid } });
      box.checked = selected.has(String(t.index));
      box.addEventListener("change", () => apply());
      const row = h("label", { class: "thread-row", data: { index: t.index } }, box, h("bdi", { class: "thread-name" }, displayText(threadLabel(t), 80)), h("span", { class: "thread-time" }, formatDuration(t.wallNs)));
      list.appendChild(row);
      return { t, box, row };
    });
    const matches = (t, q) => !q || t.name.toLowerCase().includes(q) || String(t.tid).includes(q) || String(t.index) === q;
    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const r of rows) r.row.hidden = !matches(r.t, q);
    });
    const apply = () => {
      const chosen = rows.filter((r) => r.box.checked).map((r) => String(r.t.index));
      this.setState({ threads: chosen.length === all.length ? [] : chosen });
    };
    const onlyShown = h("button", { type: "button", on: { click: () => { for (const r of rows) r.box.checked = !r.row.hidden; apply(); } } }, "Only shown");
    const clearAll = h("button", { type: "button", on: { click: () => { for (const r of rows) r.box.checked = false; apply(); } } }, "All threads");
    filter.addEventListener("keydown", (e) => {
      if (e.key === "Enter") onlyShown.click();
    });
    append(box, summary, h("div", { class: "thread-pop" }, filter, h("div", { class: "thread-actions" }, onlyShown, clearAll), list));
  }

  // -- state -----------------------------------------------------------------------------

  /** Merge `patch` into the state, write it to the URL and update what depends on it. */
  setState(patch) {
    const changed = new Set();
    for (const [key, value] of Object.entries(patch)) {
      if (JSON.stringify(this.state[key]) !== JSON.stringify(value)) changed.add(key);
    }
    if (!changed.size) return;
    Object.assign(this.state, patch);
    if (changed.has("threads") || changed.has("states") || changed.has("window")) {
      // A filter change keeps the zoomed frame (node ids are stable across filters).
      this.search = null;
    }
    window.history.replaceState(null, "", buildLocation(this.state));
    if (changed.has("threads")) this.renderThreadFilter();
    this.refresh(changed);
  }

  refresh(changed) {
    if (!this.info) return;
    const s = this.state;
    for (const tab of this.tabs.children) {
      const active = tab.dataset.view === s.view;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", String(active));
    }
    for (const b of this.stateButtons) b.setAttribute("aria-pressed", String(b.dataset.states === s.states));
    this.colorSelect.value = s.color;
    if (document.activeElement !== this.searchInput) this.searchInput.value = s.search;
    this.regexBox.checked = s.regex;
    this.renderWindowChip();
    this.renderLegend();
    const filtersChanged = changed.has("*") || changed.has("threads") || changed.has("states") || changed.has("window");
    if (filtersChanged) this.refreshTotals();
    if (filtersChanged || changed.has("search") || changed.has("regex")) this.refreshSearch();
    const ctx = this.context();
    if (this.viewId !== s.view) {
      if (this.view) this.view.unmount();
      clear(this.host);
      const view = views.find((v) => v.id === s.view) || views[0];
      this.viewId = s.view;
      this.host.dataset.view = view.id;
      this.view = view.mount(this.host, ctx);
    } else if (this.view) {
      this.view.update(ctx, changed);
    }
  }

  renderWindowChip() {
    const w = this.state.window;
    const chip = this.windowChip;
    clear(chip);
    chip.hidden = !w;
    if (!w) return;
    append(chip, 
      h("span", {}, `Window ${w[0].toFixed(3)} s \u2013 ${w[1].toFixed(3)} s`),
      h("button", { type: "button", class: "chip-clear", aria: { label: "Clear time window" }, title: "Clear time window", on: { click: () => this.setState({ window: null }) } }, "\u00d7"));
  }

  renderLegend() {
    const legend = this.legend;
    clear(legend);
    const swatch = (color, label) => h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: color } }), label);
    if (this.state.color === "state") {
      append(legend, swatch(rgb(STATE_COLORS.cpu), "CPU"));
      const reasons = this.info.waitReasons.slice(0, 4);
      if (reasons.length) for (const [reason] of reasons) append(legend, swatch(rgb(reasonColor(reason)), `waiting: ${displayText(reason, 30)}`));
      else append(legend, swatch(rgb(STATE_COLORS.wait), "waiting"));
      append(legend, swatch(rgb(STATE_COLORS.runnable), "runnable"));
      if (this.info.threads.some((t) => t.gilNs > 0)) append(legend, swatch(rgb(STATE_COLORS.gil), "waiting for the GIL"));
    } else if (this.state.color === "hot") {
      append(legend, swatch("rgb(250,226,150)", "little self time"), swatch("rgb(200,30,20)", "most self time"));
    } else {
      append(legend, h("span", { class: "hint" }, "One colour per package / module"));
    }
  }

  refreshTotals() {
    const el = this.totals;
    el.classList.add("loading");
    this.totalsSlot.run((signal) => this.baseTree(signal)).then((tree) => {
      el.classList.remove("loading");
      const root = tree.nodes[tree.info.focus];
      const total = root.total;
      const pct = (v) => (total > 0 ? ` (${formatPercent(v / total)})` : "");
      append(clear(el), 
        h("strong", {}, formatDuration(total)), " sampled wall time",
        h("span", { class: "t-cpu" }, ` \u00b7 CPU ${formatDuration(root.cpu)}${pct(root.cpu)}`),
        h("span", { class: "t-wait" }, ` \u00b7 waiting ${formatDuration(root.wait)}${pct(root.wait)}`),
        root.runnable ? h("span", { class: "t-runnable" }, ` \u00b7 runnable ${formatDuration(root.runnable)}${pct(root.runnable)}`) : null,
        root.gil ? h("span", { class: "t-gil" }, ` \u00b7 waiting for the GIL ${formatDuration(root.gil)}${pct(root.gil)}`) : null,
        ` \u00b7 ${formatCount(tree.info.totalSamples)} samples`,
        this.state.threads.length ? ` \u00b7 ${this.state.threads.length} of ${this.info.threads.length} threads` : "",
      );
      Object.assign(el.dataset, { totalNs: String(total), cpuNs: String(root.cpu), waitNs: String(root.wait), gilNs: String(root.gil || 0), samples: String(tree.info.totalSamples) });
    }).catch((err) => {
      if (isAbort(err)) return;
      el.classList.remove("loading");
      append(clear(el), h("span", { class: "error" }, err.message));
    });
  }

  refreshSearch() {
    const s = this.state;
    const info = this.searchInfo;
    if (!s.search) {
      this.searchSlot.cancel();
      this.search = null;
      clear(info);
      delete info.dataset.fraction;
      return;
    }
    info.textContent = "searching\u2026";
    const params = this.filters();
    params.set("q", s.search);
    if (s.regex) params.set("regex", "1");
    this.searchSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.id}/search`, params), { signal })).then((json) => {
      this.search = parseSearch(json);
      const r = this.search;
      info.textContent = `${formatPercent(r.fraction)} of selected time matches (${formatDuration(r.matchedNs)})`;
      info.classList.remove("error");
      info.dataset.fraction = String(r.fraction);
      if (this.view) this.view.update(this.context(), new Set(["searchResult"]));
    }).catch((err) => {
      if (isAbort(err)) return;
      this.search = null;
      info.textContent = err.message;
      info.classList.add("error");
      if (this.view) this.view.update(this.context(), new Set(["searchResult"]));
    });
  }

  onKey(event) {
    const target = event.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      this.searchInput.focus();
      this.searchInput.select();
    } else if (event.key === "Escape" && target === this.searchInput) {
      this.searchInput.value = "";
      this.setState({ search: "" });
    } else if (!typing && this.view && this.view.onKey) {
      this.view.onKey(event);
    }
  }

  // -- data ------------------------------------------------------------------------------

  /** URLSearchParams of the common filters for the current state. */
  filters(prefix = "") {
    return filterParams(this.state, prefix);
  }

  treeUrl(root) {
    return flamegraphUrl(this.id, this.state, root);
  }

  fetchTree(url, signal) {
    let entry = this.treeCache.get(url);
    if (!entry) {
      entry = getJSON(url).then((json) => parseFlamegraph(json));
      this.treeCache.set(url, entry);
      entry.catch(() => this.treeCache.delete(url));
      while (this.treeCache.size > 12) this.treeCache.delete(this.treeCache.keys().next().value);
    }
    if (!signal) return entry;
    return new Promise((resolve, reject) => {
      const abort = () => reject(new DOMException("aborted", "AbortError"));
      if (signal.aborted) return abort();
      signal.addEventListener("abort", abort, { once: true });
      entry.then(resolve, reject);
    });
  }

  baseTree(signal) {
    return this.fetchTree(this.treeUrl(null), signal);
  }

  zoomTree(id, signal) {
    return this.fetchTree(this.treeUrl(id), signal);
  }

  context() {
    return {
      page: this,
      id: this.id,
      state: this.state,
      info: this.info,
      search: this.search,
      setState: (patch) => this.setState(patch),
      filters: (prefix) => this.filters(prefix),
      baseTree: (signal) => this.baseTree(signal),
      zoomTree: (id, signal) => this.zoomTree(id, signal),
      colorOf: (tree, focus = 0) => this.colorFunction(tree, focus),
      split: this.state.color === "state" ? stateSplit : null,
      tooltipFor: (node, tree, base) => flameTooltip(node, base),
    };
  }

  colorFunction(tree, focus) {
    const mode = this.state.color;
    const context = { maxSelf: mode === "hot" ? maxSelf(tree, focus) : 0 };
    return (node) => (node.kind === "other" ? OTHER_COLOR : nodeColor(node, mode, context));
  }
}

/** Tooltip content for a flame-graph node; percentages are of `base` ns. */
export function flameTooltip(node, base) {
  const pct = (v) => (base > 0 ? ` (${formatPercent(v / base)})` : "");
  const total = node.total || 0;
  const rows = [
    ["Total", `${formatDuration(total)}${pct(total)}`],
    ["Self", `${formatDuration(node.self)}${pct(node.self)}`],
    ["CPU", `${formatDuration(node.cpu)}${total ? ` (${formatPercent(node.cpu / total)} of frame)` : ""}`],
    ["Waiting", `${formatDuration(node.wait)}${total ? ` (${formatPercent(node.wait / total)} of frame)` : ""}`],
  ];
  if (node.runnable) rows.push(["Runnable", formatDuration(node.runnable)]);
  if (node.gil) rows.push(["Waiting for the GIL", `${formatDuration(node.gil)}${total ? ` (${formatPercent(node.gil / total)} of frame)` : ""}`]);
  if (node.waits) {
    for (const [reason, ns] of Object.entries(node.waits)) rows.push([`  wait: ${displayText(reason, 40)}`, formatDuration(ns)]);
  }
  rows.push(["Samples", formatCount(node.samples)]);
  if (node.kind === "other") rows.push(["Folded", `${node.folded} small frames; click to expand`]);
  return {
    title: node.name,
    subtitle: node.file ? `${shortFile(node.file, 3)}${node.line ? ":" + node.line : ""}` : "",
    bars: total ? [
      { className: "part-cpu", fraction: node.cpu / total },
      { className: "part-wait", fraction: node.wait / total },
      { className: "part-runnable", fraction: node.runnable / total },
      { className: "part-gil", fraction: (node.gil || 0) / total },
      { className: "part-other", fraction: (node.unknown || 0) / total },
    ] : [],
    rows,
  };
}
