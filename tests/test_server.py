"""The profviz server: the real app over a real store (Flask test client) and on a real socket."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from profviz.analysis.calltree import SampleFilter, build_call_tree
from profviz.cli.serve import access_token_for
from profviz.model import State
from profviz.server import ServeError, create_app
from profviz.server.runner import RunningServer
from profviz.server.security import CONTENT_SECURITY_POLICY, COOKIE_NAME
from profviz.store import open_store
from tests.fixtures.api_profiles import HOSTILE_FUNCTION, HOSTILE_THREAD, MS, ORIGIN_NS, contract_profile_a, contract_profile_b

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def web_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text("<!doctype html><title>profviz</title><script type=module src=/js/app.js></script>")
    (root / "js").mkdir()
    (root / "js" / "app.js").write_text("export const answer = 42;\n" + "// padding\n" * 200)
    (root / "css").mkdir()
    (root / "css" / "app.css").write_text("body { margin: 0 }")
    (root / "tests").mkdir()
    (root / "tests" / "secret.test.js").write_text("test")
    (root / ".env").write_text("SECRET=1")
    (root.parent / "outside.txt").write_text("outside the web root")
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("server") / "store.db")
    store.save_profile(contract_profile_a())
    store.save_profile(contract_profile_b())
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(store, web_root):
    return create_app(store, web_root=web_root).test_client()


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    assert "Traceback" not in body["error"]["message"]
    return body["error"]["message"]


# -- API over the test client ----------------------------------------------------------------

def test_profiles_list_newest_first_with_summary(client):
    profiles = client.get("/api/profiles").get_json()["profiles"]
    assert [p["id"] for p in profiles] == [2, 1]
    first = profiles[1]
    assert first["start_ms"] == ORIGIN_NS / 1e6 and first["threads"] == 3 and first["errors"] == 1
    assert first["cpu_ns"] + first["wait_ns"] + first["runnable_ns"] < first["sample_count"] * 10 * MS, "unknown excluded"
    assert [p["id"] for p in client.get("/api/profiles?limit=1").get_json()["profiles"]] == [2]


def test_profile_detail_threads_states_and_range(client, store):
    body = client.get("/api/profiles/1").get_json()
    profile = store.load_profile(1)
    assert body["origin_ns"] == str(ORIGIN_NS)
    first, end = profile.time_range_ns
    assert body["time_range"] == {"start_ns": first - ORIGIN_NS, "end_ns": end - ORIGIN_NS}
    assert [t["index"] for t in body["threads"]] == [0, 1, 2]
    assert body["threads"][1]["name"] == HOSTILE_THREAD
    for thread in body["threads"]:
        parts = thread["cpu_ns"] + thread["wait_ns"] + thread["runnable_ns"] + thread["unknown_ns"]
        assert parts == thread["wall_ns"] == build_call_tree(profile, SampleFilter(threads=[thread["index"]])).root_total_ns
    assert sum(body["states"].values()) == build_call_tree(profile).root_total_ns
    assert body["wait_reasons"][0][1] >= body["wait_reasons"][-1][1]


def test_flamegraph_filters_match_build_call_tree(client, store):
    profile = store.load_profile(1)
    cases = [
        ("", SampleFilter()),
        ("?threads=1", SampleFilter(threads=[1])),
        ("?states=cpu,runnable", SampleFilter(states=[State.ON_CPU, State.RUNNABLE])),
        (f"?start_ns={100 * MS}&end_ns={250 * MS}", SampleFilter(start_ns=ORIGIN_NS + 100 * MS, end_ns=ORIGIN_NS + 250 * MS)),
        (f"?threads=0,2&states=waiting&start_ns={50 * MS}", SampleFilter(threads=[0, 2], states=[State.WAITING], start_ns=ORIGIN_NS + 50 * MS)),
    ]
    for query, selection in cases:
        body = client.get(f"/api/profiles/1/flamegraph{query}").get_json()
        tree = build_call_tree(profile, selection)
        assert body["root_total_ns"] == tree.root_total_ns, query
        assert body["nodes"][0]["total_ns"] == tree.root_total_ns
        assert body["total_samples"] == int(tree.total_samples[0])
        by_id = {n["id"]: n for n in body["nodes"] if n["kind"] != "other"}
        for node_id, node in by_id.items():
            assert node["total_ns"] == int(tree.total_ns[node_id]), (query, node_id)
            assert node["cpu_ns"] == int(tree.total_by_state[State.ON_CPU, node_id])


def test_flamegraph_zoom_returns_path_and_subtree(client):
    full = client.get("/api/profiles/1/flamegraph").get_json()
    names = full["functions"]
    handle = next(n for n in full["nodes"] if n["fn"] >= 0 and names[n["fn"]]["name"] == "handle_request")
    zoomed = client.get(f"/api/profiles/1/flamegraph?root={handle['id']}&min_fraction=0").get_json()
    assert zoomed["root"] == handle["id"] and zoomed["nodes"][0]["id"] == handle["id"]
    assert zoomed["nodes"][0]["parent"] == handle["parent"] and zoomed["nodes"][0]["kind"] == "root"
    assert zoomed["root_total_ns"] == handle["total_ns"]
    assert [p["id"] for p in zoomed["path"]] == [0, handle["parent"]]
    assert [zoomed["functions"][p["fn"]]["name"] for p in zoomed["path"][1:]] == ["<module>"]
    assert error_of(client.get("/api/profiles/1/flamegraph?root=999999"), 404).startswith("no node 999999")


def test_functions_sorted_and_limited(client):
    for sort, key in (("self", "self_ns"), ("total", "total_ns"), ("wait", "wait_ns"), ("samples", "samples")):
        rows = client.get(f"/api/profiles/1/functions?sort={sort}").get_json()["functions"]
        assert [r[key] for r in rows] == sorted((r[key] for r in rows), reverse=True)
    assert len(client.get("/api/profiles/1/functions?limit=2").get_json()["functions"]) == 2


def test_sandwich_and_search_endpoints(client):
    body = client.get("/api/profiles/1/sandwich?function=query").get_json()
    assert body["function"]["name"] == "query" and body["callers"]["nodes"][0]["total_ns"] == body["total_ns"]
    assert "several files" in error_of(client.get("/api/profiles/1/sandwich?function=helper"), 400)
    ok = client.get("/api/profiles/1/sandwich?function=helper&file=/srv/app/shop/tasks.py").get_json()
    assert ok["total_ns"] == 50 * MS
    assert "no function named" in error_of(client.get("/api/profiles/1/sandwich?function=nope"), 404)
    found = client.get("/api/profiles/1/search?q=RECV").get_json()
    assert found["functions"] == [{"name": "recv_into", "file": "/usr/lib/python3.11/socket.py"}]
    assert 0 < found["matched_fraction"] < 1


def test_diff_endpoint_normalises_each_side(client):
    body = client.get("/api/diff?a=1&b=2").get_json()
    assert body["a"]["profile_id"] == 1 and body["b"]["profile_id"] == 2
    for node in body["nodes"]:
        assert node["delta_fraction"] == pytest.approx(node["b_fraction"] - node["a_fraction"], abs=1e-8)
    assert error_of(client.get("/api/diff?b=2"), 400).startswith("parameter a")
    assert error_of(client.get("/api/diff?a=1&b=77"), 404).startswith("no profile with id 77")


@pytest.mark.parametrize("url, fragment", [
    ("/api/profiles/1/flamegraph?min_fraction=2", "min_fraction"),
    ("/api/profiles/1/flamegraph?min_fraction=nan", "min_fraction"),
    ("/api/profiles/1/flamegraph?threads=7", "thread index 7"),
    ("/api/profiles/1/flamegraph?threads=main", "threads"),
    ("/api/profiles/1/flamegraph?states=cpu,sleepy", "unknown state"),
    (f"/api/profiles/1/flamegraph?start_ns={5 * MS}&end_ns={5 * MS}", "end_ns"),
    ("/api/profiles/1/flamegraph?max_nodes=0", "max_nodes"),
    ("/api/profiles/1/flamegraph?root=-3", "root"),
    ("/api/profiles/1/functions?sort=name", "sort"),
    ("/api/profiles/1/timeline?width=0", "width"),
    ("/api/profiles/1/timeline?width=abc", "width"),
    ("/api/profiles/1/search?q=", "q"),
    ("/api/profiles/1/search?q=" + "a" * 201, "at most 200"),
    ("/api/profiles/1/search?q=(%3F&regex=1", "invalid regular expression"),
    ("/api/profiles/1/search?q=x&regex=maybe", "regex"),
    ("/api/profiles/1/sandwich", "function"),
    ("/api/diff?a=1&base=c", "base"),
    ("/api/diff?a=1&a_states=nope", "a_states"),
])
def test_bad_parameters_are_400_naming_the_parameter(client, url, fragment):
    assert fragment in error_of(client.get(url), 400)


@pytest.mark.parametrize("url", ["/api/profiles/99", "/api/profiles/abc/flamegraph", "/api/profiles/99999999999999999999999",
                                 "/api/profiles/0/timeline", "/api/nothing/here"])
def test_unknown_profiles_and_urls_are_404_json(client, url):
    message = error_of(client.get(url), 404)
    assert "/tmp/" not in message, "the server's store path is not disclosed"


def test_wrong_method_is_405_json(client):
    error_of(client.post("/api/profiles"), 405)


def test_internal_errors_are_500_json_without_internals(store, web_root, caplog):
    app = create_app(store, web_root=web_root)

    def boom():
        raise ZeroDivisionError("secret internal detail")

    app.add_url_rule("/api/boom", view_func=boom)
    message = error_of(app.test_client().get("/api/boom"), 500)
    assert "secret" not in message and "ZeroDivision" not in message
    assert "secret internal detail" in caplog.text, "the details go to the server log"


# -- security headers, hostile strings, pages --------------------------------------------------

def test_security_headers_on_api_pages_static_and_errors(client):
    for url in ("/api/profiles", "/", "/profiles/1", "/js/app.js", "/api/profiles/99"):
        headers = client.get(url).headers
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert "script-src 'self'" in headers["Content-Security-Policy"] and "unsafe" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_hostile_strings_are_escaped_json_data(client):
    response = client.get("/api/profiles/1/flamegraph?min_fraction=0")
    raw = response.get_data(as_text=True)
    assert "<script>" not in raw and "<svg" not in raw and "\u2028" not in raw
    assert "\\u003cscript\\u003e" in raw
    names = [f["name"] for f in response.get_json()["functions"]]
    assert HOSTILE_FUNCTION in names
    detail = client.get("/api/profiles/1")
    assert "<" not in detail.get_data(as_text=True)
    assert detail.get_json()["profile"]["cmdline"] == contract_profile_a().meta["cmdline"]


def test_pages_and_static_files(client):
    for url in ("/", "/profiles/1", "/diff", "/profiles/1/flamegraph"):
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == "text/html", url
        assert b"<title>profviz</title>" in response.data
    js = client.get("/js/app.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert client.get("/css/app.css").mimetype == "text/css"
    for url in ("/tests/secret.test.js", "/.env", "/js/missing.js", "/../outside.txt", "/js/..%2f..%2foutside.txt"):
        assert client.get(url).status_code == 404, url


def test_large_responses_are_gzipped_on_request(client):
    plain = client.get("/api/profiles/1/flamegraph?min_fraction=0")
    packed = client.get("/api/profiles/1/flamegraph?min_fraction=0", headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip" and "Content-Encoding" not in plain.headers
    assert json.loads(gzip.decompress(packed.data)) == plain.get_json()
    assert len(packed.data) < len(plain.data) / 3


def test_missing_web_ui_is_a_clear_404(store, tmp_path):
    message = error_of(create_app(store, web_root=tmp_path).test_client().get("/"), 404)
    assert "web UI is missing" in message


def test_loopback_server_rejects_foreign_host_headers(client):
    message = error_of(client.get("/api/profiles", headers={"Host": "evil.example:8080"}), 403)
    assert "Host" in message
    assert client.get("/api/profiles", headers={"Host": "127.0.0.1:8080"}).status_code == 200


# -- tokens ------------------------------------------------------------------------------------

def test_non_loopback_without_token_is_refused_or_gets_one(store, capsys):
    with pytest.raises(ServeError, match="without an access token"):
        create_app(store, host="0.0.0.0")
    with pytest.raises(ServeError, match="without an access token"):
        create_app(store, host="192.168.1.20")
    generated = access_token_for("0.0.0.0", None)
    assert generated and len(generated) >= 20
    assert "WARNING" in capsys.readouterr().err
    assert access_token_for("0.0.0.0", TOKEN) == TOKEN
    assert access_token_for("127.0.0.1", None) is None
    create_app(store, host="0.0.0.0", token=generated)


def test_token_is_required_on_every_request(store, web_root):
    client = create_app(store, host="0.0.0.0", token=TOKEN, web_root=web_root).test_client()
    for url in ("/api/profiles", "/", "/profiles/1", "/js/app.js", "/api/profiles/1/flamegraph", "/api/nothing"):
        message = error_of(client.get(url), 401)
        assert "token" in message
    assert client.get("/api/profiles", headers={"Authorization": "Bearer wrong-token-x"}).status_code == 401
    assert client.get("/api/profiles?token=wrong").status_code == 401
    assert client.get("/api/profiles", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_query_token_sets_a_strict_cookie_and_redirects_pages(store, web_root):
    client = create_app(store, host="0.0.0.0", token=TOKEN, web_root=web_root).test_client()
    page = client.get(f"/profiles/1?token={TOKEN}&view=flame")
    assert page.status_code == 303 and page.headers["Location"] == "/profiles/1?view=flame"
    cookie = page.headers["Set-Cookie"]
    assert f"{COOKIE_NAME}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/profiles/1").status_code == 200, "the cookie now authorises"
    assert client.get("/api/profiles/1").status_code == 200
    fresh = create_app(store, host="0.0.0.0", token=TOKEN, web_root=web_root).test_client()
    api = fresh.get(f"/api/profiles?token={TOKEN}")
    assert api.status_code == 200 and COOKIE_NAME in api.headers["Set-Cookie"]


# -- real servers on 127.0.0.1 ----------------------------------------------------------------

def test_real_server_on_a_free_port(store, web_root):
    app = create_app(store, web_root=web_root, host="0.0.0.0", token=TOKEN)
    with RunningServer(app, "127.0.0.1", 0) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/"
        assert requests.get(server.url + "api/profiles", timeout=10).status_code == 401
        session = requests.Session()
        page = session.get(server.url + f"profiles/1?token={TOKEN}", timeout=10)
        assert page.status_code == 200 and page.url == server.url + "profiles/1", "redirected to the URL without the token"
        body = session.get(server.url + "api/profiles/1/flamegraph", timeout=10)
        assert body.headers["Content-Encoding"] == "gzip", "requests asks for gzip; the server sends it"
        assert body.json()["root_total_ns"] == build_call_tree(store.load_profile(1)).root_total_ns
        js = session.get(server.url + "js/app.js", timeout=10)
        assert js.headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("arguments, path", [(["serve", "--port", "0"], ""), (["show", "1", "--serve"], "profiles/1")])
def test_cli_serves_on_a_free_loopback_port_and_prints_the_url(store, arguments, path):
    """``profviz serve --port 0`` and ``profviz show ID --serve`` print the URL and answer on it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-c", "from profviz.cli import main; main()", *arguments, "--store", str(store.path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not lines or not lines[-1].startswith("http://"):
            line = process.stdout.readline()
            assert line, f"no URL printed; output: {lines}"
            lines.append(line.strip())
        url = lines[-1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/" + path, url), url
        if path:
            assert any("top functions" in line for line in lines), "show printed its summary first"
        base = url[: url.index("/", len("http://")) + 1]
        deadline = time.monotonic() + 10
        while True:
            try:
                listed = requests.get(base + "api/profiles", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert [p["id"] for p in listed.json()["profiles"]] == [2, 1]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0, "SIGTERM stops the server as Ctrl-C does"
    stderr = process.stderr.read()
    assert "serving profiles from" in stderr and "profviz: stopped" in stderr


def test_cli_server_stops_on_sigint_even_when_started_with_sigint_ignored(store):
    """A background job inherits SIGINT ignored; profviz serve still stops cleanly on it."""
    command = [sys.executable, "-c", "from profviz.cli import main; main()", "serve", "--port", "0", "--store", str(store.path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert process.stdout.readline().startswith("http://127.0.0.1:")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and "profviz: stopped" in process.stderr.read()
