"""The browser UI (web/) in headless Debian Chromium against the real server and a real store.

One server and one browser for the module. Profiles are built through the real model
(``Profile.append_sample``) and saved in a temporary SQLite store; expected figures are
computed with the real analysis code, so the UI is checked against independent numbers.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from profviz.analysis.calltree import SampleFilter, build_call_tree
from profviz.model import State
from profviz.store import open_store

from .browser_support import (
    HOSTILE_IMG, HOSTILE_JS_URL, HOSTILE_LONG, HOSTILE_SCRIPT, build_hostile_profile, build_shop_profile,
    running_server,
)
from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.browser

MAGENTA = (230, 0, 180)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, {name: (id, profile)}) for a store holding two shop profiles and a hostile one."""
    store = open_store(tmp_path_factory.mktemp("web") / "store.db")
    profiles = {
        "before": build_shop_profile(seed=1, regression=False, start_ns=1_764_000_000_000_000_000),
        "after": build_shop_profile(seed=2, regression=True, start_ns=1_764_000_100_000_000_000, plugins=300),
        "hostile": build_hostile_profile(start_ns=1_764_000_200_000_000_000),
    }
    ids = {name: (store.save_profile(p), p) for name, p in profiles.items()}
    with running_server(store) as url:
        yield url, ids
    store.close()


def canvas_stats(page, selector: str, color: tuple[int, int, int] | None = None) -> dict:
    """Painted pixels, distinct colours and (optionally) pixels of one exact colour of a canvas."""
    return page.evaluate(
        """([selector, color]) => {
            const c = document.querySelector(selector);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let painted = 0, exact = 0; const colors = new Set();
            for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] === 0) continue;
                painted++;
                colors.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                if (color && d[i] === color[0] && d[i + 1] === color[1] && d[i + 2] === color[2]) exact++;
            }
            return { painted, colors: colors.size, exact, width: c.width, height: c.height };
        }""",
        [selector, list(color) if color else None],
    )


def open_flame(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#flame[data-nodes-drawn]")
    page.wait_for_selector("#totals[data-total-ns]")


def wait_total(page, previous: str) -> str:
    page.wait_for_function("prev => document.querySelector('#totals').dataset.totalNs !== prev", arg=previous)
    return page.get_attribute("#totals", "data-total-ns")


def expected_total(profile, **filters) -> int:
    return build_call_tree(profile, SampleFilter(**filters)).root_total_ns


def origin_ns(profile) -> int:
    return int(profile.meta["start_ns"])


def test_profile_list_newest_first(page, site):
    url, ids = site
    page.goto(url + "/")
    page.wait_for_selector("#profile-list[data-count]")
    links = page.locator("#profile-list tbody tr td:first-child a")
    assert links.all_text_contents() == [f"#{ids[n][0]}" for n in ("hostile", "after", "before")]
    assert page.locator("#profile-list tbody .split-bar").count() == 3
    row = page.locator("#profile-list tbody tr").nth(1)
    assert f"{ids['after'][1].sample_count:,}" in row.inner_text() and "6.00 s" in row.inner_text()


def test_flame_graph_draws_pixels_and_totals(page, site):
    url, ids = site
    pid, profile = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    drawn = int(page.get_attribute("#flame", "data-nodes-drawn"))
    assert drawn > 40
    stats = canvas_stats(page, "#flame canvas")
    assert stats["painted"] > 0.2 * stats["width"] * stats["height"] / 3
    assert stats["colors"] > 20
    assert int(page.get_attribute("#totals", "data-total-ns")) == expected_total(profile)
    assert page.get_attribute("#flame", "data-focus") == "0"
    assert "frames drawn" in page.get_attribute("#flame canvas", "aria-label")


def test_click_zooms_and_breadcrumb_zooms_out(page, site):
    url, ids = site
    pid, _ = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    before = int(page.get_attribute("#flame", "data-nodes-drawn"))
    target = page.evaluate("() => window.__profviz.flame.centerOfName('checkout')")
    assert target, "checkout is drawn"
    page.mouse.move(target["x"], target["y"])
    page.wait_for_selector(".tooltip:not([hidden])")
    tooltip = page.inner_text(".tooltip")
    assert "checkout" in tooltip and "CPU" in tooltip and "Waiting" in tooltip and "Samples" in tooltip
    page.mouse.click(target["x"], target["y"])
    page.wait_for_function("id => document.querySelector('#flame').dataset.focus === String(id)", arg=target["id"])
    assert page.is_hidden(".tooltip"), "a click puts the tooltip away: what it described has moved"
    assert parse_qs(urlparse(page.url).query)["zoom"] == [str(target["id"])]
    assert page.inner_text("#breadcrumb .crumb.current") == "checkout"
    assert int(page.get_attribute("#flame", "data-nodes-drawn")) < before
    page.click("#breadcrumb button.crumb >> text=all")
    page.wait_for_function("() => document.querySelector('#flame').dataset.focus === '0'")
    assert "zoom" not in parse_qs(urlparse(page.url).query)


def test_zoom_refetches_a_folded_subtree(page, site):
    url, ids = site
    pid, _ = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    assert page.evaluate("() => window.__profviz.flame.centerOfName('plugin_7')") is None, "folded at first"
    target = page.evaluate("() => window.__profviz.flame.centerOfName('(300 more)')")
    assert target, "the folded plugins are one 'other' frame"
    page.mouse.click(target["x"], target["y"])
    page.wait_for_function("() => document.querySelector('#flame').dataset.treeRoot !== '0'")
    root = page.get_attribute("#flame", "data-tree-root")
    assert page.get_attribute("#flame", "data-focus") == root
    assert parse_qs(urlparse(page.url).query)["zoom"] == [root]
    assert page.inner_text("#breadcrumb .crumb.current") == "load_plugins"
    assert int(page.get_attribute("#flame", "data-nodes-drawn")) >= 300
    assert page.evaluate("() => window.__profviz.flame.centerOfName('plugin_7')") is not None


def test_search_highlights_and_shows_matched_share(page, site):
    url, ids = site
    pid, profile = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    page.fill("#search", "sqlalchemy")
    page.press("#search", "Enter")
    page.wait_for_selector("#search-info[data-fraction]")
    fraction = float(page.get_attribute("#search-info", "data-fraction"))
    # Independent expectation: share of wall time whose stack holds a sqlalchemy frame.
    cols = profile.columns()
    has = {}
    for stack in np.unique(cols["stack"]):
        has[int(stack)] = any("sqlalchemy" in profile.frame(f).file for f in profile.stack_frames(int(stack)))
    mask = np.array([has[int(s)] for s in cols["stack"]])
    expected = cols["weight_ns"][mask].sum() / cols["weight_ns"].sum()
    assert fraction == pytest.approx(expected, rel=1e-6)
    assert "matches" in page.inner_text("#search-info")
    page.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")
    assert canvas_stats(page, "#flame canvas", MAGENTA)["exact"] > 500
    assert parse_qs(urlparse(page.url).query)["q"] == ["sqlalchemy"]


def test_thread_filter_and_state_toggle_change_totals(page, site):
    url, ids = site
    pid, profile = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    total = page.get_attribute("#totals", "data-total-ns")
    page.click("#thread-filter summary")
    page.fill(".thread-search", "cache")
    assert page.locator(".thread-row:visible").count() == 1
    page.click("text=Only shown")
    refresher = profile.find_threads("cache-refresher")
    total = wait_total(page, total)
    assert int(total) == expected_total(profile, threads=refresher)
    assert parse_qs(urlparse(page.url).query)["threads"] == [",".join(map(str, refresher))]
    page.click("button.seg[data-states=cpu]")
    total = wait_total(page, total)
    assert int(total) == expected_total(profile, threads=refresher, states=[State.ON_CPU])
    assert int(page.get_attribute("#totals", "data-wait-ns")) == 0
    page.click("button.seg[data-states=wait]")
    total = wait_total(page, total)
    assert int(total) == expected_total(profile, threads=refresher, states=[State.WAITING])
    assert parse_qs(urlparse(page.url).query)["states"] == ["wait"]


def test_brushed_window_filters_the_flame_graph(page, site):
    url, ids = site
    pid, profile = ids["after"]
    page.goto(f"{url}/profiles/{pid}?view=chart")
    page.wait_for_selector("#chart[data-tiles-drawn]")
    assert int(page.get_attribute("#chart", "data-tracks")) == len(profile.threads)
    assert int(page.get_attribute("#chart", "data-tiles-drawn")) > 100
    assert canvas_stats(page, "#chart canvas")["colors"] > 5
    labels = page.locator(".chart-label .chart-thread").all_text_contents()
    assert "cache-refresher" in labels and "MainThread" in labels
    box = page.locator(".chart-axis .brush .overlay").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.55, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=5)
    page.mouse.up()
    page.wait_for_selector("#window-chip:not([hidden])")
    window = parse_qs(urlparse(page.url).query)["t"][0]
    start_s, end_s = (float(v) for v in window.split("-"))
    assert 2.5 < start_s < end_s <= 6.1
    page.click("button.tab[data-view=flame]")
    page.wait_for_selector("#flame[data-nodes-drawn]")
    page.wait_for_function("() => !document.querySelector('#totals').classList.contains('loading')")
    origin = origin_ns(profile)
    expected = expected_total(profile, start_ns=origin + round(start_s * 1e9), end_ns=origin + round(end_s * 1e9))
    assert int(page.get_attribute("#totals", "data-total-ns")) == expected
    assert expected < expected_total(profile) * 0.5
    page.click(".chip-clear")
    page.wait_for_function("() => document.querySelector('#window-chip').hidden")
    assert "t" not in parse_qs(urlparse(page.url).query)


def test_top_functions_sort_and_sandwich(page, site):
    url, ids = site
    pid, profile = ids["after"]
    page.goto(f"{url}/profiles/{pid}?view=top")
    page.wait_for_selector("#top-table[data-rows]")
    page.wait_for_selector("#top-table th.sorted[data-key=self]")  # it opens on self time: where the time is spent
    page.click("#top-table th[data-key=total]")
    page.wait_for_function("() => location.search.includes('sort=total')")
    page.wait_for_selector("#top-table th.sorted[data-key=total]")
    page.click("#top-table th[data-key=self]")
    page.wait_for_function("() => !location.search.includes('sort=')")
    page.wait_for_selector("#top-table th.sorted[data-key=self]")
    first = page.locator("#top-table tbody tr").first
    assert first.locator("td").first.inner_text() == "do_execute"
    first.click()
    page.wait_for_selector("#sandwich-title[data-fn=do_execute]")
    page.wait_for_selector("#sandwich-callers[data-nodes-drawn]")
    assert int(page.get_attribute("#sandwich-callers", "data-nodes-drawn")) >= 8
    assert canvas_stats(page, "#sandwich-callers canvas")["painted"] > 1000
    query = parse_qs(urlparse(page.url).query)
    assert query["view"] == ["sandwich"] and query["fn"] == ["do_execute"]


def test_diff_view_of_two_profiles(page, site):
    url, ids = site
    before, _ = ids["before"]
    after, _ = ids["after"]
    page.goto(f"{url}/profiles/{before}?view=diff&b={after}")
    page.wait_for_selector("#diff-flame[data-nodes-drawn]")
    assert int(page.get_attribute("#diff-flame", "data-nodes-drawn")) > 30
    stats = page.evaluate(
        """() => {
            const c = document.querySelector('#diff-flame canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let red = 0, blue = 0;
            for (let i = 0; i < d.length; i += 4) {
                if (d[i] > d[i + 2] + 60) red++;
                if (d[i + 2] > d[i] + 60) blue++;
            }
            return { red, blue };
        }"""
    )
    assert stats["red"] > 500 and stats["blue"] > 500, stats
    page.wait_for_selector("#diff-increases[data-rows]")
    increases = page.locator("#diff-increases tbody tr td:first-child").all_text_contents()
    assert {"compute_discount", "score"} & set(increases)
    assert int(page.get_attribute("#diff-decreases", "data-rows")) > 0
    assert page.locator("#diff-sides .diff-side").count() == 2
    page.goto(f"{url}/profiles/{before}?view=diff")  # no B yet: it asks for one, it does not diff the profile with itself
    page.wait_for_selector(".view-message[data-needs-b]")
    assert "Pick what to compare with" in page.inner_text(".view-message[data-needs-b]")
    assert not page.is_visible("#diff-flame") and page.locator("#diff-sides .diff-side").count() == 0


def test_copied_url_reproduces_the_view(page, site, browser_context):
    url, ids = site
    pid, _ = ids["after"]
    open_flame(page, f"{url}/profiles/{pid}")
    page.click("button.tab[data-view=icicle]")
    page.wait_for_selector("#flame[data-orientation=icicle][data-nodes-drawn]")
    page.select_option("#color-mode", "package")
    target = page.evaluate("() => window.__profviz.flame.centerOfName('checkout')")
    page.mouse.click(target["x"], target["y"])
    page.wait_for_function("id => document.querySelector('#flame').dataset.focus === String(id)", arg=target["id"])
    page.fill("#search", "pricing")
    page.press("#search", "Enter")
    page.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")
    page.click("button.seg[data-states=cpu]")
    page.wait_for_function("() => location.search.includes('states=cpu')")
    page.wait_for_function("() => !document.querySelector('#totals').classList.contains('loading')")
    page.wait_for_timeout(200)

    def snapshot(p):
        return p.evaluate(
            """() => ({
                view: document.querySelector('.tab.active').dataset.view,
                focus: document.querySelector('#flame').dataset.focus,
                drawn: document.querySelector('#flame').dataset.nodesDrawn,
                matched: document.querySelector('#flame').dataset.matched,
                total: document.querySelector('#totals').dataset.totalNs,
                color: document.querySelector('#color-mode').value,
                search: document.querySelector('#search').value,
                share: document.querySelector('#search-info').dataset.fraction,
                crumbs: document.querySelector('#breadcrumb').innerText,
                pixels: document.querySelector('#flame canvas').toDataURL(),
            })"""
        )

    original = snapshot(page)
    copied = page.url
    fresh = browser_context.new_page()
    fresh.goto(copied)
    fresh.wait_for_selector("#flame[data-nodes-drawn]")
    fresh.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")
    fresh.wait_for_function("() => !document.querySelector('#totals').classList.contains('loading') && document.querySelector('#totals').dataset.totalNs")
    fresh.wait_for_selector("#search-info[data-fraction]")
    fresh.wait_for_timeout(200)
    reproduced = snapshot(fresh)
    fresh.close()
    assert reproduced == original
    assert original["view"] == "icicle" and original["color"] == "package" and original["search"] == "pricing"


def test_hostile_input_renders_safely(page, site):
    url, ids = site
    pid, _ = ids["hostile"]
    for path in ("/", f"/profiles/{pid}", f"/profiles/{pid}?view=chart", f"/profiles/{pid}?view=top",
                 f"/profiles/{pid}?view=sandwich", f"/profiles/{pid}?view=icicle&q=img&color=package"):
        page.goto(url + path)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(150)
        if "view=chart" in path:
            page.wait_for_selector("#chart[data-tiles-drawn]")
        state = page.evaluate(
            """() => ({
                pwned: window.__pwned,
                imgs: document.querySelectorAll('img').length,
                scripts: [...document.scripts].map(s => s.getAttribute('src')).sort(),
                hrefs: [...document.body.querySelectorAll('[href]')].map(a => a.getAttribute('href')),
                text: document.body.innerText,
                longest: Math.max(...[...document.querySelectorAll('body *')].map(e => e.children.length ? 0 : e.textContent.length)),
            })"""
        )
        assert state["pwned"] is None, path
        assert state["imgs"] == 0, path
        assert state["scripts"] == ["/js/boot.js", "/js/main.js", "/vendor/d3.min.js"], path
        assert all(h.startswith("/") and not h.startswith("//") for h in state["hrefs"]), state["hrefs"]
        assert "\u202e" not in state["text"], path
        assert state["longest"] < 2100, path
    # On the flame graph page the payloads are shown literally, as text.
    page.goto(f"{url}/profiles/{pid}")
    page.wait_for_selector("#flame[data-nodes-drawn]")
    page.click("#thread-filter summary")
    text = page.evaluate("() => document.body.innerText")
    assert HOSTILE_SCRIPT in text and HOSTILE_IMG in text and HOSTILE_JS_URL in text
    assert "evil[U+202E]gnp.exe" in text
    assert HOSTILE_LONG[:2000] not in text
    target = page.evaluate(f"() => window.__profviz.flame.centerOfName({HOSTILE_IMG!r})")
    page.mouse.move(target["x"], target["y"])
    page.wait_for_selector(".tooltip:not([hidden])")
    assert HOSTILE_IMG in page.inner_text(".tooltip-title")
    long_frame = page.evaluate(f"() => window.__profviz.flame.centerOfName({HOSTILE_LONG!r})")
    page.mouse.move(long_frame["x"], long_frame["y"])
    page.wait_for_function("() => document.querySelector('.tooltip-title').textContent.startsWith('handler_')")
    title = page.inner_text(".tooltip-title")
    assert re.fullmatch(r"handler_A+\u2026", title) and len(title) <= 300
    assert page.evaluate("() => window.__pwned") is None


def test_the_profile_page_downloads_the_profile_in_every_format(page, site):
    """Each "Download as" link gives the whole profile in its format: loaded back, the same threads
    and, where the format keeps them, the same time in each state."""
    from profviz.formats import load_any

    url, ids = site
    profile_id, profile = ids["before"]
    page.goto(f"{url}/profiles/{profile_id}")
    page.wait_for_selector("#profile-downloads a[data-format='pprof']")
    links = page.eval_on_selector_all("#profile-downloads a", "as => as.map(a => [a.dataset.format, a.title])")
    assert {"speedscope", "pprof", "perfetto", "firefox", "collapsed", "profviz", "pyinstrument"} <= {name for name, _ in links}
    assert "drops" in dict(links)["collapsed"]
    expected = profile.columns()["weight_ns"].sum()
    for name in ("pprof", "perfetto", "firefox", "speedscope"):
        with page.expect_download() as download:
            page.click(f"#profile-downloads a[data-format='{name}']")
        saved = download.value
        assert saved.suggested_filename.startswith(f"profile-{profile_id}")
        loaded = load_any(open(saved.path(), "rb").read(), saved.suggested_filename)
        assert loaded.columns()["weight_ns"].sum() == expected, name
        assert len(loaded.threads) == len(profile.threads), name
