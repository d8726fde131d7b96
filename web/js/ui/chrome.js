/** The page chrome shared by all pages: breadcrumbs in the top bar and the status line. */
import { h, clear } from "./dom.js";
import { displayText } from "../model/format.js";

/** Set the top-bar breadcrumbs: [{ label, href? }], href must be a same-origin path. */
export function setCrumbs(items) {
  const nav = document.getElementById("crumbs");
  if (!nav) return;
  clear(nav);
  items.forEach((item, i) => {
    if (i) nav.appendChild(h("span", { class: "sep", aria: { hidden: "true" } }, "/"));
    nav.appendChild(item.href ? h("a", { href: item.href }, displayText(item.label, 80)) : h("span", {}, displayText(item.label, 80)));
  });
}

/** Show a short status or error line in the top bar ("" clears it). */
export function setStatus(text, isError = false) {
  const el = document.getElementById("status");
  if (!el) return;
  el.textContent = displayText(text, 300);
  el.classList.toggle("error", Boolean(isError && text));
}
