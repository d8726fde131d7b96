"""The JSON contract between the server and the browser UI (Python side).

The real app (Flask test client over a real SQLite store) emits every endpoint's JSON for the
fixture profiles in :mod:`tests.fixtures.api_profiles`. The committed files in
``tests/fixtures/api/`` must equal what the server emits now; the JavaScript tests in
``web/tests/`` (run here with ``node --test``) check that the front-end model reads those files.
So a server change that the fixtures (and therefore the UI tests) do not reflect fails.

Regenerate after an intended API change (and update docs/api.md and web/ with it):
``PROFVIZ_UPDATE_FIXTURES=1 python -m pytest tests/test_contract.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from profviz.server import create_app
from profviz.store import open_store
from profviz.model import Span
from tests.fixtures.api_requests import store_contract_requests
from tests.fixtures.api_profiles import (
    HOSTILE_FUNCTION, HOSTILE_REASON, HOSTILE_THREAD, MS, ORIGIN_NS, contract_profile_a, contract_profile_b,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "api"
WEB_TESTS = REPO / "web" / "tests"
UPDATE = os.environ.get("PROFVIZ_UPDATE_FIXTURES") == "1"


TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
DB_SPAN = "00000000000000a2"


def contract_spans() -> list[Span]:
    """Spans on profile A's main thread: a request, two queries (hostile SQL), a hostile-named span, one without a thread."""
    def span(span_id, parent, name, kind, start_ms, end_ms, tid=4242, **attributes):
        return Span(TRACE_ID, span_id, parent, name, kind, "error" if "error" in attributes else "unset",
                          ORIGIN_NS + start_ms * MS, ORIGIN_NS + end_ms * MS, pid=4242, tid=tid,
                          thread_name="MainThread" if tid else None, attributes=attributes, approximate=tid is None)

    return [
        span("00000000000000a1", None, "GET /checkout", "server", 0, 700, **{"http.route": "/checkout"}),
        span(DB_SPAN, "00000000000000a1", "SELECT", "client", 5, 185, **{
            "db.system": "postgresql", "db.statement": 'SELECT "<script>alert(1)</script>" FROM orders'}),
        span("00000000000000a3", "00000000000000a1", HOSTILE_FUNCTION, "internal", 265, 395, **{"url.full": "javascript:alert(1)"}),
        span("00000000000000a4", "00000000000000a1", "SELECT", "client", 600, 640, **{"db.system": "postgresql", "db.statement": "SELECT 1"}),
        span("00000000000000a5", "00000000000000a1", "cache.get", "client", 190, 200, tid=None),
    ]


def fixture_text(body: object) -> str:
    return json.dumps(body, indent=1, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> dict[str, dict]:
    """name -> {"url", "status", "body"} for every endpoint, from the real app."""
    store = open_store(tmp_path_factory.mktemp("contract") / "store.db")
    a = store.save_profile(contract_profile_a())
    b = store.save_profile(contract_profile_b())
    assert (a, b) == (1, 2), "fixture ids must be deterministic"
    store.insert_spans(contract_spans())
    client = create_app(store).test_client()
    base = f"/api/profiles/{a}"
    flame = client.get(f"{base}/flamegraph").get_json()
    functions = flame["functions"]
    handle = next(n["id"] for n in flame["nodes"] if n["fn"] >= 0 and functions[n["fn"]]["name"] == "handle_request")
    urls = {
        "profiles": "/api/profiles",
        "formats": "/api/formats",
        "profile": base,
        "flamegraph": f"{base}/flamegraph",
        "flamegraph_filtered": f"{base}/flamegraph?threads=0,1&states=cpu,waiting&start_ns=0&end_ns={500 * MS}&min_fraction=0.05",
        "flamegraph_root": f"{base}/flamegraph?root={handle}&min_fraction=0.2",
        "functions": f"{base}/functions?sort=total&limit=50",
        "sandwich": f"{base}/sandwich?function=handle_request",
        "sandwich_recursive": f"{base}/sandwich?function=render",
        "search": f"{base}/search?q=recv",
        "search_regex": f"{base}/search?q=%5Erender%24%7Cscript&regex=1",
        "timeline": f"{base}/timeline?width=40",
        "timeline_window": f"{base}/timeline?threads=0&start_ns={100 * MS}&end_ns={400 * MS}&width=30",
        "diff": f"/api/diff?a={a}&b={b}",
        "diff_windows": f"/api/diff?a={a}&a_end_ns={300 * MS}&b_start_ns={300 * MS}&base=b",
        "spans": f"{base}/spans",
        "correlation": f"{base}/correlation",
        "span_flamegraph": f"{base}/span-flamegraph?span_id={DB_SPAN}",
        "span_flamegraph_name": f"{base}/span-flamegraph?name=SELECT&children=1",
        "error_not_found": "/api/profiles/99",
        "error_bad_param": f"{base}/flamegraph?min_fraction=2",
        "error_bad_regex": f"{base}/search?q=(&regex=1",
        "error_span_param": f"{base}/span-flamegraph",
    }
    out = {}
    for name, url in urls.items():
        response = client.get(url)
        assert response.headers["Content-Type"] == "application/json"
        out[name] = {"url": url, "status": response.status_code, "body": response.get_json()}
    store.close()
    out.update(emitted_routes(tmp_path_factory))
    return out


def emitted_routes(tmp_path_factory) -> dict[str, dict]:
    """The routes/requests endpoints over their own store (tests/fixtures/api_requests.py)."""
    store = open_store(tmp_path_factory.mktemp("contract_routes") / "store.db")
    ids = store_contract_requests(store)
    client = create_app(store).test_client()
    urls = {
        "routes": "/api/routes",
        "routes_origins": "/api/routes/origins",
        "routes_host_filtered": "/api/routes?host=web-1&version=1.4",
        "routes_sketches": "/api/routes?from=sketches",
        "routes_versions": "/api/routes/versions?a=1.4&b=1.5",
        "routes_versions_route": "/api/routes/versions?a=1.4&b=1.5&route=/checkout&limit=10",
        "error_versions_same": "/api/routes/versions?a=1.4&b=1.4",
        "routes_latency": "/api/routes/latency?route=/checkout&bins=8&bucket_s=2",
        "routes_utilisation": "/api/routes/utilisation?bucket_s=2",
        "routes_load": "/api/routes/load",
        "routes_load_route": "/api/routes/load?route=/checkout&latency=app",
        "error_load_bad_latency": "/api/routes/load?latency=fast",
        "routes_tail": "/api/routes/tail?route=/checkout&limit=10",
        "routes_tail_few": "/api/routes/tail?route=(unmatched)",
        "requests": "/api/requests?slowest=6",
        "request_detail": f"/api/requests/{ids['slow_request']}",
        "error_bad_since": "/api/routes?since=soon",
        "findings": "/api/findings",
        "findings_route": "/api/findings?route=/feed&limit=1",
        "error_findings_bad_since": "/api/findings?since=soon",
    }
    out = {}
    for name, url in urls.items():
        response = client.get(url)
        out[name] = {"url": url, "status": response.status_code, "body": response.get_json()}
    store.close()
    return out


def test_statuses_are_as_documented(emitted):
    for name, entry in emitted.items():
        expected = 200 if not name.startswith("error_") else (404 if name == "error_not_found" else 400)
        assert entry["status"] == expected, (name, entry["body"])
        if name.startswith("error_"):
            assert set(entry["body"]) == {"error"} and entry["body"]["error"]["status"] == expected
            assert entry["body"]["error"]["message"]


def test_hostile_strings_come_back_verbatim(emitted):
    profile = emitted["profile"]["body"]
    assert HOSTILE_THREAD in [t["name"] for t in profile["threads"]]
    assert HOSTILE_REASON in [r for r, _ in profile["wait_reasons"]]
    assert profile["profile"]["labels"]["__proto__"] == "polluted?"
    names = [f["name"] for f in emitted["flamegraph"]["body"]["functions"]]
    assert HOSTILE_FUNCTION in names and "__proto__" in names and "constructor" in names


def test_fixture_files_match_the_server(emitted):
    """Committed fixtures equal the server's output (regenerate with PROFVIZ_UPDATE_FIXTURES=1)."""
    index = {name: {"url": e["url"], "status": e["status"]} for name, e in emitted.items()}
    expected = {f"{name}.json": fixture_text(e["body"]) for name, e in emitted.items()}
    expected["index.json"] = fixture_text(index)
    if UPDATE:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for stale in FIXTURES.glob("*.json"):
            if stale.name not in expected:
                stale.unlink()
        for file_name, text in expected.items():
            (FIXTURES / file_name).write_text(text, encoding="utf-8")
    stale = sorted(p.name for p in FIXTURES.glob("*.json") if p.name not in expected)
    assert not stale, f"fixtures no endpoint emits any more: {stale}; regenerate with PROFVIZ_UPDATE_FIXTURES=1"
    for file_name, text in expected.items():
        path = FIXTURES / file_name
        assert path.exists(), f"{path} is missing: run PROFVIZ_UPDATE_FIXTURES=1 python -m pytest tests/test_contract.py"
        assert path.read_text(encoding="utf-8") == text, (
            f"the server's JSON differs from {path.relative_to(REPO)}: if the API change is intended, regenerate with "
            "PROFVIZ_UPDATE_FIXTURES=1 python -m pytest tests/test_contract.py and update docs/api.md and web/ with it"
        )


def test_front_end_model_reads_the_fixtures(emitted):
    """``node --test web/tests/``: the front-end's own tests over these fixture files."""
    tests = sorted(p for p in WEB_TESTS.rglob("*") if p.suffix in (".js", ".mjs") and p.is_file()) if WEB_TESTS.is_dir() else []
    if not tests:
        pytest.skip(f"no JavaScript tests in {WEB_TESTS} yet (the front-end's node tests run here once they exist)")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; the JavaScript half of the contract test cannot run")
    result = subprocess.run([node, "--test", *map(str, tests)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"node --test web/tests failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
