/**
 * One floating tooltip for the whole page. Content is a title and rows of [label, value]
 * (plain strings; shown through textContent after displayText()).
 */
import { h, clear } from "./dom.js";
import { displayText } from "../model/format.js";

let tip = null;

function element() {
  if (!tip) {
    tip = h("div", { class: "tooltip", role: "tooltip", hidden: true });
    document.body.appendChild(tip);
    // A click (which may redraw or move what was under the pointer) or a scroll puts it away;
    // the next hover shows it again for what is under the pointer then.
    document.addEventListener("pointerdown", hideTooltip, true);
    window.addEventListener("scroll", hideTooltip);
  }
  return tip;
}

/**
 * Show the tooltip near the pointer of `event`. `content` = { title, subtitle, rows, bars }
 * where rows are [label, value] pairs and bars an optional [{label, fraction, className}].
 */
export function showTooltip(event, content) {
  const el = element();
  clear(el);
  if (content.title) el.appendChild(h("div", { class: "tooltip-title" }, displayText(content.title, 300)));
  if (content.subtitle) el.appendChild(h("div", { class: "tooltip-subtitle" }, displayText(content.subtitle, 300)));
  if (content.bars && content.bars.length) {
    const bar = h("div", { class: "split-bar" });
    for (const part of content.bars) {
      if (part.fraction > 0) bar.appendChild(h("span", { class: part.className, style: { width: `${(part.fraction * 100).toFixed(2)}%` } }));
    }
    el.appendChild(bar);
  }
  if (content.rows && content.rows.length) {
    const table = h("table");
    for (const [label, value] of content.rows) table.appendChild(h("tr", {}, h("th", {}, label), h("td", {}, value)));
    el.appendChild(table);
  }
  el.hidden = false;
  const pad = 14;
  const { innerWidth, innerHeight } = window;
  const rect = el.getBoundingClientRect();
  let x = event.clientX + pad;
  let y = event.clientY + pad;
  if (x + rect.width > innerWidth - 4) x = Math.max(4, event.clientX - rect.width - pad);
  if (y + rect.height > innerHeight - 4) y = Math.max(4, event.clientY - rect.height - pad);
  el.style.left = `${x}px`;
  el.style.top = `${y}px`;
}

export function hideTooltip() {
  if (tip) tip.hidden = true;
}
