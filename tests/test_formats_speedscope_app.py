"""speedscope's own app (the npm package's release build, served on 127.0.0.1) opens profviz's
speedscope export in Chromium: every thread is one of its profiles, named with its id and name,
and the total weight its profile list shows is the thread's time in samples that caught a frame
(speedscope leaves the others out)."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import pytest

from profviz.formats import speedscope
from profviz.model import NO_STACK
from tests.formats_support import npm_package, rich_profile

from .browser_fixtures import browser_context, page  # noqa: F401 - pytest fixtures

pytestmark = pytest.mark.browser
SPEEDSCOPE = "speedscope@1.25.0"


@pytest.fixture(scope="module")
def speedscope_app(tmp_path_factory) -> Path:
    """The release build of the speedscope npm package (npm pack: the registry's tarball, no install scripts)."""
    return npm_package(SPEEDSCOPE, tmp_path_factory.mktemp("speedscope")) / "dist" / "release"


def thread_frame_times(profile) -> list[int]:
    """Each thread's time in samples with a stack, in thread order."""
    cols = profile.columns()
    totals = [0] * len(profile.threads)
    for thread, stack, weight in zip(cols["thread"].tolist(), cols["stack"].tolist(), cols["weight_ns"].tolist()):
        if stack != NO_STACK:
            totals[thread] += weight
    return totals


def ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)\s*(ms|s|µs|us)", text).groups()
    return float(value) * {"ms": 1.0, "s": 1000.0, "µs": 0.001, "us": 0.001}[unit]


def test_speedscopes_app_opens_the_export_with_every_thread_and_its_time(speedscope_app, page, tmp_path):
    profile = rich_profile()
    (speedscope_app / "profviz.speedscope.json").write_bytes(speedscope.dump(profile))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(speedscope_app)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page.goto(f"{base}/index.html#profileURL={base}/profviz.speedscope.json")
        count = len(profile.threads)
        page.wait_for_function(f"() => document.body.innerText.includes('(1/{count})')", timeout=30_000)
        rows = page.eval_on_selector_all("tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
        header = next(i for i, row in enumerate(rows) if row[:3] == ["#", "Name", "Total Weight"])
        listed = rows[header + 1:header + 1 + count]
        expected = thread_frame_times(profile)
        assert [row[0] for row in listed] == [str(n) for n in range(1, count + 1)]
        for row, info, ns in zip(listed, profile.threads, expected):
            assert f"Thread {info.tid}" in row[1] and info.name[:20] in row[1]
            assert abs(ms(row[2]) - ns / 1e6) < 0.01, (row, ns)
    finally:
        server.shutdown()
