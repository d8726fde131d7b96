/**
 * The routes view's model (web/js/model/routes.js): the routes/requests fixtures the real server
 * emitted (tests/fixtures/api/routes*.json, requests.json, request_detail.json; written by
 * tests/test_contract.py from tests/fixtures/api_requests.py) and the routes pages' URL state.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import {
  parseRouteTable, parseRouteLatency, parseUtilisation, parseRequestList, parseRequestDetail, parseTail, parseLoadCurve,
  parseRoutesLocation, buildRoutesLocation, routeHref, routesHref, windowApiParams, epochNs, chartedRoutes,
  parseOrigins, keepOrigin, withOrigin, parseVersionTable, parseVersionsOfRoute,
} from "../js/model/routes.js";
import { ApiShapeError } from "../js/model/api.js";
import { checkTree, layoutFlame } from "../js/model/tree.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "fixtures", "api");
const load = (name) => JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8"));
const HOSTILE_ROUTE = '/posts/<script>alert("route")</script>';

test("route table: every route with its counts and percentiles, hostile names verbatim", () => {
  const table = parseRouteTable(load("routes"));
  assert.deepEqual(table.routes.map((r) => r.route), ["/checkout", "/feed", HOSTILE_ROUTE, "(unmatched)"], "the slowest P95 first");
  const checkout = table.routes[0];
  assert.equal(checkout.count, 100);
  assert.ok(checkout.p50 < checkout.p90 && checkout.p90 <= checkout.p95 && checkout.p95 <= checkout.p99 && checkout.p99 <= checkout.max);
  assert.equal(checkout.max, 145);
  assert.equal(table.routes.find((r) => r.route === HOSTILE_ROUTE).errorRate, 1);
  assert.ok(table.window.durationS >= 9.9 && table.window.end > table.window.start);
  assert.throws(() => parseRouteTable({ window: null, routes: [{ route: 1 }] }), ApiShapeError);
  assert.deepEqual(parseRouteTable({ window: null, routes: [] }), { window: null, routes: [], latency: "app", queueKnown: false, source: "rows" });
  assert.equal(table.source, "rows");
  assert.throws(() => parseRouteTable({ window: null, routes: [], source: "<img>" }), ApiShapeError);
  assert.equal(table.latency, "total", "queue times exist: total latency by default");
  assert.ok(table.queueKnown);
  const feed = table.routes.find((r) => r.route === "/feed");
  assert.equal(feed.p50, 102.5, "100 ms in the app plus 1..4 ms queued");
  assert.equal(feed.queueP50, 2.5);
  assert.equal(checkout.queueP95, null, "no /checkout request knew its queue time");
  assert.throws(() => parseRouteTable({ window: null, routes: [], latency: "<b>" }), ApiShapeError);
});

test("latency: log-spaced histogram covering every request, and the series", () => {
  const latency = parseRouteLatency(load("routes_latency"));
  assert.equal(latency.histogram.length, 8);
  assert.equal(latency.histogram.reduce((s, b) => s + b.count, 0), latency.count);
  assert.equal(latency.series.reduce((s, b) => s + b.count, 0), latency.count);
  for (let i = 1; i < latency.histogram.length; i++) assert.ok(Math.abs(latency.histogram[i].low - latency.histogram[i - 1].high) < 1e-2);
  const ratios = latency.histogram.map((b) => b.high / b.low);
  assert.ok(Math.max(...ratios) / Math.min(...ratios) < 1.01, "equal ratios: log-spaced bins");
  assert.equal(latency.bucketS, 2);
});

test("load curve: bands by utilisation at arrival, throughput bands, the knee and the headroom", () => {
  const all = parseLoadCurve(load("routes_load"));
  assert.equal(all.latency, "total");
  assert.equal(all.capacity, 4);
  assert.equal(all.requests, all.levels.reduce((s, l) => s + l.requests, 0));
  assert.equal(all.requests, all.throughput.reduce((s, l) => s + l.requests, 0));
  assert.ok(all.levels.every((l) => l.high === null || l.high > l.low));
  assert.ok(all.levels.every((l) => l.p50 <= l.p95 && l.p95 <= l.p99));
  assert.equal(all.knee, null, "a light load has no knee");
  assert.equal(all.trafficToKnee, null);
  assert.ok(all.headroom > 0.5 && Math.abs(all.headroom + all.peak - 1) < 1e-3);
  assert.equal(all.kneeFactor, 1.5);
  const route = parseLoadCurve(load("routes_load_route"));
  assert.equal(route.latency, "app");
  assert.equal(route.requests, 100, "only /checkout's requests, against every route's load");
  assert.throws(() => parseLoadCurve({ ...load("routes_load"), levels: [{ low: "x" }] }), ApiShapeError);
});

test("utilisation and requests", () => {
  const util = parseUtilisation(load("routes_utilisation"));
  assert.equal(util.capacity, 4);
  assert.equal(util.capacitySource, "configured");
  assert.ok(util.series.every((s) => s.utilisation >= 0 && s.utilisation <= 1 && s.busyMax >= 0));
  const requests = parseRequestList(load("requests"));
  assert.equal(requests.length, 6);
  assert.ok(requests.every((r) => r.queueMs === null && r.totalMs === r.durationMs), "the slowest are /checkout's, never queued");
  assert.deepEqual(requests.map((r) => r.durationMs), [...requests.map((r) => r.durationMs)].sort((a, b) => b - a));
  assert.equal(requests[0].profileId, null, "the slowest one kept no profile");
  assert.ok(requests[1].profileId > 0);
  const detail = parseRequestDetail(load("request_detail"));
  assert.equal(detail.route, "/checkout");
  assert.equal(detail.profile.capture, "tail");
  assert.equal(detail.profile.id, detail.profileId);
});

test("tail diff: per-request tree with widths from the tail, frames by extra self time", () => {
  const tail = parseTail(load("routes_tail"));
  assert.equal(tail.message, null);
  assert.equal(tail.tailProfileIds.length, 4);
  assert.equal(tail.diff.tailProfiles, 4);
  assert.equal(tail.diff.typicalProfiles, 4);
  const tree = tail.diff.tree;
  assert.deepEqual(checkTree(tree), []);
  assert.equal(tree.root.total, tree.info.tailNs);
  assert.equal(tree.root.aTotal, tree.info.typicalNs);
  assert.equal(tree.root.deltaNs, tree.root.bTotal - tree.root.aTotal);
  assert.ok(Math.abs(tree.root.deltaNs / 1e6 - tail.diff.extraMs) < 1e-3);
  const recv = tree.nodes.find((n) => n.name === "recv_into");
  assert.equal(recv.aTotal, 0);
  assert.equal(recv.deltaNs, recv.total);
  assert.ok(recv.wait === recv.total);
  assert.equal(tail.diff.frames[0].function, "recv_into");
  assert.ok(tail.diff.frames.every((f, i) => i === 0 || f.extraSelf <= tail.diff.frames[i - 1].extraSelf));
  const layout = layoutFlame(tree, 0, 0);
  assert.ok(layout.count >= 5);
  const few = parseTail(load("routes_tail_few"));
  assert.equal(few.diff, null);
  assert.match(few.message, /each side needs 2/);
  assert.doesNotMatch(few.message, /tail_min_requests|baseline_per_minute/);
  assert.equal(few.tailPercentile, 90);
  assert.deepEqual(few.typicalBand, [25, 75]);
  assert.equal(tail.tailPercentile, 95);
  assert.throws(() => parseTail({ ...load("routes_tail_few"), message: null }), ApiShapeError);
  const wrongBase = load("routes_tail");
  wrongBase.diff.tree.base = "a";
  assert.throws(() => parseTail(wrongBase), /expected "b"/);
});

test("routes URL state: routes with slashes, placeholders and markup survive a round trip", () => {
  for (const route of ["/posts/<int:post_id>", HOSTILE_ROUTE, "/a?b=c&d=#e f", "(unmatched)", "/static/app.js", "/%2F..%2F"]) {
    const href = routeHref(route, "POST", { preset: "1h" });
    assert.match(href, /^\/routes\/POST\?route=/);
    const url = new URL(href, "http://x");
    const state = parseRoutesLocation(url.pathname, url.search);
    assert.equal(state.page, "route");
    assert.equal(state.route, route);
    assert.equal(state.method, "POST");
    assert.deepEqual(state.window, { preset: "1h" });
    assert.deepEqual(state.problems, []);
    assert.equal(buildRoutesLocation(state), href);
  }
  const list = parseRoutesLocation("/routes", "?sort=-p95&from=1700000000.5&to=1700000060.25");
  assert.equal(list.page, "routes");
  assert.equal(list.sort, "p95");
  assert.equal(list.ascending, true);
  assert.deepEqual(list.window, { from: 1700000000.5, to: 1700000060.25 });
  assert.equal(buildRoutesLocation(list), "/routes?from=1700000000.5&to=1700000060.25&sort=-p95");
  assert.equal(routesHref({ preset: "all" }), "/routes");
  assert.equal(routesHref({ preset: "all" }, "app"), "/routes?lat=app");
  assert.equal(parseRoutesLocation("/routes", "?lat=app").latency, "app");
  assert.equal(parseRoutesLocation("/routes", "").latency, null, "no choice: the server's default");
  assert.match(parseRoutesLocation("/routes", "?lat=<b>").problems[0], /ignored lat=/);
  assert.equal(routeHref("/a", "GET", { preset: "all" }, "total"), "/routes/GET?route=%2Fa&lat=total");
  assert.equal(parseRoutesLocation("/profiles/3", "").page, null);
  const bad = parseRoutesLocation("/routes/<b>", "?w=7y&sort=evil&zoom=x&from=5");
  assert.equal(bad.method, "GET");
  assert.equal(bad.sort, "p95", "the slowest tails first by default");
  assert.deepEqual(bad.window, { preset: "all" });
  assert.equal(bad.problems.length, 5);
  const route = parseRoutesLocation("/routes/get", "?route=%2Fx&rsort=-cpu&fsort=extra_total&zoom=12");
  assert.equal(route.method, "GET");
  assert.equal(route.requestSort, "cpu");
  assert.equal(route.requestAscending, true);
  assert.equal(route.frameSort, "extra_total");
  assert.equal(route.zoom, "12");
  assert.equal(buildRoutesLocation(route), "/routes/GET?route=%2Fx&rsort=-cpu&fsort=extra_total&zoom=12");
});

test("window -> API parameters, epoch ns exact beyond 2^53", () => {
  assert.equal(epochNs(1700000000.123), "1700000000123000000");
  assert.equal(windowApiParams({ preset: "5m" }).toString(), "since=5m");
  assert.equal(windowApiParams({ preset: "24h" }).toString(), "since=24h");
  assert.equal(windowApiParams({ preset: "all" }).toString(), "");
  assert.equal(windowApiParams({ from: 1700000000.5, to: 1700000001 }).toString(), "since_ns=1700000000500000000&until_ns=1700000001000000000");
});

test("the latency chart draws the slowest routes, then the busiest", () => {
  const routes = Array.from({ length: 10 }, (_, i) => ({ route: `/r${i}`, p95: i === 9 ? 5000 : i, count: 100 - i }));
  const charted = chartedRoutes(routes, 6).map((r) => r.route);
  assert.deepEqual(charted.slice(0, 4), ["/r9", "/r8", "/r7", "/r6"], "the slowest, although the least busy");
  assert.deepEqual(charted.slice(4), ["/r0", "/r1"]);
});


test("origin filter: the labels the server lists, hostile values verbatim, carried by URLs and API parameters", () => {
  const origins = parseOrigins(load("routes_origins"));
  assert.deepEqual(origins, { host: ['<img src=x onerror=alert("host")>', "web-1"], version: ["1.4", "1.5"] });
  assert.throws(() => parseOrigins({ origins: { host: [3] } }), ApiShapeError);
  assert.deepEqual(parseRouteTable(load("routes_host_filtered")).routes.map((r) => r.route), ["/checkout"]);
  const sketched = parseRouteTable(load("routes_sketches"));
  const exact = parseRouteTable(load("routes"));
  assert.equal(sketched.source, "sketches");
  assert.ok(sketched.queueKnown && sketched.latency === "total", "the sketches of total latency: queue times were known");
  assert.ok(sketched.routes.every((r) => r.queueP95 === null), "sketches keep no queue percentiles");
  assert.deepEqual(sketched.routes.map((r) => [r.route, r.count, r.max]), exact.routes.map((r) => [r.route, r.count, r.max]));
  const state = parseRoutesLocation("/routes", "?w=1h&host=web-1&version=1.5&team=x");
  assert.deepEqual(state.window, { preset: "1h", origin: { host: "web-1", version: "1.5" } });
  assert.equal(buildRoutesLocation(state), "/routes?w=1h&host=web-1&version=1.5");
  assert.equal(windowApiParams(state.window).toString(), "since=1h&host=web-1&version=1.5");
  assert.match(routeHref("/a", "GET", state.window), /host=web-1&version=1\.5/);
  assert.deepEqual(keepOrigin({ preset: "5m" }, state.window), { preset: "5m", origin: { host: "web-1", version: "1.5" } });
  assert.deepEqual(withOrigin(state.window, { host: "", version: "1.4" }), { preset: "1h", origin: { version: "1.4" } });
  assert.deepEqual(withOrigin(state.window, {}), { preset: "1h" });
});


test("versions: each route in both versions, and a route's slow requests of B against A's in the tail's shape", () => {
  const table = parseVersionTable(load("routes_versions"));
  assert.equal(table.a, "1.4");
  const checkout = table.routes.find((r) => r.route === "/checkout");
  assert.equal(checkout.a.count, 50);
  assert.equal(checkout.b.count, 50);
  assert.ok(checkout.p95Change > 0.2 && checkout.p95Change < 0.25);
  assert.ok(table.routes.some((r) => r.a === null || r.b === null), "a route one version alone served");
  const json = load("routes_versions_route");
  const tail = parseTail(json);
  assert.ok(tail.diff && tail.diff.frames.length > 0 && tail.tailPercentile === 90);
  const versions = parseVersionsOfRoute(json);
  assert.deepEqual([versions.a, versions.b, versions.aStats.count, versions.bStats.count], ["1.4", "1.5", 50, 50]);
  assert.throws(() => parseVersionsOfRoute({ versions: null }), ApiShapeError);
  const state = parseRoutesLocation("/routes/GET", "?route=/checkout&va=1.4&vb=1.5");
  assert.deepEqual(state.compare, { a: "1.4", b: "1.5" });
  assert.match(buildRoutesLocation(state), /va=1\.4&vb=1\.5/);
  assert.equal(parseRoutesLocation("/routes/GET", "?route=/x&va=1.4").compare, null);
});
