/**
 * The only way views build DOM: elements with text children (never HTML strings).
 *
 *   h("div", { class: "row", data: { node: 3 }, on: { click } }, "text", childElement)
 *
 * Strings become text nodes after displayText() (bidi controls neutralised, long text cut);
 * attributes are limited to a safe list, and href only accepts same-origin paths.
 */
import { displayText } from "../model/format.js";

const SAFE_ATTRIBUTES = new Set([
  "id", "type", "name", "value", "placeholder", "role", "tabindex", "for", "min", "max", "step",
  "checked", "disabled", "selected", "colspan", "scope", "width", "height", "title", "hidden",
  "autocomplete", "spellcheck", "download",
]);

/** True for an href we are willing to emit: a same-origin absolute path like "/profiles/3?x=y". */
export function isSafePath(href) {
  return typeof href === "string" && /^\/(?!\/)/.test(href) && !/[\u0000-\u001F\\]/.test(href);
}

/** Append children (strings, numbers, nodes, arrays, null) to `parent`. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    if (typeof child === "string" || typeof child === "number") {
      parent.appendChild(document.createTextNode(displayText(child, 2000)));
    } else {
      parent.appendChild(child);
    }
  }
  return parent;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "data") for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === "aria") for (const [k, v] of Object.entries(value)) el.setAttribute(`aria-${k}`, String(v));
    else if (key === "style") for (const [k, v] of Object.entries(value)) el.style.setProperty(k, String(v));
    else if (key === "href") {
      if (!isSafePath(value)) throw new Error(`refusing unsafe href ${String(value).slice(0, 60)}`);
      el.setAttribute("href", value);
    } else if (key === "title") el.title = displayText(value, 2000);
    else if (SAFE_ATTRIBUTES.has(key)) {
      if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    } else throw new Error(`h(): attribute ${key} is not allowed`);
  }
  return append(el, ...children);
}

/** Remove every child of `el`. */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}
