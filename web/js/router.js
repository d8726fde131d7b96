/**
 * A tiny client-side router. The server serves index.html for every page path; the router
 * picks the registered page whose `match(pathname)` accepts the path and mounts it.
 *
 *   registerPage({ name, match(pathname) -> params | null, mount(root, { params, location }) -> { unmount() } })
 *
 * Pages keep their own state in the query string (history.replaceState) so links reproduce
 * them; `navigate(url)` moves to another page without a reload.
 */
import { clear, h } from "./ui/dom.js";

const pages = [];
let root = null;
let current = null;

export function registerPage(page) {
  pages.push(page);
}

function mountCurrent() {
  if (current && current.unmount) current.unmount();
  current = null;
  clear(root);
  const pathname = window.location.pathname;
  for (const page of pages) {
    const params = page.match(pathname);
    if (params) {
      document.body.dataset.page = page.name;
      current = page.mount(root, { params, location: window.location });
      return;
    }
  }
  document.body.dataset.page = "notfound";
  root.appendChild(h("section", { class: "empty" }, h("h1", {}, "Page not found"), h("p", {}, "There is no page at ", pathname, ". ", h("a", { href: "/" }, "See all profiles."))));
}

/** Go to `url` (a same-origin path) and mount its page. */
export function navigate(url) {
  window.history.pushState(null, "", url);
  mountCurrent();
}

export function start(element) {
  root = element;
  window.addEventListener("popstate", mountCurrent);
  mountCurrent();
}
