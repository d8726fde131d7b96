"""Browser half of the UI benchmark: how fast does a big profile paint in headless Chromium?

Builds the same synthetic profile as ``bench/ui_server.py`` (default 1,000,000 samples,
50,000 distinct stacks, 8 threads), saves it to a store, serves it with the real app on
127.0.0.1 and drives Debian Chromium (Playwright). Prints, per run:

* navigation -> first painted flame graph (goal < 1500 ms), cold (the server loads the profile
  from the store) and warm (profile cached by the server, fresh page: the browser fetches,
  parses and draws the tree again);
* zoom click -> repaint (goal < 100 ms): from the click event to the browser having painted
  the zoomed graph, and the canvas draw time alone; plus when the re-fetched, re-thresholded
  subtree (?root=) is painted, if the zoomed frame had folded children.

Times come from the page's own marks (window.__profviz.events / performance.mark
"profviz:*"), all on the page's clock: ``performance.now()`` counts from navigation start.
Run: ``python bench/ui_browser.py [--samples N] [--runs 3] [--store PATH --profile ID]``.

``--screenshots DIR`` instead writes ``<view>.png`` of every view at 1280x800 for a realistic
web-app profile (before/after a regression) into DIR (the README's docs/screenshots/).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profviz.store import open_store  # noqa: E402
from tests.browser_support import build_shop_profile, chromium, running_server  # noqa: E402


def synthetic_profile(samples: int, stacks: int, threads: int):
    """bench/ui_server.py's synthetic profile (one definition for both halves of the benchmark)."""
    spec = importlib.util.spec_from_file_location("ui_server_bench", ROOT / "bench" / "ui_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_profile(samples, stacks, threads)


def events(page) -> list[dict]:
    return page.evaluate("() => (window.__profviz && window.__profviz.events) || []")


def wait_event(page, name: str, after: int = 0, timeout_ms: int = 60_000, **match) -> dict:
    page.wait_for_function(
        """([name, after, match]) => ((window.__profviz && window.__profviz.events) || []).slice(after)
              .some(e => e.name === name && Object.entries(match).every(([k, v]) => String(e[k]) === String(v)))""",
        arg=[name, after, match], timeout=timeout_ms,
    )
    for event in events(page)[after:]:
        if event["name"] == name and all(str(event.get(k)) == str(v) for k, v in match.items()):
            return event
    raise AssertionError(f"event {name} vanished")


def first_paint(context, url: str) -> tuple[float, dict, object]:
    page = context.new_page()
    page.goto(url, wait_until="commit")
    painted = wait_event(page, "flame-painted")
    return painted["t"], painted, page


def zoom_once(page, depth: int) -> dict:
    target = page.evaluate("d => window.__profviz.flame.centerOfDepth(d)", depth)
    if not target:
        raise SystemExit(f"no frame drawn at depth {depth} to click")
    before = len(events(page))
    page.mouse.click(target["x"], target["y"])
    clicked = wait_event(page, "zoom-click", before)
    painted = wait_event(page, "flame-painted", before, focus=target["id"])
    drawn = [e for e in events(page)[before:] if e["name"] == "flame-drawn" and str(e.get("focus")) == str(target["id"])][0]
    result = {"id": target["id"], "click_to_paint": painted["t"] - clicked["t"], "draw": drawn["ms"], "nodes": painted["nodes"]}
    try:
        refined = wait_event(page, "flame-painted", before, timeout_ms=15_000, treeRoot=target["id"])
        result["refetched_paint"] = refined["t"] - clicked["t"]
        result["refetched_nodes"] = refined["nodes"]
    except Exception:  # noqa: BLE001 - the zoomed frame had no folded children: nothing re-fetched
        result["refetched_paint"] = None
    return result


SCREENSHOTS = (
    # (file name, URL path and query after /profiles/<after>, event that says it is drawn)
    ("list", None, "list-painted"),
    ("flamegraph", "", "flame-painted"),
    ("icicle", "?view=icicle&zoom={checkout}&q=pricing", "flame-painted"),
    ("flamechart", "?view=chart&t=5.5-8", "chart-painted"),
    ("sandwich", "?view=sandwich&fn=checkout&file=/srv/shop/shop/views.py", "sandwich-painted"),
    ("top-functions", "?view=top&sort=self", "top-painted"),
    ("diff", "DIFF", "diff-painted"),
)


def screenshots(directory: Path) -> None:
    """Write a PNG of every view for a realistic profile (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profviz-shots-") as tmp:
        store = open_store(os.path.join(tmp, "shots.db"))
        before = store.save_profile(build_shop_profile(seconds=12, workers=6, seed=3, regression=False,
                                                       start_ns=1_764_000_000_000_000_000, cmdline="python -m shop.serve --port 8000"))
        after_profile = build_shop_profile(seconds=12, workers=6, seed=4, regression=True,
                                           start_ns=1_764_003_600_000_000_000, cmdline="python -m shop.serve --port 8000")
        after = store.save_profile(after_profile)
        with running_server(store) as base, chromium() as context:
            import json
            import urllib.request

            tree = json.load(urllib.request.urlopen(f"{base}/api/profiles/{after}/flamegraph"))
            names = [f["name"] for f in tree["functions"]]
            checkout = next(n["id"] for n in tree["nodes"] if n["fn"] >= 0 and names[n["fn"]] == "checkout")
            for name, query, event in SCREENSHOTS:
                page = context.new_page()
                if query is None:
                    url = f"{base}/"
                elif query == "DIFF":  # the baseline is A, the regression B: red is what got worse
                    url = f"{base}/profiles/{before}?view=diff&b={after}"
                else:
                    url = f"{base}/profiles/{after}" + query.format(checkout=checkout)
                page.goto(url)
                wait_event(page, event)
                if name == "icicle":
                    page.wait_for_function("() => Number(document.querySelector('#flame').dataset.matched) > 0")
                page.wait_for_timeout(400)
                path = directory / f"{name}.png"
                page.screenshot(path=str(path))
                print(f"{path}: {path.stat().st_size / 1024:.0f} kB")
                page.close()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--stacks", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", help="an existing store (with --profile) instead of building the synthetic profile")
    parser.add_argument("--profile", type=int, help="profile id in --store")
    parser.add_argument("--screenshots", type=Path, metavar="DIR", help="write a PNG of every view into DIR instead of timing")
    args = parser.parse_args()
    if args.screenshots:
        screenshots(args.screenshots)
        return

    tmp = None
    if args.store and args.profile:
        store = open_store(args.store)
        profile_id = args.profile
        meta = store.profile_meta(profile_id)
        print(f"profile {profile_id} from {args.store}: {meta['sample_count']:,} samples, {meta['thread_count']} threads")
    else:
        started = time.perf_counter()
        profile = synthetic_profile(args.samples, args.stacks, args.threads)
        tmp = tempfile.TemporaryDirectory(prefix="profviz-ui-bench-")
        store = open_store(os.path.join(tmp.name, "bench.db"))
        profile_id = store.save_profile(profile)
        print(f"synthetic profile: {profile.sample_count:,} samples, {len(profile.stack_prefix):,} stacks, "
              f"{len(profile.threads)} threads; built and saved in {time.perf_counter() - started:.1f} s")
        del profile

    with running_server(store) as base, chromium() as context:
        url = f"{base}/profiles/{profile_id}"
        cold, painted, page = first_paint(context, url)
        print(f"navigation -> first painted flame graph, cold server: {cold:7.0f} ms ({painted['nodes']:,} frames drawn)   [goal < 1500 ms]")
        page.close()
        warm = []
        zooms = []
        for _ in range(args.runs):
            t, painted, page = first_paint(context, url)
            warm.append(t)
            for depth in (3, 2):
                zooms.append(zoom_once(page, depth))
                page.keyboard.press("Escape")
                page.wait_for_timeout(100)
            page.close()
        print(f"navigation -> first painted flame graph, warm server: median {statistics.median(warm):7.0f} ms, "
              f"max {max(warm):7.0f} ms over {len(warm)} fresh pages   [goal < 1500 ms]")
        clicks = [z["click_to_paint"] for z in zooms]
        draws = [z["draw"] for z in zooms]
        print(f"zoom click -> repaint: median {statistics.median(clicks):6.1f} ms, max {max(clicks):6.1f} ms "
              f"(canvas draw alone: median {statistics.median(draws):5.1f} ms) over {len(zooms)} clicks   [goal < 100 ms]")
        refetched = [z for z in zooms if z["refetched_paint"] is not None]
        if refetched:
            print(f"  zoomed frames with folded children re-fetched with ?root=: {len(refetched)} of {len(zooms)}; "
                  f"detailed subtree painted after median {statistics.median(z['refetched_paint'] for z in refetched):6.0f} ms "
                  f"({statistics.median(z['refetched_nodes'] for z in refetched):,.0f} frames)")
    store.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
