"""The first hour, in headless Chromium on what ``profviz demo`` records: its promises hold.

One real demo run for the module (the shop, its load, the middleware with spans, no attach):
/checkout's "why is the tail slow?" names the logging handler's lock, the Spans tab of the N+1,
connection-per-query and full-scan routes shows their SQL, and a sampler profile diffs against a
pyinstrument profile of the same route with functions on both sides, and every profile view draws
a demo profile.

The README's screenshots of these views come from here:
``PROFVIZ_SCREENSHOTS=docs/screenshots python -m pytest tests/test_demo_browser.py`` (and ``tests/test_load.py`` for ``load.png``).
"""

from __future__ import annotations

import os
import re

import pytest
import requests

from profviz.store import open_store

from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures
from .browser_support import running_server

pytestmark = pytest.mark.browser

SCREENSHOTS = os.environ.get("PROFVIZ_SCREENSHOTS")  # a directory for the README's screenshots


def screenshot(page, name: str) -> None:
    """With PROFVIZ_SCREENSHOTS set, save the viewport (1280x800) there as ``name``."""
    if SCREENSHOTS:
        page.screenshot(path=os.path.join(SCREENSHOTS, name))


@pytest.fixture(scope="module")
def demo(demo_run):
    """(UI base URL, store) of the session's demo run."""
    store = open_store(demo_run[0])
    with running_server(store) as url:
        yield url, store


def test_checkout_tail_is_the_logging_handlers_lock(demo, page):
    url, store = demo
    page.goto(f"{url}/routes")
    page.wait_for_function("() => +document.querySelector('#routes-latency').dataset.points > 0")
    slowest_tail = max(requests.get(f"{url}/api/routes", timeout=30).json()["routes"], key=lambda r: r["p95_ms"])["route"]
    assert page.eval_on_selector("#route-table tbody tr", "row => row.cells[0].textContent") == slowest_tail, "the slowest tail first"
    screenshot(page, "routes.png")
    page.goto(f"{url}/routes/GET?route=/checkout")
    page.wait_for_selector("#tail-flame[data-nodes-drawn]", timeout=30_000)
    headline = page.inner_text("#tail-headline")
    assert re.search(r"Compared \d+ tail and \d+ typical", headline), headline
    frames = page.eval_on_selector_all("#tail-frames tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    # The tail waits for the remote log handler's lock: the sampler sees the wait in Handler.acquire,
    # pyinstrument in the C lock it calls (RLock.acquire). Which of the two leads by self time depends on
    # which profiler captured the run's tail requests; Handler.acquire's total holds the wait either way,
    # most of the time the tail spends beyond typical requests.
    assert frames[0][0] in ("Handler.acquire", "RLock.acquire"), frames[:3]
    diff = requests.get(f"{url}/api/routes/tail", params={"route": "/checkout", "method": "GET"}, timeout=30).json()["diff"]
    handler = next(f for f in diff["frames"] if f["function"] == "Handler.acquire")
    print("Handler.acquire extra total", handler["extra_total_ms"], "of the tail's extra", diff["extra_ms"])
    assert handler["extra_total_ms"] >= 0.5 * diff["extra_ms"] > 0, (handler, diff["extra_ms"])
    page.evaluate("() => window.scrollTo(0, document.querySelector('#route-tail').getBoundingClientRect().top + window.scrollY - 8)")
    screenshot(page, "route.png")
    (slowest, *_) = store.query_requests(route="/checkout", slowest=1, with_profile=True)
    page.goto(f"{url}/profiles/{slowest.profile_id}")
    page.wait_for_selector("#flame[data-nodes-drawn]", timeout=30_000)
    screenshot(page, "request.png")


@pytest.mark.parametrize("route, sql", [
    ("/posts", "SELECT id, name, email FROM authors WHERE id = ?"),
    ("/report", "SELECT COUNT(*) FROM authors"),
    ("/search/slow", "SELECT id, title FROM posts WHERE title LIKE ?"),
])
def test_spans_tab_shows_the_routes_sql(demo, page, route, sql):
    url, store = demo
    (row, *_) = store.query_requests(route=route, slowest=1, with_profile=True)
    spans = requests.get(f"{url}/api/profiles/{row.profile_id}/spans", timeout=30).json()["spans"]
    names = [s["name"] for s in spans]
    assert f"GET {route}" in names and names[-1] == "(no span)", names
    query = next(s for s in spans if str(s["attributes"].get("db.statement", "")).startswith(sql))
    page.goto(f"{url}/profiles/{row.profile_id}?view=correlation&span={query['span_id']}")
    page.wait_for_selector("#span-attributes tr[data-key='db.statement'] code", timeout=30_000)
    assert page.text_content("#span-attributes tr[data-key='db.statement'] code").startswith(sql)
    if route == "/posts":
        screenshot(page, "correlation.png")


def test_a_sampler_profile_diffs_against_a_pyinstrument_profile(demo, page):
    url, store = demo
    by_route: dict[str, dict[str, int]] = {}
    for row in store.query_requests(with_profile=True, limit=10_000):
        capture = store.profile_meta(row.profile_id)["labels"].get("capture")
        by_route.setdefault(row.route, {}).setdefault("deep" if capture == "deep" else "sampler", row.profile_id)
    # 5 % of requests get a pyinstrument profile: some route has both kinds (one route alone may have no deep one)
    profiles = next(kinds for route, kinds in sorted(by_route.items()) if {"deep", "sampler"} <= set(kinds))
    diff = requests.get(f"{url}/api/diff", params={"a": profiles["sampler"], "b": profiles["deep"], "limit": 1000}, timeout=30).json()
    both = [n for n in diff["nodes"] if n["fn"] >= 0 and n["a_total_ns"] > 0 and n["b_total_ns"] > 0]
    assert len(both) >= 10, "the same functions, named alike by both collectors, on both sides"
    page.goto(f"{url}/profiles/{profiles['sampler']}?view=diff&b={profiles['deep']}")
    page.wait_for_selector("#diff-flame[data-nodes-drawn]", timeout=30_000)
    sides = page.locator("#diff-sides .diff-side")
    assert sides.count() == 2
    page.wait_for_selector("#diff-increases[data-rows]")
    assert int(page.get_attribute("#diff-increases", "data-rows")) > 0
    assert int(page.get_attribute("#diff-decreases", "data-rows")) > 0


TABLE_FITS = """() => [...document.querySelectorAll('.table-wrap')].filter((w) => w.offsetParent !== null)
    .map((w) => ({ id: w.id, over: w.scrollWidth - w.clientWidth }))"""


def test_tables_fit_a_1400_px_window(demo, page):
    url, store = demo
    page.set_viewport_size({"width": 1400, "height": 900})
    (slowest, *_) = store.query_requests(route="/checkout", slowest=1, with_profile=True)
    for path, ready in (
        ("/routes", "#route-table[data-rows]"),
        ("/routes/GET?route=/checkout", "#tail-frames[data-rows]"),
        (f"/profiles/{slowest.profile_id}?view=top", "#top-table[data-rows]"),
    ):
        page.goto(url + path)
        page.wait_for_selector(ready, timeout=30_000)
        tables = page.evaluate(TABLE_FITS)
        assert tables and all(t["over"] <= 1 for t in tables), (path, tables)


PAINTED = """([name, after]) => ((window.__profviz && window.__profviz.events) || []).slice(after).some((e) => e.name === name)"""


def painted(page, url: str, event: str, name: str) -> dict:
    """Open ``url``, wait until the view says ``event`` (it has drawn), save it as ``name``; the event."""
    page.goto(url)
    page.wait_for_function(PAINTED, arg=[event, 0], timeout=30_000)
    page.wait_for_timeout(300)  # transitions end
    screenshot(page, name)
    return next(e for e in page.evaluate("() => window.__profviz.events") if e["name"] == event)


def test_every_view_draws_a_demo_profile(demo, page):
    """The list, and the flame graph, icicle, flame chart, sandwich and top functions of the slowest
    /checkout request, and the diff of the N+1 route against its fix, each draw what it should."""
    url, store = demo
    assert painted(page, f"{url}/", "list-painted", "list.png")["count"] >= 10
    (checkout, *_) = store.query_requests(route="/checkout", slowest=1, with_profile=True)
    profile = f"{url}/profiles/{checkout.profile_id}"
    tree = requests.get(f"{url}/api/profiles/{checkout.profile_id}/flamegraph", timeout=30).json()
    functions = {f["name"]: f for f in tree["functions"]}
    acquire = functions["Handler.acquire"]
    painted(page, profile, "flame-painted", "flamegraph.png")
    assert int(page.get_attribute("#flame", "data-nodes-drawn")) >= 10
    painted(page, f"{profile}?view=icicle&q=acquire", "flame-painted", "icicle.png")
    page.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")
    painted(page, f"{profile}?view=chart", "chart-painted", "flamechart.png")
    painted(page, f"{profile}?view=sandwich&fn=Handler.acquire&file={acquire['file']}", "sandwich-painted", "sandwich.png")
    assert "Handler.acquire" in page.inner_text("#sandwich-title")
    assert painted(page, f"{profile}?view=top", "top-painted", "top-functions.png")["rows"] >= 10
    (fixed, *_) = store.query_requests(route="/posts/fast", slowest=1, with_profile=True)
    (slow, *_) = store.query_requests(route="/posts", slowest=1, with_profile=True)
    painted(page, f"{url}/profiles/{fixed.profile_id}?view=diff&b={slow.profile_id}", "diff-painted", "diff.png")
    assert int(page.get_attribute("#diff-increases", "data-rows")) > 0


def test_the_demo_routes_page_opens_on_its_findings_and_their_evidence(demo, page):
    """The routes page's first panel names the seeded bottlenecks; /posts's N+1 card links to its
    span in the correlation view, which shows the repeated statement."""
    url, _ = demo
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{url}/routes")
    page.wait_for_selector("#routes-findings[data-findings]")
    kinds = page.eval_on_selector_all("#routes-findings .finding", "cards => cards.map(c => c.dataset.kind)")
    assert {"sync_logging", "n_plus_one_query", "connection_setup"} <= set(kinds), kinds
    screenshot(page, "findings.png")
    page.goto(f"{url}/routes/GET?route=/posts")
    page.wait_for_selector("#route-findings[data-findings]")
    first = page.locator("#route-findings .finding").first
    assert first.get_attribute("data-kind") == "n_plus_one_query"
    first.locator(".finding-links a[data-link='span']").click()
    page.wait_for_selector("#span-attributes tr[data-key='db.statement'] code", timeout=30_000)
    assert page.text_content("#span-attributes tr[data-key='db.statement'] code") == "SELECT id, name, email FROM authors WHERE id = ?"
