/**
 * A sortable table (plain DOM, text only).
 *
 *   renderTable(container, { columns, rows, sort, ascending, onSort, onRowClick, rowTitle, caption })
 *
 * A column is { key, label, value(row) (sort value), text(row) (cell text, default value),
 * numeric, sortable, className, cell(row) (optional custom element), title }. Sorting is done
 * here (stable, by value) so the caller only keeps the sort key; clicking a sortable header
 * calls onSort(key, ascending).
 */
import { h, clear } from "./dom.js";

export function sortRows(rows, column, ascending) {
  const dir = ascending ? 1 : -1;
  const value = column.value;
  return rows
    .map((row, i) => [row, i])
    .sort(([a, i], [b, j]) => {
      const va = value(a);
      const vb = value(b);
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return i - j;
    })
    .map(([row]) => row);
}

export function renderTable(container, spec) {
  const { columns, rows, sort, ascending = false, onSort, onRowClick, caption, maxRows = 1000 } = spec;
  clear(container);
  const column = columns.find((c) => c.key === sort);
  const sorted = column ? sortRows(rows, column, ascending) : rows;
  const head = h("tr", {}, columns.map((c) => {
    const active = c.key === sort;
    const th = h("th", {
      scope: "col",
      class: [c.numeric && "num", c.sortable !== false && onSort && "sortable", active && "sorted", c.className],
      aria: active ? { sort: ascending ? "ascending" : "descending" } : {},
      title: c.title || null,
      data: { key: c.key },
    }, c.label, active ? (ascending ? " \u25b2" : " \u25bc") : "");
    if (c.sortable !== false && onSort) {
      th.tabIndex = 0;
      const activate = () => onSort(c.key, active ? !ascending : c.key === "name" || c.defaultAscending === true);
      th.addEventListener("click", activate);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          activate();
        }
      });
    }
    return th;
  }));
  const body = h("tbody");
  for (const row of sorted.slice(0, maxRows)) {
    const tr = h("tr", { class: onRowClick && "clickable" });
    for (const c of columns) {
      const content = c.cell ? c.cell(row) : (c.text ? c.text(row) : String(c.value(row)));
      tr.appendChild(h("td", { class: [c.numeric && "num", c.className] }, content));
    }
    if (onRowClick) {
      tr.tabIndex = 0;
      tr.addEventListener("click", () => onRowClick(row));
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter") onRowClick(row);
      });
    }
    body.appendChild(tr);
  }
  const table = h("table", { class: "data-table" }, caption ? h("caption", {}, caption) : null, h("thead", {}, head), body);
  container.appendChild(table);
  if (sorted.length > maxRows) container.appendChild(h("p", { class: "hint" }, `Showing ${maxRows} of ${sorted.length} rows.`));
  return table;
}

/** A small horizontal bar split into CPU / waiting / runnable / GIL / other parts (fractions of total). */
export function splitBar({ cpu = 0, wait = 0, runnable = 0, gil = 0, total = 0 }, className = "split-bar") {
  const bar = h("span", { class: className, role: "img" });
  const t = total || cpu + wait + runnable + gil;
  const parts = [["cpu", cpu], ["wait", wait], ["runnable", runnable], ["gil", gil], ["other", Math.max(0, t - cpu - wait - runnable - gil)]];
  const labels = [];
  for (const [name, value] of parts) {
    if (t > 0 && value > 0) {
      bar.appendChild(h("span", { class: `part-${name}`, style: { width: `${((value / t) * 100).toFixed(2)}%` } }));
      labels.push(`${name} ${((value / t) * 100).toFixed(0)}%`);
    }
  }
  bar.setAttribute("aria-label", labels.join(", ") || "no time");
  bar.title = labels.join(", ");
  return bar;
}
