/**
 * Sandwich view of one function: its callers above (an inverted tree with the function at the
 * bottom) and its callees below (its merged subtrees), with a function picker. Clicking a
 * frame in either half selects that function. The function is in the URL (fn=, file=).
 */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseSandwich, parseFunctionTable } from "../model/api.js";
import { displayText, formatDuration, formatPercent, shortFile } from "../model/format.js";
import { h, clear, append } from "../ui/dom.js";
import { FlameGraph } from "../ui/flamegraph.js";
import { showTooltip, hideTooltip } from "../ui/tooltip.js";
import { markAfterPaint } from "../ui/debug.js";

export const sandwichView = {
  id: "sandwich",
  label: "Sandwich",
  mount(container, ctx) {
    return new SandwichView(container, ctx);
  },
};

class SandwichView {
  constructor(container, ctx) {
    this.ctx = ctx;
    this.pickerFilter = h("input", { type: "search", placeholder: "Filter functions", class: "picker-filter", aria: { label: "Filter functions" } });
    this.pickerList = h("ul", { class: "picker-list", id: "sandwich-picker" });
    this.pickerFilter.addEventListener("input", () => this.drawPicker());
    this.title = h("div", { class: "sandwich-title", id: "sandwich-title" });
    this.message = h("div", { class: "view-message", role: "status" });
    this.callersBox = h("div", { class: "flame-box", id: "sandwich-callers" });
    this.calleesBox = h("div", { class: "flame-box", id: "sandwich-callees" });
    append(container, h("div", { class: "sandwich" },
      h("aside", { class: "picker" }, h("div", { class: "picker-head" }, "Functions by self time"), this.pickerFilter, this.pickerList),
      h("div", { class: "sandwich-main" },
        this.title, this.message,
        h("h3", { class: "half-title" }, "Callers ", h("span", { class: "hint" }, "(who calls it; the function is at the bottom)")),
        h("div", { class: "flame-scroll short" }, this.callersBox),
        h("h3", { class: "half-title" }, "Callees ", h("span", { class: "hint" }, "(what it calls; the function is at the top)")),
        h("div", { class: "flame-scroll short" }, this.calleesBox))));
    const handlers = (which) => ({
      onClick: (node) => this.select(node),
      onHover: (node, event) => showTooltip(event, ctx.tooltipFor(node, null, this.data ? this.data.totalNs : 0)),
      onLeave: () => hideTooltip(),
      onDraw: undefined,
      which,
    });
    this.callers = new FlameGraph(this.callersBox, { orientation: "flame", ...handlers("callers") });
    this.callees = new FlameGraph(this.calleesBox, { orientation: "icicle", ...handlers("callees") });
    this.slot = new RequestSlot();
    this.listSlot = new RequestSlot();
    this.loadPicker();
    this.load();
  }

  unmount() {
    this.slot.cancel();
    this.listSlot.cancel();
    hideTooltip();
    this.callers.destroy();
    this.callees.destroy();
  }

  update(ctx, changed) {
    this.ctx = ctx;
    const filters = ["threads", "states", "window", "*"].some((k) => changed.has(k));
    if (filters) this.loadPicker();
    if (filters || changed.has("fn") || changed.has("file")) this.load();
    else if (changed.has("color")) this.draw();
  }

  select(node) {
    hideTooltip();
    if (node.kind === "other" || !node.name || node.fn < 0) return;
    this.ctx.setState({ fn: node.name, file: node.file });
  }

  loadPicker() {
    const params = this.ctx.filters();
    params.set("sort", "self");
    params.set("limit", "300");
    this.listSlot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/functions`, params), { signal }))
      .then((json) => {
        this.functions = parseFunctionTable(json);
        this.drawPicker();
        if (!this.ctx.state.fn && this.functions.functions.length) {
          const top = this.functions.functions[0];
          this.ctx.setState({ fn: top.name, file: top.file });
        } else if (!this.functions.functions.length) {
          this.message.textContent = "No samples match the current filters.";
        }
      })
      .catch((err) => {
        if (!isAbort(err)) this.message.textContent = `Could not load the functions: ${err.message}`;
      });
  }

  drawPicker() {
    if (!this.functions) return;
    const q = this.pickerFilter.value.trim().toLowerCase();
    const { fn, file } = this.ctx.state;
    const base = this.functions.rootTotalNs;
    clear(this.pickerList);
    let shown = 0;
    for (const f of this.functions.functions) {
      if (q && !f.name.toLowerCase().includes(q) && !f.file.toLowerCase().includes(q)) continue;
      if (++shown > 200) break;
      const current = f.name === fn && f.file === file;
      this.pickerList.appendChild(h("li", {},
        h("button", { type: "button", class: ["pick", current && "current"], title: `${f.file}:${f.line}`, on: { click: () => this.ctx.setState({ fn: f.name, file: f.file }) } },
          h("bdi", { class: "fn-name" }, displayText(f.name, 60)),
          h("span", { class: "pick-time" }, base ? formatPercent(f.self / base) : ""))));
    }
  }

  load() {
    const { state } = this.ctx;
    if (!state.fn) return;
    const params = this.ctx.filters();
    params.set("function", state.fn);
    if (state.file !== null && state.file !== undefined) params.set("file", state.file);
    this.slot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/sandwich`, params), { signal }))
      .then((json) => {
        this.data = parseSandwich(json);
        this.message.textContent = "";
        this.message.classList.remove("error");
        this.draw();
        this.drawPicker();
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.data = null;
        clear(this.title);
        this.message.textContent = `Could not load the sandwich of ${displayText(state.fn, 80)}: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  draw() {
    const d = this.data;
    if (!d) return;
    const base = d.rootTotalNs;
    append(clear(this.title), 
      h("bdi", { class: "fn-name big" }, displayText(d.function.name, 200)),
      h("span", { class: "fn-file" }, ` ${shortFile(d.function.file, 3)}${d.function.line ? ":" + d.function.line : ""}`),
      h("span", { class: "fn-stats" }, ` \u00b7 total ${formatDuration(d.totalNs)} (${formatPercent(base ? d.totalNs / base : 0)}) \u00b7 self ${formatDuration(d.selfNs)} (${formatPercent(base ? d.selfNs / base : 0)})`));
    this.title.dataset.fn = d.function.name;
    const draw = (graph, tree) => graph.draw(tree, { focus: 0, colorOf: this.ctx.colorOf(tree, 0), split: this.ctx.split });
    draw(this.callers, d.callers);
    draw(this.callees, d.callees);
    markAfterPaint("sandwich-painted", {});
  }
}
