/**
 * The findings panel (routes page and route page): each finding as a card with its kind, title,
 * figures, evidence (statement or URL, call site, query plan), the fix, and links to its
 * evidence (the example request's flame graph with the call site highlighted, its span in the
 * correlation view). Everything from the profiled program goes in as text (ui/dom.js).
 */
import { evidenceLinks, splitRoute } from "../model/findings.js";
import { formatPercent } from "../model/format.js";
import { routeHref } from "../model/routes.js";
import { h, clear } from "./dom.js";
import { formatMs } from "./routecharts.js";

function figures(f) {
  const parts = [`${formatMs(f.impactMs)} a request`, `${f.requests} request${f.requests === 1 ? "" : "s"}`,
    `${formatPercent(f.share)} of the route's time`];
  if (f.tailShare > 0) parts.push(`${formatPercent(f.tailShare)} of its tail's extra time`);
  return parts.join(" \u00b7 ");
}

function evidenceRows(f) {
  const rows = [];
  if (f.statement) rows.push(["statement", h("code", { class: "finding-sql" }, f.statement)]);
  if (f.url) rows.push(["call", h("code", {}, f.url)]);
  if (f.countPerRequest !== null) rows.push(["per request", `${f.countPerRequest} times`]);
  if (f.handler) rows.push(["handler", h("code", {}, f.handler)]);
  if (f.callSite) rows.push(["call site", h("code", {}, `${f.callSite.function} (${f.callSite.file}:${f.callSite.line})`)]);
  if (f.plan) rows.push(["query plan", h("pre", { class: "finding-plan" }, f.plan)]);
  return rows;
}

/** One finding's card; `window` keeps the route link on the current time window. */
export function findingCard(f, { withRoute = true, window = null } = {}) {
  const links = evidenceLinks(f).map((l) => h("a", { href: l.href, class: "finding-link", data: { link: l.kind } }, l.label));
  const route = f.route && withRoute ? (() => {
    const { method, route: path } = splitRoute(f.route);
    return h("a", { href: routeHref(path, method, window || { preset: "all" }), class: "finding-route" }, f.route);
  })() : null;
  return h("article", { class: "finding", data: { kind: f.kind } },
    h("header", { class: "finding-head" },
      h("span", { class: "finding-kind" }, f.label),
      route,
      h("h3", { class: "finding-title" }, f.title)),
    h("p", { class: "finding-figures" }, figures(f)),
    h("dl", { class: "finding-evidence" }, evidenceRows(f).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("p", { class: "finding-fix" }, h("strong", {}, "Fix: "), f.fix),
    links.length ? h("p", { class: "finding-links" }, links) : null);
}

/** Fill `box` with the cards of `findings` (at most `limit`), or say there is none. */
export function drawFindings(box, findings, { withRoute = true, window = null, limit = 6, empty = "", notes = [] } = {}) {
  clear(box);
  for (const note of notes) box.appendChild(h("p", { class: "hint finding-note" }, note));
  if (!findings.length) {
    box.appendChild(h("p", { class: "hint", id: "findings-empty" }, empty || "No bottleneck over the detectors' thresholds in this window."));
  } else {
    for (const f of findings.slice(0, limit)) box.appendChild(findingCard(f, { withRoute, window }));
    if (findings.length > limit) box.appendChild(h("p", { class: "hint" }, `${findings.length - limit} more: profviz findings`));
  }
  box.dataset.findings = String(Math.min(findings.length, limit));
}
