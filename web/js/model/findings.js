/**
 * Findings (/api/findings, docs/findings.md) read into plain structures, and the links from a
 * finding to its evidence. DOM-free (node tests import it). Everything in a finding (titles,
 * statements, URLs, file and function names) comes from the profiled program: views show it as
 * text only.
 */
import { ApiShapeError } from "./api.js";

/** Human labels of the finding kinds (the stable vocabulary of docs/findings.md). */
export const KIND_LABELS = {
  n_plus_one_query: "N+1 query",
  repeated_remote_call: "repeated remote call",
  full_scan: "full table scan",
  slow_query: "slow query",
  connection_setup: "new connection per request",
  pool_wait: "pool wait",
  sync_logging: "synchronous logging",
  serialization: "serialization",
  large_payload: "large payload",
  lock_contention: "lock contention",
  gil_contention: "GIL contention",
  cpu_hotspot: "CPU hotspot",
  saturation: "saturation",
  event_loop_blocked: "event loop blocked",
};

function need(condition, where, what) {
  if (!condition) throw new ApiShapeError(`${where}: ${what}`);
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function optionalString(value) {
  return typeof value === "string" ? value : null;
}

function parseSite(site, where) {
  if (site === null || site === undefined) return null;
  need(typeof site === "object" && typeof site.function === "string" && typeof site.file === "string" && isNumber(site.line),
    where, "call_site is not {function, file, line}");
  return { function: site.function, file: site.file, line: site.line };
}

function parseExamples(examples, where) {
  if (examples === undefined) return [];
  need(Array.isArray(examples), where, "examples is not an array");
  return examples.map((e, i) => {
    need(e && isNumber(e.request), `${where}.examples[${i}]`, "request is not a number");
    need(e.profile === null || isNumber(e.profile), `${where}.examples[${i}]`, "profile is not a number or null");
    need(Array.isArray(e.spans) && e.spans.every((s) => typeof s === "string"), `${where}.examples[${i}]`, "spans is not a list of ids");
    return { request: e.request, profile: e.profile, spans: e.spans };
  });
}

/** `{findings: [...], requests, notes}` of /api/findings; throws ApiShapeError naming what is wrong. */
export function parseFindings(json) {
  need(json && Array.isArray(json.findings), "findings", "findings is not an array");
  const findings = json.findings.map((f, i) => {
    const where = `findings[${i}]`;
    need(f && typeof f.kind === "string" && typeof f.title === "string" && typeof f.fix === "string", where, "kind, title or fix is not a string");
    need(f.route === null || typeof f.route === "string", where, "route is not a string or null");
    for (const key of ["requests", "impact_ms", "tail_share", "share"]) need(isNumber(f[key]), where, `${key} is not a number`);
    need(f.evidence && typeof f.evidence === "object" && !Array.isArray(f.evidence), where, "evidence is not an object");
    const e = f.evidence;
    return {
      kind: f.kind, label: KIND_LABELS[f.kind] || f.kind, route: f.route, title: f.title, fix: f.fix,
      requests: f.requests, impactMs: f.impact_ms, tailShare: f.tail_share, share: f.share,
      statement: optionalString(e.statement), url: optionalString(e.url), handler: optionalString(e.handler),
      plan: optionalString(e.plan), countPerRequest: isNumber(e.count_per_request) ? e.count_per_request : null,
      callSite: parseSite(e.call_site, where), examples: parseExamples(e.examples, where),
    };
  });
  const notes = Array.isArray(json.notes) ? json.notes.filter((n) => typeof n === "string") : [];
  return { findings, requests: isNumber(json.requests) ? json.requests : null, notes };
}

/** "GET /posts" -> {method: "GET", route: "/posts"} (routes may hold spaces after the first). */
export function splitRoute(key) {
  const space = key.indexOf(" ");
  return space < 0 ? { method: "GET", route: key } : { method: key.slice(0, space), route: key.slice(space + 1) };
}

/**
 * The evidence links of a finding: its example request's flame graph with the call site's
 * function searched (highlighted), and its first span in the correlation view. Paths only.
 */
export function evidenceLinks(finding) {
  const links = [];
  const example = finding.examples.find((e) => e.profile !== null);
  if (example) {
    const query = new URLSearchParams();
    if (finding.callSite) query.set("q", finding.callSite.function);
    links.push({ kind: "flame", label: `request #${example.request}: flame graph${finding.callSite ? ", call site highlighted" : ""}`,
      href: `/profiles/${example.profile}${query.toString() ? `?${query}` : ""}` });
    if (example.spans.length) {
      const spanQuery = new URLSearchParams({ view: "correlation", span: example.spans[0] });
      links.push({ kind: "span", label: "its span in the correlation view", href: `/profiles/${example.profile}?${spanQuery}` });
    }
  }
  return links;
}

/** The first (largest impact) finding of each route, in the order given: the routes page's summary. */
export function topPerRoute(findings) {
  const seen = new Set();
  return findings.filter((f) => {
    if (seen.has(f.route)) return false;
    seen.add(f.route);
    return true;
  });
}
