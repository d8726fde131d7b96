"""The routes view in headless Chromium on the real sample shop.

One store for the module, filled the way production fills it: the sample shop (``samples/profviz_shop``,
a smaller database than its 200k-post default, 20k posts, for speed) wrapped in the real
middleware (``profviz.flask.init_app``: sampler, tail capture over the running P95, typical
baseline profiles) on a real waitress server on 127.0.0.1, under bounded real load
(``profviz_shop.loadgen.run_load``) where ``/checkout`` has a real slow tail: a cart of 10 items
logs 12 lines synchronously to the slow log sink instead of 3. Plus a plain WSGI app whose route
function names its route with markup, and unmatched paths with markup. Then the real profviz
server and Chromium: the route table against what was sent and against ``profviz routes --json``,
a route's charts and slowest requests, a request's flame graph, and the tail-vs-typical diff,
whose top function must lie under the slow-log handler (``Handler.handle``: its lock and ``emit``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner
from werkzeug.exceptions import NotFound
from werkzeug.test import Client

import profviz.flask
from profviz.analysis.calltree import build_call_tree
from profviz.cli import main
from profviz.routes import UNMATCHED_ROUTE
from profviz.store import Store, open_store
from profviz.wsgi import ProfilerMiddleware
from profviz_shop.app import create_app as create_shop
from profviz_shop.data import build_database
from profviz_shop.loadgen import run_load, weighted_paths
from profviz_shop.serving import waitress_in_thread
from profviz_shop.services import ExternalService, SlowLogSink

from .browser_support import running_server
from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.browser

SHOP_ROWS = 20_000
HOSTILE_ROUTE = "/posts/<script>window.__pwned='route'</script>"
HOSTILE_PATHS = ["/posts/<script>window.__pwned='path'</script>", "/x/\"><img/src=x/onerror=window.__pwned='img'>"]
MIX = {
    "/checkout?items=1": 190,
    "/checkout?items=10": 10,
    "/health": 40,
    "/posts/fast": 30,
    "/posts/42": 15,
    "/posts/7": 15,
    "/search/fast?q=amber": 20,
    "/search/slow?q=amber": 20,
}


def rule_of(shop, path: str) -> str:
    """The Flask rule a path matches (what the middleware names the route), or (unmatched)."""
    try:
        rule, _ = shop.url_map.bind("127.0.0.1").match(path.split("?")[0], return_rule=True)
        return rule.rule
    except NotFound:
        return UNMATCHED_ROUTE


def hostile_wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def record_shop_load(store: Store, tmp: Path) -> dict[str, int]:
    """Run the profiled sample shop under the load mix into ``store``; return {route: requests sent}."""
    db = tmp / "shop.db"
    build_database(db, rows=SHOP_ROWS)
    paths = weighted_paths(MIX, sum(MIX.values()), seed=3) + HOSTILE_PATHS * 2
    with SlowLogSink(delay_s=0.02) as sink, ExternalService(delay_s=0.005) as external:
        shop = create_shop(db, log_sink_url=sink.url, external_url=external.url)
        middleware = profviz.flask.init_app(shop, store=store, tail_percentile=95, tail_min_requests=20,
                                            baseline_per_minute=600, tail_max_per_minute=600, worker_threads=4)
        with waitress_in_thread(shop, threads=4) as server:
            result = run_load(f"http://127.0.0.1:{server.effective_port}", paths, requests=len(paths), concurrency=4, max_seconds=60)
        assert middleware.flush()
        middleware.close()
    assert result.sent == len(paths) and not result.hit_time_limit
    assert all(r.status is not None for r in result.records), [r.error for r in result.records if r.status is None][:3]
    sent = Counter(rule_of(shop, r.path) for r in result.records)
    named = ProfilerMiddleware(hostile_wsgi_app, store=store, sampler=False, route_fn=lambda environ: HOSTILE_ROUTE)
    client = Client(named)
    for _ in range(3):
        client.get("/named").close()
    assert named.flush()
    named.close()
    sent[HOSTILE_ROUTE] = 3
    return dict(sent)


@pytest.fixture(scope="module")
def shop_store(tmp_path_factory):
    """(store, {route: requests sent}) after real load on the profiled sample shop."""
    tmp = tmp_path_factory.mktemp("routes_ui")
    store = open_store(tmp / "store.db")
    sent = record_shop_load(store, tmp)
    yield store, sent
    store.close()


@pytest.fixture(scope="module")
def site(shop_store):
    store, sent = shop_store
    with running_server(store) as url:
        yield url, store, sent


def to_ms(text: str) -> float:
    """A formatDuration() text back to ms: "62.3 ms", "1.20 s", "789 µs"."""
    value, unit = re.fullmatch(r"([\d.]+) (ns|µs|ms|s|min)", text.strip()).groups()
    return float(value) * {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1e3, "min": 6e4}[unit]


def shown_ms(text: str, expected_ms: float) -> bool:
    """The shown text is ``expected_ms`` at display precision (3 significant digits or so)."""
    return abs(to_ms(text) - expected_ms) <= max(0.051, expected_ms * 0.006)


def painted_pixels(page, selector: str) -> int:
    return page.evaluate(
        """(selector) => {
            const c = document.querySelector(selector);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
            return n;
        }""",
        selector,
    )


def table_rows(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def test_route_table_matches_the_load_and_the_cli(site, page):
    url, store, sent = site
    page.goto(f"{url}/routes")
    page.wait_for_selector("#route-table[data-rows]")
    rows = {(r[0], r[1]): r for r in table_rows(page, "#route-table")}
    assert {route: int(r[2].replace(",", "")) for (route, _), r in rows.items()} == sent
    cli = CliRunner().invoke(main, ["routes", "--json", "--store", str(store.path)])
    assert cli.exit_code == 0, cli.output
    for expected in json.loads(cli.output):
        row = rows[(expected["route"], expected["method"])]
        for column, key in ((5, "p50_ms"), (6, "p90_ms"), (7, "p95_ms"), (8, "p99_ms"), (9, "max_ms")):
            assert shown_ms(row[column], expected[key]), (expected["route"], key, row[column], expected[key])
    checkout = rows[("/checkout", "GET")]
    assert to_ms(checkout[9]) > 3 * to_ms(checkout[5]), "the big carts make a real tail"
    # the hostile route name and the unmatched hostile paths are text
    assert page.locator("#route-table bdi.route-name", has_text="__pwned='route'").inner_text() == HOSTILE_ROUTE
    assert page.locator("#route-table img, #route-table script").count() == 0
    # the slowest tail first by default; sorting is in the URL
    assert table_rows(page, "#route-table")[0][0] == "/checkout"
    page.click("#route-table th[data-key='count']")
    assert parse_qs(urlparse(page.url).query)["sort"] == ["count"]
    first = table_rows(page, "#route-table")[0]
    assert first[0] == max(sent, key=sent.get)
    page.wait_for_function("() => +document.querySelector('#routes-latency').dataset.points > 0")
    assert int(page.get_attribute("#routes-utilisation", "data-points")) > 0
    assert page.locator("#routes-slowest tbody tr").count() == 15
    # the last 5 minutes hold everything (the load just ran); the preset goes in the URL
    page.click(".routes-window button[data-window='5m']")
    page.wait_for_function("() => new URL(location.href).searchParams.get('w') === '5m'")
    page.wait_for_selector(".routes-window button[data-window='5m'][aria-pressed='true']")
    page.wait_for_selector("#route-table:not(.loading)")
    assert page.locator("#route-table tbody tr").count() == len(sent)


def test_past_a_million_requests_the_table_comes_from_sketches_and_says_so(site, page, monkeypatch):
    """The table past EXACT_LIMIT requests (lowered here) merges the latency sketches: the same routes
    and counts, the max exact, and a note says where the percentiles came from."""
    from profviz.analysis import routes as route_analysis

    url, _, sent = site
    page.goto(f"{url}/routes")
    page.wait_for_selector("#route-table[data-rows]")
    assert page.locator("#routes-source").count() == 0
    exact = {(r[0], r[1]): r for r in table_rows(page, "#route-table")}
    monkeypatch.setattr(route_analysis, "EXACT_LIMIT", 10)
    page.reload()
    page.wait_for_selector("#routes-source")
    assert "latency sketches" in page.inner_text("#routes-source")
    sketched = {(r[0], r[1]): r for r in table_rows(page, "#route-table")}
    assert {route: int(r[2].replace(",", "")) for (route, _), r in sketched.items()} == sent
    assert all(sketched[key][9] == exact[key][9] for key in exact), "the max is exact in both"


def test_route_page_charts_requests_and_tail_diff(site, page):
    url, store, _ = site
    page.goto(f"{url}/routes")
    page.wait_for_selector("#route-table[data-rows]")
    page.locator("#route-table tbody tr", has_text="/checkout").first.click()
    page.wait_for_selector("#route-histogram[data-bars]")
    assert urlparse(page.url).path == "/routes/GET" and parse_qs(urlparse(page.url).query)["route"] == ["/checkout"]
    assert int(page.get_attribute("#route-histogram", "data-bars")) >= 2
    assert page.locator("#route-histogram svg rect").count() >= 2
    page.wait_for_function("() => +document.querySelector('#route-latency').dataset.points > 0")
    assert int(page.get_attribute("#route-latency", "data-dots")) >= 10, "a dot per slow request"
    requests = table_rows(page, "#route-requests")
    slowest = store.query_requests(route="/checkout", method="GET", slowest=50)
    assert [int(r[0]) for r in requests] == [r.id for r in slowest]
    assert [to_ms(r[3]) for r in requests] == sorted((to_ms(r[3]) for r in requests), reverse=True)
    # why is the tail slow?
    page.wait_for_selector("#tail-flame[data-nodes-drawn]", timeout=20_000)
    assert painted_pixels(page, "#tail-flame canvas") > 20_000
    headline = page.inner_text("#tail-headline")
    tail_n, typical_n = map(int, re.search(r"Compared (\d+) tail and (\d+) typical", headline).groups())
    assert tail_n >= 5 and typical_n >= 5
    extra_ms = to_ms(re.search(r"\+([\d.]+ m?s) per request", headline).group(1))
    frames = table_rows(page, "#tail-frames")
    top_function = frames[0][0]
    tail_ids = [r.profile_id for r in store.query_requests(route="/checkout", slowest=10, with_profile=True)]
    # every log line goes through the one remote log handler: Handler.handle takes its lock and emits
    # (a synchronous POST) under it, so a big cart waits for the lock and the sink once per line
    under_handler = functions_below(store, tail_ids, "Handler.handle")
    assert top_function in under_handler, (top_function, sorted(under_handler)[:20])
    page.evaluate("() => window.scrollTo(0, document.querySelector('#route-tail').getBoundingClientRect().top + window.scrollY - 8)")
    page.click("#tail-frames th[data-key='extra_total']")
    assert parse_qs(urlparse(page.url).query)["fsort"] == ["extra_total"]
    handler = next(r for r in table_rows(page, "#tail-frames") if r[0] == "Handler.handle")
    assert to_ms(handler[3].lstrip("+")) > 0.7 * extra_ms, (handler, extra_ms)
    # a request's flame graph
    link = page.locator("#route-requests a.profile-link").first
    profile_id = link.get_attribute("data-profile")
    link.click()
    page.wait_for_url(f"{url}/profiles/{profile_id}")
    page.wait_for_selector("#flame[data-nodes-drawn]")
    assert painted_pixels(page, "#flame canvas") > 5_000
    assert page.inner_text("#request-line #request-route-link") == "/checkout"
    assert "GET /checkout" in page.inner_text("#request-line")


def functions_below(store, profile_ids, name: str) -> set[str]:
    """Functions called (directly or not) under ``name`` in the given profiles."""
    found: set[str] = set()
    for profile_id in profile_ids:
        tree = build_call_tree(store.load_profile(profile_id))
        nodes = tree.nodes
        names = nodes.functions.names
        for node in range(1, nodes.size):
            ancestor = int(nodes.parent[node])
            while ancestor > 0:
                if names[nodes.function[ancestor]] == name:
                    found.add(names[nodes.function[node]])
                    break
                ancestor = int(nodes.parent[ancestor])
    return found


def test_hostile_routes_and_paths_are_text_and_too_few_profiles_say_so(site, page):
    url, _, _ = site
    page.goto(f"{url}/routes")
    page.wait_for_selector("#route-table[data-rows]")
    page.locator("#route-table tbody tr", has_text="__pwned='route'").click()
    page.wait_for_selector("#tail-message .tail-few")
    assert page.inner_text("#route-title") == HOSTILE_ROUTE
    message = page.inner_text("#tail-message")
    assert "Not enough profiled requests to compare yet" in message and "each side needs 2" in message
    assert "tail_min_requests" not in message and "baseline_per_minute" not in message  # no internal option names
    page.goto(f"{url}/routes/GET?route=(unmatched)")
    page.wait_for_selector("#route-requests[data-rows]")
    paths = {r[1] for r in table_rows(page, "#route-requests")}
    assert paths == set(HOSTILE_PATHS)
    assert page.locator("#route-requests img, #route-requests script").count() == 0
    # a brushed window goes in the URL and a copied link reproduces it
    box = page.locator("#route-latency svg").bounding_box()
    page.mouse.move(box["x"] + 80, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 30, box["y"] + 60, steps=5)
    page.mouse.up()
    page.wait_for_selector("#routes-window-chip")
    query = parse_qs(urlparse(page.url).query)
    assert float(query["to"][0]) > float(query["from"][0]) and query["route"] == ["(unmatched)"]
    page.goto(page.url)
    page.wait_for_selector("#routes-window-chip")



def test_queue_times_give_total_latency_by_default_and_the_switch_shows_the_apps_alone(tmp_path, page):
    """Requests a proxy stamped (queue_ns): the route table's percentiles are totals, with the
    queued P95 beside them; "App only" recomputes them without the queue, kept in the URL; the
    route page's stats and request list show total, queued and app times."""
    from profviz.model import RequestRow

    store = open_store(tmp_path / "q.db")
    start = 1_764_000_000 * 10**9
    ms = 1_000_000
    rows = [RequestRow(1, 2, "/slow", "GET", "/slow", 200, start + i * 50 * ms, 40 * ms, cpu_ns=ms, queue_ns=(i % 20) * 5 * ms,
                       labels={"capacity": 2}) for i in range(100)]
    store.insert_requests(rows)
    with running_server(store) as url:
        page.goto(f"{url}/routes?w=all")
        page.wait_for_selector("#route-table[data-rows]")
        page.wait_for_selector("#latency-switch button[data-latency='total'][aria-pressed='true']")
        headers = page.eval_on_selector_all("#route-table thead th", "ths => ths.map(t => t.textContent.replace(/ [▲▼]$/, \"\"))")
        assert "Queued P95" in headers
        (row,) = table_rows(page, "#route-table")
        p95_total = to_ms(row[headers.index("P95")])
        assert shown_ms(row[headers.index("Queued P95")], 90.25) and shown_ms(row[headers.index("P95")], 130.25), row
        page.click("#latency-switch button[data-latency='app']")
        page.wait_for_function("() => new URL(location.href).searchParams.get('lat') === 'app'")
        page.wait_for_selector("#latency-switch button[data-latency='app'][aria-pressed='true']")
        page.wait_for_function("() => document.querySelector('#route-table tbody tr td:nth-child(8)').textContent.trim() === '40.0 ms'")
        assert to_ms(table_rows(page, "#route-table")[0][headers.index("P95")]) < p95_total
        assert "app's time" in page.inner_text("#routes-latency-kind")
        page.goto(f"{url}/routes/GET?route=/slow")
        page.wait_for_selector("#route-requests[data-rows]")
        assert shown_ms(page.inner_text("[data-stat='queued p95'] .stat-value"), 90.25)
        request_headers = page.eval_on_selector_all("#route-requests thead th", "ths => ths.map(t => t.textContent.replace(/ [▲▼]$/, \"\"))")
        assert {"Total", "Queued", "App"} <= set(request_headers), request_headers
        first = table_rows(page, "#route-requests")[0]
        assert shown_ms(first[request_headers.index("Total")], 135) and shown_ms(first[request_headers.index("App")], 40)
    store.close()


def test_the_origin_filter_narrows_every_panel_and_shows_hostile_labels_as_text(tmp_path, page):
    """Requests of two hosts (one named with markup) and two versions: the routes page offers a
    select per label, picking a host narrows the route table and is kept in the URL and in the
    links to a route's page, whose figures count that host's requests only."""
    from profviz.model import RequestRow

    hostile = "<img src=x onerror=window.__pwned='host'>"
    store = open_store(tmp_path / "o.db")
    start = 1_764_000_000 * 10**9
    ms = 1_000_000
    rows = [RequestRow(1, 2, "/pay" if i % 4 else "/cart", "GET", "/pay", 200, start + i * 50 * ms, (20 + i % 7) * ms,
                       labels={"host": "web-1" if i % 2 else hostile, "version": "1.4" if i < 60 else "1.5"}) for i in range(100)]
    store.insert_requests(rows)
    with running_server(store) as url:
        page.goto(f"{url}/routes?w=all")
        page.wait_for_selector("#route-table[data-rows]")
        page.wait_for_selector("#origin-host")
        options = page.eval_on_selector_all("#origin-host option", "os => os.map(o => o.textContent)")
        assert options == ["all hosts", hostile, "web-1"]
        assert page.eval_on_selector_all("#routes-origin img", "imgs => imgs.length") == 0
        assert page.evaluate("() => window.__pwned") is None
        counts = {r[0]: r for r in table_rows(page, "#route-table")}
        page.select_option("#origin-host", "web-1")
        page.wait_for_function("() => new URL(location.href).searchParams.get('host') === 'web-1'")
        page.wait_for_function("() => [...document.querySelectorAll('#route-table tbody tr')].length === 1")
        (row,) = table_rows(page, "#route-table")
        headers = page.eval_on_selector_all("#route-table thead th", "ths => ths.map(t => t.textContent.replace(/ [▲▼]$/, \"\"))")
        assert row[headers.index("Route")] == "/pay" and row[headers.index("Requests")] == "50", (row, counts)
        page.select_option("#origin-version", "1.5")
        page.wait_for_function("() => new URL(location.href).searchParams.get('version') === '1.5'")
        page.wait_for_function("() => document.querySelector('#route-table tbody tr td:nth-child(3)').textContent.trim() === '20'")
        page.click("#route-table tbody tr a")
        page.wait_for_selector("#route-requests[data-rows]")
        assert "host=web-1" in page.url and "version=1.5" in page.url
        assert page.inner_text("[data-stat='requests'] .stat-value").strip() == "20"
    store.close()


def test_the_route_page_compares_two_versions_and_names_what_the_deploy_made_slower(tmp_path, page):
    """Version 1.5 of /checkout waits on a synchronous audit log that 1.4 did not have: choosing
    "1.5's slow requests against 1.4's" shows both P95s and puts audit_log at the top of the diff."""
    from tests.test_versions import fill

    path = tmp_path / "v.db"
    fill(path)
    store = open_store(path)
    with running_server(store) as url:
        page.goto(f"{url}/routes/POST?route=/checkout")
        page.wait_for_selector("#tail-headline")
        page.wait_for_selector("#compare-versions")
        page.select_option("#compare-versions", label="version 1.5's slow requests against 1.4's")
        page.wait_for_selector("#versions-summary")
        page.wait_for_function("() => document.querySelector('#tail-headline').textContent.includes('one of 1.5')")
        assert "va=1.4" in page.url and "vb=1.5" in page.url
        summary = page.inner_text("#versions-summary")
        assert "P95 of version 1.4" in summary and "of 1.5" in summary and "+" in summary
        top = table_rows(page, "#tail-frames")[0]
        assert top[0] == "audit_log", top
        page.reload()
        page.wait_for_selector("#versions-summary")
        assert page.eval_on_selector("#compare-versions", "s => s.value") == '["1.4","1.5"]'
    store.close()
