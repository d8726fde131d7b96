"""The correlation view (web/js/views/correlation.js) in headless Chromium over a real traced request.

Test data comes from a real run: ``tests/targets/correlation_app.py`` serves one request of a
Flask app under ``profviz.flask.init_app`` and ``profviz.otel.setup_otel`` (real SQLite queries,
a real HTTP call to a slow 127.0.0.1 server, CPU work outside every span, spans whose names and
attributes are attack strings), so the middleware stores the request's profile and the span
processor its spans. Expected figures come from the server's own JSON API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest

from profviz.store import open_store

from .browser_support import build_shop_profile, running_server
from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures
from profviz.model.statements import normalise

from .targets.correlation_app import HOSTILE_IMG, HOSTILE_JS_URL, HOSTILE_LONG, HOSTILE_SCRIPT, SLOW_SQL

pytestmark = pytest.mark.browser

TARGET = Path(__file__).parent / "targets" / "correlation_app.py"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, request profile id, its correlation JSON, id of a profile without spans)."""
    path = tmp_path_factory.mktemp("correlation") / "store.db"
    run = subprocess.run([sys.executable, str(TARGET), str(path)], capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["dropped"] == 0 and report["rejected"] == 0 and report["recorded"] >= 17, report
    store = open_store(path)
    request_profile = next(p["id"] for p in store.list_profiles() if p["kind"] == "request")
    plain = store.save_profile(build_shop_profile(seconds=1.0, workers=1))
    with running_server(store) as url:
        correlation = get_json(f"{url}/api/profiles/{request_profile}/correlation")
        yield url, request_profile, correlation, plain
    store.close()


def span_named(correlation: dict, predicate) -> dict:
    return next(s for s in correlation["spans"] if predicate(s))


def open_view(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#view[data-spans]")
    page.wait_for_function("() => Number(document.querySelector('#corr-stack').dataset.tilesDrawn) > 0")


def click_row(page, key: str) -> None:
    center = page.evaluate("key => window.__profviz.correlation.rowCenter(key)", key)
    assert center, f"no waterfall row {key}"
    page.mouse.click(center["x"], center["y"])


def wait_summary(page, expected: dict) -> dict:
    """Wait until the span flame graph summary shows `expected` (a span-flamegraph response); return its data."""
    page.wait_for_function(
        "([samples, total]) => { const d = document.querySelector('#span-summary').dataset;"
        " return d.samples === String(samples) && d.totalNs === String(total); }",
        arg=[expected["total_samples"], expected["root_total_ns"]],
    )
    return page.evaluate("() => ({...document.querySelector('#span-summary').dataset})")


def canvas_stats(page, selector: str) -> dict:
    return page.evaluate(
        """selector => {
            const c = document.querySelector(selector);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let painted = 0; const colors = new Set();
            for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] === 0) continue;
                painted++;
                colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            }
            return { painted, colors: colors.size, width: c.width, height: c.height };
        }""",
        selector,
    )


def overlay_alpha(page, x: float) -> int:
    """Alpha of the highlight overlay at plot x (middle row)."""
    return page.evaluate(
        """x => { const c = document.querySelector('#span-highlight');
                  return c.getContext('2d').getImageData(Math.round(x), Math.floor(c.height / 2), 1, 1).data[3]; }""",
        x,
    )


def plot_x(page, ns: float) -> float:
    """Where time `ns` is on the flame chart's plot, from the drawn domain and the plot width."""
    domain = page.get_attribute("#corr-stack", "data-domain")
    d0, d1 = (float(v) for v in domain.split("-"))
    width = page.evaluate("() => document.querySelector('#corr-stack .chart-canvas').clientWidth")
    return (ns - d0) / (d1 - d0) * width


def span_flame(url: str, profile: int, query: str) -> dict:
    return get_json(f"{url}/api/profiles/{profile}/span-flamegraph?{query}")


def test_clicking_a_span_shows_its_flame_graph_and_window(page, site):
    url, profile, correlation, _ = site
    query_span = span_named(correlation, lambda s: s["attributes"].get("db.statement") == normalise(SLOW_SQL))
    open_view(page, f"{url}/profiles/{profile}?view=correlation")
    assert page.get_attribute("#view", "data-spans") == str(len(correlation["spans"]))
    assert page.get_attribute("#waterfall", "data-rows") == str(len(correlation["spans"]) + 1)
    assert page.get_attribute("#state-lane", "data-runs") not in (None, "0")

    center = page.evaluate("key => window.__profviz.correlation.rowCenter(key)", query_span["span_id"])
    page.mouse.move(center["x"], center["y"])
    page.wait_for_selector(".tooltip:not([hidden])")
    click_row(page, query_span["span_id"])
    assert page.is_hidden(".tooltip"), "a click puts the tooltip away instead of leaving it over the views it changed"
    expected = span_flame(url, profile, f"span_id={query_span['span_id']}")
    assert expected["total_samples"] > 10, "the slow query ran for ~100 ms at 500 Hz"
    summary = wait_summary(page, expected)
    root = expected["nodes"][0]
    assert summary["cpuNs"] == str(root["cpu_ns"]) and summary["waitNs"] == str(root["wait_ns"])
    text = page.inner_text("#span-summary")
    assert f"{expected['total_samples']:,} samples" in text and "CPU" in text and "waiting" in text
    assert parse_qs(urlparse(page.url).query)["span"] == [query_span["span_id"]]
    page.wait_for_function("() => Number(document.querySelector('#span-flame').dataset.nodesDrawn) > 3")
    stats = canvas_stats(page, "#span-flame canvas")
    assert stats["painted"] > 5000 and stats["colors"] >= 3, stats

    # The span's window over the flame chart, where the span is on the time axis.
    # (the flame graph's panel changes the layout as it loads: the chart draws again, and the overlay with it)
    page.wait_for_function("() => { const d = document.querySelector('#span-highlight').dataset;"
                           " return d.windows === '1' && d.firstWindowPx; }", timeout=10_000)
    x0, x1 = (float(v) for v in page.get_attribute("#span-highlight", "data-first-window-px").split("-"))
    start, end = query_span["start_ns"], query_span["start_ns"] + query_span["duration_ns"]
    assert abs(x0 - max(-2.0, plot_x(page, start))) < 2 and abs(x1 - plot_x(page, end)) < 2
    inside, outside = overlay_alpha(page, (x0 + x1) / 2), overlay_alpha(page, (x1 + plot_x(page, correlation["window"]["end_ns"])) / 2)
    assert inside < 40 < outside, (inside, outside)

    # Its SQL text is shown, literally, with the span's own figures.
    sql = page.locator("#span-attributes tr[data-key='db.statement'] code")
    assert sql.text_content() == normalise(SLOW_SQL) and "<script>window.__pwned='sql'</script>" in SLOW_SQL
    assert page.locator("#span-details script, #span-details img").count() == 0
    details = page.inner_text("#span-details")
    assert "Samples inside" in details and f"{query_span['samples']:,}" in details

    # "(no span)": the request time outside every child span, prominent and selectable.
    no_span = correlation["no_span"]
    assert no_span["duration_ns"] > 50_000_000, "render_invoice runs ~100 ms outside every child span"
    banner = page.locator("#no-span")
    assert banner.is_visible() and "Not covered by any span" in banner.inner_text()
    assert page.get_attribute("#no-span .corr-no-span-time", "data-duration-ns") == str(no_span["duration_ns"])
    page.click("#no-span button")
    wait_summary(page, span_flame(url, profile, "no_span=1"))
    assert "render_invoice" in page.inner_text("#span-details")
    assert int(page.get_attribute("#span-highlight", "data-windows")) >= 1

    # A click in the flame chart selects the innermost span open there: the HTTP call.
    http = span_named(correlation, lambda s: s["kind"] == "client" and s["name"] == "GET")
    box = page.locator("#corr-stack .chart-canvas").bounding_box()
    middle = http["start_ns"] + http["duration_ns"] / 2
    page.mouse.click(box["x"] + plot_x(page, middle), box["y"] + 8 + 2 + 11 * 0.5)
    page.wait_for_url(lambda u: parse_qs(urlparse(u).query).get("span") == [http["span_id"]])
    assert "127.0.0.1" in page.text_content("#span-attributes")


def test_children_and_aggregate_by_name(page, site):
    url, profile, correlation, _ = site
    parent = span_named(correlation, lambda s: s["name"] == HOSTILE_SCRIPT)
    open_view(page, f"{url}/profiles/{profile}?view=correlation&span={parent['span_id']}")
    self_only = wait_summary(page, span_flame(url, profile, f"span_id={parent['span_id']}"))
    page.click("button[data-children='1']")
    expected = span_flame(url, profile, f"span_id={parent['span_id']}&children=1")
    with_children = wait_summary(page, expected)
    assert int(with_children["samples"]) > int(self_only["samples"]), "the slow query's samples are the child's"
    assert "children=1" in page.url

    quick = [s for s in correlation["spans"] if s["name"] == "SELECT"]
    assert len(quick) == 12
    click_row(page, quick[0]["span_id"])
    page.check("#corr-aggregate")
    expected = span_flame(url, profile, "name=SELECT&children=1")
    summary = wait_summary(page, expected)
    assert int(summary["samples"]) == expected["total_samples"] > 0
    assert page.get_attribute("#span-highlight", "data-windows") == "12"
    assert page.get_attribute("#span-aggregate", "data-count") == "12"
    assert "agg=1" in page.url

    # The URL alone reproduces the view, zoomed window included.
    start, end = quick[0]["start_ns"], quick[-1]["start_ns"] + quick[-1]["duration_ns"]
    window = f"{start / 1e9:.6f}-{end / 1e9:.6f}"
    link = f"{url}/profiles/{profile}?view=correlation&span={quick[3]['span_id']}&children=1&agg=1&t={window}"
    other = page.context.new_page()
    try:
        open_view(other, link)
        assert wait_summary(other, expected)["samples"] == summary["samples"]
        assert other.is_checked("#corr-aggregate")
        assert other.get_attribute("button[data-children='1']", "aria-pressed") == "true"
        other.wait_for_function(
            "([a, b]) => { const [d0, d1] = document.querySelector('#corr-stack').dataset.domain.split('-').map(Number);"
            " return Math.abs(d0 - a) < 2e5 && Math.abs(d1 - b) < 2e5; }",
            arg=[start, end],
        )
    finally:
        other.close()


def test_hostile_span_names_and_attributes_stay_text(page, site):
    url, profile, correlation, _ = site
    hostile = span_named(correlation, lambda s: s["name"] == HOSTILE_SCRIPT)
    open_view(page, f"{url}/profiles/{profile}?view=correlation&span={hostile['span_id']}")
    page.wait_for_selector("#span-attributes")
    assert page.text_content("#span-details .corr-span-name") == HOSTILE_SCRIPT
    assert page.text_content("#span-attributes tr[data-key='note'] code") == HOSTILE_IMG
    assert page.text_content("#span-attributes tr[data-key='link'] code") == HOSTILE_JS_URL
    assert page.text_content("#span-attributes tr[data-key='rtl'] code") == "evil[U+202E]gnp.exe"
    blob = page.text_content("#span-attributes tr[data-key='blob']")
    stored = hostile["attributes"]["blob"]
    assert HOSTILE_LONG.startswith(stored.rstrip("\u2026")) and len(stored) <= 4096
    assert len(blob) < 2100 and f"({len(stored):,} characters)" in blob
    assert page.locator("img, script:not([src]), iframe, a[href^='javascript']").count() == 0
    assert "\u202e" not in page.inner_text("body")

    # Hovering the hostile rows shows their names as text in the tooltip.
    for name in (HOSTILE_SCRIPT, HOSTILE_LONG[:1000]):
        span = span_named(correlation, lambda s, name=name: s["name"].startswith(name))
        center = page.evaluate("key => window.__profviz.correlation.rowCenter(key)", span["span_id"])
        page.mouse.move(center["x"], center["y"])
        page.wait_for_selector(".tooltip:not([hidden])")
        assert page.text_content(".tooltip .tooltip-title").startswith(name[:200])
    assert page.locator(".tooltip img, .tooltip script").count() == 0


def test_profile_without_spans_explains_how_to_get_them(page, site):
    url, _, _, plain = site
    page.goto(f"{url}/profiles/{plain}?view=correlation")
    page.wait_for_selector("#corr-empty")
    text = page.inner_text("#corr-empty")
    assert "profviz.otel.setup_otel" in text and "/v1/traces" in text
    assert page.locator("#corr-stack").is_hidden()
    assert page.get_attribute("#view", "data-spans") == "0"
    assert get_json(f"{url}/api/profiles/{plain}/correlation")["spans"] == []
    page.click("button[data-view='flame']")
    page.wait_for_selector("#flame[data-nodes-drawn]")
    assert "view=correlation" not in page.url and quote("correlation") not in page.url
