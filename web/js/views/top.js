/** Top functions: a sortable table of self, total, CPU, waiting, runnable and GIL time per function. */
import { getJSON, apiUrl, isAbort, RequestSlot } from "../api.js";
import { parseFunctionTable } from "../model/api.js";
import { displayText, formatCount, formatDuration, formatPercent, shortFile } from "../model/format.js";
import { h, append } from "../ui/dom.js";
import { renderTable, splitBar } from "../ui/table.js";
import { markAfterPaint } from "../ui/debug.js";

export const topView = {
  id: "top",
  label: "Top functions",
  mount(container, ctx) {
    return new TopView(container, ctx);
  },
};

const SERVER_SORTS = new Set(["self", "total", "cpu", "wait", "runnable", "gil", "samples"]);

class TopView {
  constructor(container, ctx) {
    this.ctx = ctx;
    this.message = h("div", { class: "view-message", role: "status" });
    this.box = h("div", { class: "table-wrap", id: "top-table" });
    append(container, this.message, this.box);
    this.slot = new RequestSlot();
    this.load();
  }

  unmount() {
    this.slot.cancel();
  }

  update(ctx, changed) {
    this.ctx = ctx;
    if (["threads", "states", "window", "sort", "*"].some((k) => changed.has(k))) this.load();
    else if (changed.has("ascending") || changed.has("searchResult") || changed.has("search")) this.draw();
  }

  load() {
    const { state } = this.ctx;
    const params = this.ctx.filters();
    params.set("sort", SERVER_SORTS.has(state.sort) ? state.sort : "self");
    params.set("limit", "1000");
    this.box.classList.add("loading");
    this.slot.run((signal) => getJSON(apiUrl(`/profiles/${this.ctx.id}/functions`, params), { signal }))
      .then((json) => {
        this.data = parseFunctionTable(json);
        this.box.classList.remove("loading");
        this.draw();
      })
      .catch((err) => {
        if (isAbort(err)) return;
        this.box.classList.remove("loading");
        this.message.textContent = `Could not load the functions: ${err.message}`;
        this.message.classList.add("error");
      });
  }

  draw() {
    const { state, search } = this.ctx;
    const data = this.data;
    if (!data) return;
    const base = data.rootTotalNs;
    const pct = (v) => (base > 0 ? formatPercent(v / base) : "\u2013");
    const matched = state.search && search ? new Set(search.functions.map((f) => `${f.name}\u0000${f.file}`)) : null;
    const rows = matched ? data.functions.filter((f) => matched.has(`${f.name}\u0000${f.file}`)) : data.functions;
    this.message.textContent = matched ? `${rows.length} of ${data.functions.length} functions match the search.` : `${formatCount(data.totalFunctions)} functions; showing the top ${data.functions.length} by ${state.sort}. Click a row for its callers and callees.`;
    this.message.classList.remove("error");
    const time = (key, label, title) => ({ key, label, numeric: true, title, value: (f) => f[key], text: (f) => formatDuration(f[key]) });
    const columns = [
      { key: "name", label: "Function", value: (f) => f.name, cell: (f) => h("bdi", { class: "fn-name" }, displayText(f.name, 120)) },
      { key: "file", label: "File", sortable: false, value: (f) => f.file, cell: (f) => h("span", { class: "fn-file", title: `${f.file}:${f.line}` }, `${shortFile(f.file, 2)}:${f.line}`) },
      { key: "package", label: "Package", sortable: false, value: (f) => f.package, text: (f) => displayText(f.package, 40) },
      time("self", "Self", "Time as the innermost frame"),
      { key: "selfPct", label: "Self %", numeric: true, sortable: false, value: (f) => f.self, text: (f) => pct(f.self) },
      time("total", "Total", "Time with the function on the stack (recursion counted once)"),
      { key: "totalPct", label: "Total %", numeric: true, sortable: false, value: (f) => f.total, text: (f) => pct(f.total) },
      time("cpu", "CPU", "Part of the total on CPU"),
      time("wait", "Waiting", "Part of the total waiting"),
      time("runnable", "Runnable", "Part of the total runnable (waiting for a CPU)"),
      data.functions.some((f) => f.gil > 0) || state.sort === "gil" ? time("gil", "GIL", "Part of the total waiting for the interpreter's GIL while other threads run Python") : null,
      { key: "split", label: "CPU / wait", sortable: false, value: (f) => f.cpu, cell: (f) => splitBar({ cpu: f.cpu, wait: f.wait, runnable: f.runnable, gil: f.gil, total: f.total }) },
      { key: "samples", label: "Samples", numeric: true, value: (f) => f.samples, text: (f) => formatCount(f.samples) },
    ].filter(Boolean);
    renderTable(this.box, {
      columns,
      rows,
      sort: state.sort,
      ascending: state.ascending,
      onSort: (key, ascending) => this.ctx.setState({ sort: key, ascending }),
      onRowClick: (f) => this.ctx.setState({ view: "sandwich", fn: f.name, file: f.file }),
    });
    this.box.dataset.rows = String(rows.length);
    markAfterPaint("top-painted", { rows: rows.length });
  }
}
