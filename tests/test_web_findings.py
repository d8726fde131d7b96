"""The findings panel in headless Chromium, on the contract store (tests/fixtures/api_requests.py):
cards with their evidence, hostile SQL and URLs shown as text, and links that open the evidence."""

from __future__ import annotations

import pytest

from profviz.store import open_store
from tests.fixtures.api_requests import HOSTILE_URL, store_contract_requests

from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures
from .browser_support import running_server

pytestmark = pytest.mark.browser

HOSTILE_STATEMENT = 'SELECT "<img src=x onerror=alert(2)>" FROM authors WHERE id = ?'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("findings_ui") / "store.db")
    store_contract_requests(store)
    with running_server(store) as url:
        yield url
    store.close()


def cards(page, box: str) -> list[dict]:
    return page.eval_on_selector_all(f"{box} .finding", """cards => cards.map(c => ({
        kind: c.dataset.kind, title: c.querySelector('.finding-title').textContent,
        evidence: [...c.querySelectorAll('.finding-evidence dd')].map(d => d.textContent),
        links: [...c.querySelectorAll('.finding-links a')].map(a => a.getAttribute('href')) }))""")


def test_the_routes_page_lists_what_to_fix_first_with_hostile_text_as_text(site, page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{site}/routes")
    page.wait_for_selector("#routes-findings[data-findings]")
    shown = cards(page, "#routes-findings")
    assert len(shown) == 2 and shown[0]["kind"] == "sync_logging"  # the top finding of each route
    page.goto(f"{site}/routes/GET?route=/feed")
    page.wait_for_selector("#route-findings[data-findings]")
    shown = cards(page, "#route-findings")
    query = next(c for c in shown if c["kind"] == "n_plus_one_query")
    assert HOSTILE_STATEMENT in query["evidence"]
    call = next(c for c in shown if c["kind"] == "repeated_remote_call")
    assert "evil.example/<script>alert(3)</script>/items/{id}" in call["evidence"] and "<script>alert(3)</script>" in call["title"]
    assert page.locator("#route-findings img, #route-findings script").count() == 0 and dialogs == []
    assert HOSTILE_URL.startswith("http://evil.example/")


def test_a_findings_link_opens_the_flame_graph_with_the_call_site_found(site, page):
    page.goto(f"{site}/routes/GET?route=/checkout")
    page.wait_for_selector("#route-findings[data-findings]")
    (logging,) = cards(page, "#route-findings")
    assert logging["kind"] == "sync_logging" and "RemoteLogHandler" in logging["evidence"]
    assert "/srv/shop/app.py" in " ".join(logging["evidence"])
    page.locator("#route-findings .finding-links a[data-link='flame']").click()
    page.wait_for_selector("#flame[data-nodes-drawn]", timeout=30_000)
    assert "q=checkout" in page.url
    page.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")


def test_a_route_without_findings_says_so(site, page):
    page.goto(f"{site}/routes/GET?route=(unmatched)")
    page.wait_for_selector("#route-findings[data-findings]")
    assert page.get_attribute("#route-findings", "data-findings") == "0"
    assert "No bottleneck" in page.inner_text("#findings-empty")
