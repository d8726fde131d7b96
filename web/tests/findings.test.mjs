/**
 * The findings model (web/js/model/findings.js) on the fixtures the real server emitted
 * (tests/fixtures/api/findings*.json, from tests/fixtures/api_requests.py): kinds, figures,
 * evidence and its links, hostile SQL and URLs verbatim.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parseFindings, evidenceLinks, splitRoute, topPerRoute, KIND_LABELS } from "../js/model/findings.js";
import { ApiShapeError } from "../js/model/api.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "api");
const load = (name) => JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8"));

test("findings: largest impact first, each with a label, figures and evidence", () => {
  const { findings, requests, notes } = parseFindings(load("findings"));
  assert.ok(requests > 100);
  assert.deepEqual(notes, []);
  assert.deepEqual(findings.map((f) => f.kind).sort(), ["n_plus_one_query", "repeated_remote_call", "sync_logging"]);
  const impacts = findings.map((f) => f.impactMs);
  assert.deepEqual(impacts, [...impacts].sort((a, b) => b - a));
  for (const f of findings) {
    assert.equal(f.label, KIND_LABELS[f.kind]);
    assert.ok(f.share >= 0 && f.share <= 1 && f.tailShare >= 0 && f.tailShare <= 1 && f.requests >= 1);
  }
  const logging = findings.find((f) => f.kind === "sync_logging");
  assert.equal(logging.handler, "RemoteLogHandler");
  assert.equal(logging.callSite.function, "checkout");
});

test("hostile SQL and URLs come through verbatim, for the view to show as text", () => {
  const { findings } = parseFindings(load("findings"));
  const query = findings.find((f) => f.kind === "n_plus_one_query");
  assert.equal(query.statement, 'SELECT "<img src=x onerror=alert(2)>" FROM authors WHERE id = ?');
  assert.equal(query.countPerRequest, 6);
  const call = findings.find((f) => f.kind === "repeated_remote_call");
  assert.equal(call.url, "evil.example/<script>alert(3)</script>/items/{id}");
  assert.ok(call.title.includes("<script>alert(3)</script>"));
});

test("evidence links: the example's flame graph with the call site searched, and its span", () => {
  const { findings } = parseFindings(load("findings"));
  const logging = findings.find((f) => f.kind === "sync_logging");
  const [flame] = evidenceLinks(logging);
  assert.match(flame.href, /^\/profiles\/\d+\?q=checkout$/);
  const spanOnly = findings.find((f) => f.kind === "n_plus_one_query");
  assert.deepEqual(evidenceLinks(spanOnly), [], "no kept profile: nothing to link to");
  const linked = evidenceLinks({ ...spanOnly, callSite: { function: "a&b=c", file: "f", line: 1 }, examples: [{ request: 3, profile: 9, spans: ["00000001000000ff"] }] });
  assert.deepEqual(linked.map((l) => l.href), ["/profiles/9?q=a%26b%3Dc", "/profiles/9?view=correlation&span=00000001000000ff"]);
});

test("one route's findings, routes split back, and bad shapes refused", () => {
  const { findings } = parseFindings(load("findings_route"));
  assert.equal(findings.length, 1);
  assert.equal(findings[0].route, "GET /feed");
  assert.deepEqual(splitRoute("GET /a b"), { method: "GET", route: "/a b" });
  assert.throws(() => parseFindings({ findings: [{ kind: "x" }] }), ApiShapeError);
  assert.throws(() => parseFindings({}), ApiShapeError);
  assert.deepEqual(parseFindings({ findings: [], requests: 0 }), { findings: [], requests: 0, notes: [] });
  assert.deepEqual(parseFindings({ findings: [], requests: 0, notes: ["no plans", 3] }).notes, ["no plans"]);
});

test("the routes page shows the top finding of each route", () => {
  const { findings } = parseFindings(load("findings"));
  const top = topPerRoute(findings);
  assert.deepEqual(top.map((f) => f.route), [...new Set(findings.map((f) => f.route))]);
  assert.equal(top.length, 2);
  assert.ok(top.every((f) => f === findings.find((g) => g.route === f.route)));
});
