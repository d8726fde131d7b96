/**
 * Diff flame graph: side A is this profile with the page's filters; side B is another profile
 * (b=), or this one with another time window (bt=) or thread set (bthreads=). Widths come
 * from A; colour from the difference of normalised shares (red: B spends a larger share there,
 * blue: a smaller one). Tables list the biggest increases and decreases per function.
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseDiff, parseProfileList, filterParams, threadLabel } from "../model/api.js";
import { diffColor } from "../model/colors.js";
import { displayText, formatDuration, formatPercent, formatSignedPercent, shortFile, formatDateTime } from "../model/format.js";
import { h, clear, append } from "../ui/dom.js";
import { FlameGraph } from "../ui/flamegraph.js";
import { renderTable } from "../ui/table.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { markAfterPaint } from "../ui/debug.js";

export const diffView = {
  id: "diff",
  label: "Diff",
  mount(container, ctx) {
    return new DiffView(container, ctx);
  },
};

function parseWindowText(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*[-\u2013]\s*(\d+(?:\.\d+)?)\s*$/.exec(text || "");
  if (!m || !(Number(m[2]) > Number(m[1]))) return null;
  return [Number(m[1]), Number(m[2])];
}

class DiffView {
  constructor(container, ctx) {
    this.ctx = ctx;
    this.otherSelect = h("select", { id: "diff-other", aria: { label: "Profile B" } }, h("option", { value: "" }, "this profile (pick another, or give B a window or threads)"));
    this.otherWindow = h("input", { type: "text", id: "diff-window", placeholder: "e.g. 5-10 (seconds)", aria: { label: "Time window of B" } });
    this.otherThreads = h("input", { type: "text", id: "diff-threads", placeholder: "thread indices, e.g. 0,2", aria: { label: "Threads of B" } });
    this.formError = h("span", { class: "error" });
    const apply = h("button", { type: "button", id: "diff-apply", on: { click: () => this.apply() } }, "Compare");
    for (const input of [this.otherWindow, this.otherThreads]) input.addEventListener("keydown", (e) => { if (e.key === "Enter") this.apply(); });
    this.otherSelect.addEventListener("change", () => this.apply());
    this.sides = h("div", { class: "diff-sides", id: "diff-sides" });
    this.message = h("div", { class: "view-message", role: "status" });
    this.graphBox = h("div", { class: "flame-box", id: "diff-flame" });
    this.body = null;
    this.increases = h("div", { class: "table-wrap", id: "diff-increases" });
    this.decreases = h("div", { class: "table-wrap", id: "diff-decreases" });
    append(container, 
      h("div", { class: "diff-form" },
        h("span", { class: "side-tag a" }, "A"), h("span", {}, "this profile with the filters above"),
        h("span", { class: "side-tag b" }, "B"), this.otherSelect, h("label", {}, "window ", this.otherWindow), h("label", {}, "threads ", this.otherThreads), apply, this.formError),
      this.sides,
      h("div", { class: "legend diff-legend" },
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(-1) } }), "smaller share in B"),
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(0) } }), "unchanged"),
        h("span", { class: "legend-item" }, h("span", { class: "swatch", style: { background: diffColor(1) } }), "larger share in B"),
        h("span", { class: "hint" }, "widths: A")),
      this.message,
      this.body = h("div", { class: "diff-body" },
        h("div", { class: "flame-scroll" }, this.graphBox),
        h("div", { class: "diff-tables" },
          h("div", {}, h("h3", {}, "Biggest increases (B vs A)"), this.increases),
          h("div", {}, h("h3", {}, "Biggest decreases (B vs A)"), this.decreases))));
    this.graph = new FlameGraph(this.graphBox, {
      orientation: "flame",
      onClick: (node) => this.zoom(node),
      onHover: (node, event) => showTooltip(event, this.tooltip(node)),
      onLeave: () => hideTooltip(),
    });
    this.focus = 0;
    this.slot = new RequestSlot();
    this.fillForm();
    this.loadProfiles();
    this.load();
  }

  unmount() {
    this.slot.cancel();
    hideTooltip();
    this.graph.destroy();
  }

  update(ctx, changed) {
    this.ctx = ctx;
    this.fillForm();
    if (["threads", "states", "window", "other", "otherWindow", "otherThreads", "*"].some((k) => changed.has(k))) this.load();
  }

  fillForm() {
    const s = this.ctx.state;
    this.otherSelect.value = s.other && s.other !== this.ctx.id ? s.other : "";
    this.otherWindow.value = s.otherWindow ? `${s.otherWindow[0]}-${s.otherWindow[1]}` : "";
    this.otherThreads.value = s.otherThreads.join(",");
  }

  loadProfiles() {
    getJSON(apiUrl("/profiles", { limit: "500" })).then((json) => {
      for (const p of parseProfileList(json)) {
        if (String(p.id) === String(this.ctx.id)) continue;
        const label = `#${p.id} ${displayText(p.kind, 20)} ${formatDateTime(p.startMs / 1000)} ${displayText(p.cmdline, 40)}`;
        this.otherSelect.appendChild(h("option", { value: String(p.id) }, label));
      }
      this.fillForm();
    }).catch(() => {});
  }

  apply() {
    this.formError.textContent = "";
    const windowText = this.otherWindow.value.trim();
    const win = windowText ? parseWindowText(windowText) : null;
    if (windowText && !win) {
      this.formError.textContent = "window: use \"from-to\" in seconds from the start, e.g. 5-10";
      return;
    }
    const threads = this.otherThreads.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (threads.some((t) => !/^\d+$/.test(t))) {
      this.formError.textContent = "threads: use thread indices separated by commas, e.g. 0,2";
      return;
    }
    this.focus = 0;
    this.ctx.setState({ other: this.otherSelect.value || null, otherWindow: win, otherThreads: threads });
  }

  describeSides(diff) {
    const s = this.ctx.state;
    const info = this.ctx.info;
    const sameProfile = !s.other || s.other === this.ctx.id;
    const names = (list, own) => list.map((i) => {
      const t = own || sameProfile ? info.threads.find((th) => String(th.index) === String(i)) : null;
      return t ? threadLabel(t) : `#${i}`;
    }).join(", ");
    const side = (tag, id, win, threads, total, own) => h("div", { class: `diff-side ${tag}` },
      h("span", { class: `side-tag ${tag}` }, tag.toUpperCase()),
      ` profile #${id}`,
      win ? ` \u00b7 ${win[0]}\u2013${win[1]} s` : " \u00b7 whole time",
      threads.length ? h("bdi", {}, ` \u00b7 threads ${displayText(names(threads, own), 120)}`) : " \u00b7 all threads",
      ` \u00b7 ${formatDuration(total)}`);
    append(clear(this.sides), 
      side("a", diff.a.profileId, s.window, s.threads, diff.a.rootTotalNs, true),
      side("b", diff.b.profileId, s.otherWindow, s.otherThreads, diff.b.rootTotalNs, false));
  }

  load() {
    const s = this.ctx.state;
    const params = new URLSearchParams({ a: this.ctx.id, b: s.other || this.ctx.id });
    filterParams(s, "a_", params);
    filterParams(s, "b_", params);
    params.set("limit", "25");
    const trivial = (!s.other || s.other === this.ctx.id) && !s.otherWindow && !s.otherThreads.length;
    this.body.hidden = trivial;
    if (trivial) {
      // A profile against itself is all grey: ask for the other side instead of drawing that.
      this.slot.cancel();
      clear(this.sides);
      this.message.textContent = "Pick what to compare with (B): another profile, or this profile with another time window or thread set. Side A is this profile with the filters above.";
      this.message.classList.remove("error");
      this.message.dataset.needsB = "1";
      markAfterPaint("diff-painted", { needsB: true });
      return;
    }
    delete this.message.dataset.needsB;
    this.graphBox.classList.add("loading");
    this.slot.run((signal) => getJSON(apiUrl("/diff", params), { signal }))
      .then((json) => {
        this.diff = parseDiff(json);
        this.graphBox.classList.remove("loading");
        this.message.textContent = "";
        this.describeSides(this.diff);
        this.draw();
        this.drawTables();
        markAfterPaint("diff-painted", {});
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.graphBox.classList.remove("loading");
        this.message.textContent = `Could not compute the diff: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  draw() {
    const tree = this.diff.tree;
    let maxAbs = 0;
    for (const n of tree.nodes) if (n.index && Math.abs(n.delta) > maxAbs) maxAbs = Math.abs(n.delta);
    const scale = Math.max(0.02, maxAbs);
    this.graph.draw(tree, { focus: Math.min(this.focus, tree.size - 1), colorOf: (n) => diffColor(n.delta / scale) });
    this.graphBox.dataset.maxDelta = String(maxAbs);
  }

  zoom(node) {
    hideTooltip();
    this.focus = node.kind === "other" ? node.parent : node.index;
    this.draw();
  }

  tooltip(node) {
    const rows = [
      ["A", `${formatDuration(node.aTotal)} (${formatPercent(node.aFraction)})`],
      ["B", `${formatDuration(node.bTotal)} (${formatPercent(node.bFraction)})`],
      ["Change of share", formatSignedPercent(node.delta)],
      ["Self A / B", `${formatDuration(node.aSelf)} / ${formatDuration(node.bSelf)}`],
    ];
    return { title: node.name, subtitle: node.file ? `${shortFile(node.file, 3)}${node.line ? ":" + node.line : ""}` : "", rows };
  }

  drawTables() {
    const changes = this.diff.changes;
    const columns = [
      { key: "name", label: "Function", value: (c) => c.name, cell: (c) => h("bdi", { class: "fn-name", title: `${c.file}:${c.line}` }, displayText(c.name, 80)) },
      { key: "file", label: "File", value: (c) => c.file, text: (c) => `${shortFile(c.file, 2)}:${c.line}` },
      { key: "a", label: "A total", numeric: true, value: (c) => c.aTotal, text: (c) => formatDuration(c.aTotal) },
      { key: "b", label: "B total", numeric: true, value: (c) => c.bTotal, text: (c) => formatDuration(c.bTotal) },
      { key: "delta", label: "\u0394 share", numeric: true, value: (c) => c.deltaTotal, cell: (c) => h("span", { class: c.deltaTotal > 0 ? "worse" : "better" }, formatSignedPercent(c.deltaTotal)) },
      { key: "dself", label: "\u0394 self share", numeric: true, value: (c) => c.deltaSelf, text: (c) => formatSignedPercent(c.deltaSelf) },
    ];
    const up = changes.filter((c) => c.deltaTotal > 0 || c.deltaSelf > 0).sort((a, b) => b.deltaTotal - a.deltaTotal).slice(0, 15);
    const down = changes.filter((c) => c.deltaTotal < 0 || c.deltaSelf < 0).sort((a, b) => a.deltaTotal - b.deltaTotal).slice(0, 15);
    renderTable(this.increases, { columns, rows: up, sort: "delta", ascending: false });
    renderTable(this.decreases, { columns, rows: down, sort: "delta", ascending: true });
    this.increases.dataset.rows = String(up.length);
    this.decreases.dataset.rows = String(down.length);
  }
}
