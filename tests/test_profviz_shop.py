"""Tests for samples/profviz_shop: the database, the helper services, each bottleneck endpoint and the load generator.

The app runs on a real waitress server on 127.0.0.1 against a full default-size
database; assertions compare against the database and the helper services'
own records rather than fixed values.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import statistics
import time

import pytest
import requests

from profviz_shop.app import REPORT_QUERIES, RemoteLogHandler, create_app
from profviz_shop.data import AUTHOR_COUNT, DEFAULT_POST_ROWS, PRODUCT_COUNT, SCHEMA_VERSION, build_database, read_build_info
from profviz_shop.loadgen import LoadResult, RequestRecord, run_load, weighted_paths
from profviz_shop.serving import waitress_in_thread
from profviz_shop.services import ExternalService, SlowLogSink

LOG_SINK_DELAY_S = 0.05


@pytest.fixture(scope="module")
def full_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "shop.sqlite3"
    started = time.perf_counter()
    build_database(path)
    print(f"full database build: {time.perf_counter() - started:.2f}s")
    return path


@pytest.fixture(scope="module")
def log_sink():
    with SlowLogSink(delay_s=LOG_SINK_DELAY_S) as sink:
        yield sink


@pytest.fixture(scope="module")
def external():
    with ExternalService(delay_s=0.005) as service:
        yield service


@pytest.fixture(scope="module")
def app(full_db, log_sink, external):
    return create_app(full_db, log_sink_url=log_sink.url, external_url=external.url, trace_sql=True)


@pytest.fixture(scope="module")
def base_url(app):
    with waitress_in_thread(app, threads=8) as server:
        yield f"http://127.0.0.1:{server.effective_port}"


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def read_db(path, sql, params=()):
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def last_trace(app, path):
    traces = [trace for trace in app.extensions["shop"].traces if trace.path == path]
    assert traces, f"no trace recorded for {path}"
    return traces[-1]


def query_plan(db_path, statement):
    return " | ".join(row[3] for row in read_db(db_path, "EXPLAIN QUERY PLAN " + statement))


# --- database -------------------------------------------------------------------------------


def test_default_build_has_200k_posts_and_a_search_column_with_and_without_index(full_db):
    assert DEFAULT_POST_ROWS >= 200_000
    assert read_db(full_db, "SELECT COUNT(*) FROM posts")[0][0] == DEFAULT_POST_ROWS
    assert read_db(full_db, "SELECT COUNT(*) FROM authors")[0][0] == AUTHOR_COUNT
    assert read_db(full_db, "SELECT COUNT(*) FROM products")[0][0] == PRODUCT_COUNT
    assert read_db(full_db, "SELECT COUNT(*) FROM posts WHERE title IS NOT title_indexed")[0][0] == 0
    assert read_db(full_db, "SELECT COUNT(*) FROM posts WHERE author_id NOT IN (SELECT id FROM authors)")[0][0] == 0
    assert read_db(full_db, "PRAGMA user_version")[0][0] == SCHEMA_VERSION
    indexed_columns = {
        column
        for (_, index_name, *_rest) in read_db(full_db, "PRAGMA index_list(posts)")
        for (_, _, column) in read_db(full_db, f"PRAGMA index_info({index_name})")
    }
    assert "title_indexed" in indexed_columns
    assert "title" not in indexed_columns
    assert read_db(full_db, "PRAGMA journal_mode")[0][0] == "wal"


def test_build_reuses_matching_database_and_rebuilds_on_different_parameters(tmp_path):
    path = tmp_path / "small.sqlite3"
    build_database(path, rows=2_000, seed=1)
    first = os.stat(path)
    build_database(path, rows=2_000, seed=1)
    second = os.stat(path)
    assert (first.st_ino, first.st_mtime_ns) == (second.st_ino, second.st_mtime_ns)

    build_database(path, rows=3_000, seed=1)
    assert read_db(path, "SELECT COUNT(*) FROM posts")[0][0] == 3_000
    assert read_build_info(path) == {"schema_version": str(SCHEMA_VERSION), "rows": "3000", "seed": "1"}
    assert sorted(p.name for p in tmp_path.iterdir() if ".building-" in p.name) == []


def test_build_replaces_a_file_that_is_not_a_shop_database(tmp_path):
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"not a database at all")
    build_database(path, rows=100)
    assert read_db(path, "SELECT COUNT(*) FROM posts")[0][0] == 100


def test_build_is_deterministic_per_seed(tmp_path):
    def fingerprint(path):
        rows = read_db(path, "SELECT * FROM posts ORDER BY id") + read_db(path, "SELECT * FROM authors ORDER BY id")
        return hashlib.sha256(repr(rows).encode()).hexdigest()

    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        build_database(tmp_path / f"{name}.sqlite3", rows=500, seed=seed)
    assert fingerprint(tmp_path / "a.sqlite3") == fingerprint(tmp_path / "b.sqlite3")
    assert fingerprint(tmp_path / "a.sqlite3") != fingerprint(tmp_path / "c.sqlite3")


def test_create_app_refuses_a_missing_database(tmp_path):
    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "absent.sqlite3", log_sink_url="http://127.0.0.1:9", external_url="http://127.0.0.1:9")


# --- helper services ------------------------------------------------------------------------


def test_slow_log_sink_waits_and_records_lines():
    with SlowLogSink(delay_s=0.1) as sink:
        started = time.perf_counter()
        response = requests.post(f"{sink.url}/log", data=b"first line\nsecond line", timeout=5)
        elapsed = time.perf_counter() - started
        assert response.status_code == 204
        assert elapsed >= 0.1
        assert sink.lines() == ["first line", "second line"]
        assert sink.received_count == 2
        url = sink.url
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/log", data=b"after stop", timeout=2)


def test_external_service_answers_per_item_and_counts_requests():
    with ExternalService(delay_s=0.05) as service:
        started = time.perf_counter()
        first = requests.get(f"{service.url}/items/42", timeout=5)
        assert time.perf_counter() - started >= 0.05
        second = requests.get(f"{service.url}/items/43", timeout=5)
        missing = requests.get(f"{service.url}/nothing", timeout=5)
        assert first.json()["item_id"] == 42 and second.json()["item_id"] == 43
        assert first.json()["price_cents"] != second.json()["price_cents"]
        assert missing.status_code == 404
        assert service.request_count == 2
        assert service.requested_ids() == [42, 43]


# --- app endpoints --------------------------------------------------------------------------


def test_health(base_url, http):
    response = http.get(f"{base_url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_posts_is_n_plus_one_and_posts_fast_is_one_join(app, base_url, http, full_db):
    slow = http.get(f"{base_url}/posts", timeout=10)
    fast = http.get(f"{base_url}/posts/fast", timeout=10)
    assert slow.status_code == fast.status_code == 200
    assert slow.json() == fast.json()

    posts = slow.json()["posts"]
    expected_ids = [row[0] for row in read_db(full_db, "SELECT id FROM posts ORDER BY created_at DESC LIMIT 50")]
    assert [post["id"] for post in posts] == expected_ids
    author = read_db(full_db, "SELECT name FROM authors WHERE id = ?", (posts[0]["author"]["id"],))[0][0]
    assert posts[0]["author"]["name"] == author

    assert int(slow.headers["X-Shop-Sql-Statements"]) == 1 + len(posts)
    assert int(fast.headers["X-Shop-Sql-Statements"]) == 1
    slow_statements = last_trace(app, "/posts").statements
    assert sum("FROM authors WHERE id =" in statement for statement in slow_statements) == len(posts)
    assert "JOIN authors" in last_trace(app, "/posts/fast").statements[0]

    limited = http.get(f"{base_url}/posts", params={"limit": 10}, timeout=10)
    assert int(limited.headers["X-Shop-Sql-Statements"]) == 11


def test_routes_use_converters(app, base_url, http, full_db):
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/posts/<int:post_id>", "/authors/<int:author_id>/posts", "/tags/<tag>"} <= rules

    post_id, title, author_id = read_db(full_db, "SELECT id, title, author_id FROM posts WHERE id = 1234")[0]
    detail = http.get(f"{base_url}/posts/{post_id}", timeout=5).json()["post"]
    assert (detail["id"], detail["title"], detail["author"]["id"]) == (post_id, title, author_id)
    assert http.get(f"{base_url}/posts/{DEFAULT_POST_ROWS + 1}", timeout=5).status_code == 404
    assert http.get(f"{base_url}/posts/not-a-number", timeout=5).status_code == 404

    by_author = http.get(f"{base_url}/authors/{author_id}/posts", timeout=5).json()["posts"]
    assert by_author and all(
        read_db(full_db, "SELECT author_id FROM posts WHERE id = ?", (post["id"],))[0][0] == author_id for post in by_author
    )
    by_tag = http.get(f"{base_url}/tags/latency", timeout=5).json()["posts"]
    assert len(by_tag) == 20 and {post["tag"] for post in by_tag} == {"latency"}


def test_slow_search_scans_and_fast_search_uses_the_index(app, base_url, http, full_db):
    query = "brass lan"
    slow = http.get(f"{base_url}/search/slow", params={"q": query}, timeout=10)
    fast = http.get(f"{base_url}/search/fast", params={"q": query}, timeout=10)
    assert slow.status_code == fast.status_code == 200
    assert slow.json()["results"] == fast.json()["results"]
    expected = read_db(
        full_db, "SELECT id, title FROM posts WHERE substr(title, 1, ?) = ? ORDER BY title, id LIMIT 20", (len(query), query)
    )
    assert [(row["id"], row["title"]) for row in slow.json()["results"]] == expected
    assert len(expected) == 20

    (slow_sql,) = last_trace(app, "/search/slow").statements
    (fast_sql,) = last_trace(app, "/search/fast").statements
    slow_plan = query_plan(full_db, slow_sql)
    fast_plan = query_plan(full_db, fast_sql)
    assert "SCAN posts" in slow_plan and "INDEX" not in slow_plan
    assert "SEARCH posts USING" in fast_plan and "INDEX posts_title_indexed" in fast_plan
    assert "SCAN" not in fast_plan


def test_slow_search_is_measurably_slower_than_fast_search(base_url, http):
    def median_latency(path):
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            assert http.get(f"{base_url}{path}", params={"q": "quiet riv"}, timeout=10).status_code == 200
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    assert median_latency("/search/slow") > 3 * median_latency("/search/fast")


def test_search_escapes_wildcards_and_requires_a_query(base_url, http):
    assert http.get(f"{base_url}/search/slow", timeout=5).status_code == 400
    for path in ("/search/slow", "/search/fast"):
        assert http.get(f"{base_url}{path}", params={"q": "%"}, timeout=10).json()["results"] == []
        assert http.get(f"{base_url}{path}", params={"q": "_rass"}, timeout=10).json()["results"] == []


def test_checkout_logs_each_step_synchronously_to_the_remote_sink(base_url, http, log_sink, full_db):
    audit_handlers = logging.getLogger("shop.audit").handlers
    assert sum(isinstance(handler, RemoteLogHandler) for handler in audit_handlers) == 1
    orders_before = read_db(full_db, "SELECT COUNT(*) FROM orders")[0][0]
    log_sink.clear()

    started = time.perf_counter()
    response = http.get(f"{base_url}/checkout", params=[("product", 3), ("product", 17)], timeout=10)
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    body = response.json()
    prices = dict(read_db(full_db, "SELECT id, price_cents FROM products WHERE id IN (3, 17)"))
    assert [item["id"] for item in body["items"]] == [3, 17]
    assert body["subtotal_cents"] == sum(prices.values())
    assert body["total_cents"] == body["subtotal_cents"] + round(body["subtotal_cents"] * 0.2)
    assert read_db(full_db, "SELECT COUNT(*) FROM orders")[0][0] == orders_before + 1

    lines = log_sink.lines()
    assert len(lines) == 4
    assert all(" shop.audit " in line for line in lines)
    assert "checkout started items=2" in lines[0]
    assert "sku=SKU-00003" in lines[1] and "sku=SKU-00017" in lines[2]
    assert f"order_id={body['order_id']}" in lines[3]
    assert elapsed >= 4 * LOG_SINK_DELAY_S


def test_export_serialises_a_large_payload(base_url, http, full_db):
    response = http.get(f"{base_url}/export", timeout=30)
    assert response.status_code == 200
    assert len(response.content) > 4_000_000
    payload = json.loads(response.content)
    assert payload["count"] == len(payload["posts"]) == 20_000
    assert [post["id"] for post in payload["posts"][:3]] == [1, 2, 3]
    sample = payload["posts"][12_345]
    body, author_id = read_db(full_db, "SELECT body, author_id FROM posts WHERE id = ?", (sample["id"],))[0]
    assert (sample["body"], sample["author"]["id"]) == (body, author_id)


def test_report_opens_a_connection_per_query_and_report_fast_reuses_one(app, base_url, http, full_db):
    slow = http.get(f"{base_url}/report", timeout=10)
    fast = http.get(f"{base_url}/report/fast", timeout=10)
    assert slow.status_code == fast.status_code == 200
    assert slow.json() == fast.json()
    assert len(REPORT_QUERIES) >= 18
    assert int(slow.headers["X-Shop-Db-Connections"]) == len(REPORT_QUERIES)
    assert int(fast.headers["X-Shop-Db-Connections"]) <= 1
    assert int(slow.headers["X-Shop-Sql-Statements"]) == len(REPORT_QUERIES)
    report = slow.json()["report"]
    assert report["author_count"] == AUTHOR_COUNT
    latest_python = read_db(full_db, "SELECT MAX(created_at) FROM posts WHERE tag = 'python'")[0][0]
    assert report["latest_python_post_at"] == latest_python


def test_enrich_calls_the_external_service_once_per_item(base_url, http, external):
    external.clear()
    response = http.get(f"{base_url}/enrich", timeout=10)
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 10
    assert external.request_count == 10
    assert external.requested_ids() == [item["id"] for item in items] == list(range(1, 11))
    assert all(item["external"]["item_id"] == item["id"] for item in items)

    external.clear()
    http.get(f"{base_url}/enrich", params={"items": 4}, timeout=10)
    assert external.request_count == 4


def test_outbound_failures_do_not_hang_the_app(full_db):
    with ExternalService() as dead:
        dead_url = dead.url
    app = create_app(full_db, log_sink_url=dead_url, external_url=dead_url)
    client = app.test_client()
    assert client.get("/enrich?items=2").status_code == 502
    previous = logging.raiseExceptions
    logging.raiseExceptions = False
    try:
        assert client.get("/checkout?product=1").status_code == 200
    finally:
        logging.raiseExceptions = previous


def test_app_serves_concurrent_mixed_load(base_url):
    paths = ["/posts", "/posts/fast", "/search/fast?q=amber", "/checkout", "/report", "/posts/77", "/enrich?items=2"]
    result = run_load(base_url, paths, requests=35, concurrency=8, max_seconds=30)
    assert result.sent == 35
    assert [record.status for record in result.records] == [200] * 35
    assert result.errors == 0


# --- load generator -------------------------------------------------------------------------


def test_loadgen_sends_exactly_the_requested_number(external):
    external.clear()
    result = run_load(external.url, ["/items/1", "/items/2"], requests=25, concurrency=5)
    assert external.request_count == 25
    assert sorted(external.requested_ids()) == [1] * 13 + [2] * 12
    assert result.sent == 25 and result.errors == 0 and not result.hit_time_limit
    assert [record.index for record in result.records] == list(range(25))
    assert all(record.bytes > 0 and record.latency_s > 0 for record in result.records)
    assert [record.path for record in result.records[:3]] == ["/items/1", "/items/2", "/items/1"]


def test_loadgen_stops_at_the_wall_clock_cap():
    with ExternalService(delay_s=0.2) as slow_service:
        result = run_load(slow_service.url, ["/items/9"], requests=1_000, concurrency=2, max_seconds=1.0, timeout_s=5)
        assert result.hit_time_limit
        assert result.elapsed_s < 2.0
        assert 4 <= result.sent <= 14
        time.sleep(0.3)
        assert slow_service.request_count == result.sent


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:8000",
        "https://127.0.0.1:8000",
        "http://127.0.0.2:8000",
        "http://10.0.0.1",
        "http://127.0.0.1.example.test",
        "http://user@127.0.0.1:8000",
        "http://[::1]:8000",
        "http://127.0.0.1:8000/prefix",
        "ftp://127.0.0.1",
    ],
)
def test_loadgen_refuses_non_loopback_urls(base_url):
    with pytest.raises(ValueError):
        run_load(base_url, ["/health"], requests=1)


@pytest.mark.parametrize("path", ["health", "//example.test/x", "/a b", "/x@evil"])
def test_loadgen_refuses_paths_that_could_leave_the_server(path):
    with pytest.raises(ValueError):
        run_load("http://127.0.0.1:9", [path], requests=1)


@pytest.mark.parametrize(
    "limits",
    [{"requests": 0}, {"requests": 10**9}, {"concurrency": 0}, {"concurrency": 1_000}, {"max_seconds": 0}, {"max_seconds": 10**6}],
)
def test_loadgen_refuses_unbounded_settings(limits):
    with pytest.raises(ValueError):
        run_load("http://127.0.0.1:9", ["/health"], **limits)


def test_loadgen_records_connection_failures():
    with ExternalService() as closed:
        closed_url = closed.url
    result = run_load(closed_url, ["/items/1"], requests=3, concurrency=1, timeout_s=2)
    assert result.sent == 3 and result.errors == 3
    assert all(record.status is None and record.error for record in result.records)
    assert result.latencies() == []


def test_weighted_paths_apportions_exactly_and_deterministically():
    mix = weighted_paths({"/health": 9, "/posts": 1}, 100, seed=3)
    assert mix.count("/health") == 90 and mix.count("/posts") == 10
    assert mix == weighted_paths({"/health": 9, "/posts": 1}, 100, seed=3)
    assert mix != sorted(mix)
    three_way = weighted_paths({"/a": 1, "/b": 1, "/c": 1}, 10)
    assert sorted(three_way.count(path) for path in ("/a", "/b", "/c")) == [3, 3, 4]
    with pytest.raises(ValueError):
        weighted_paths({"/a": 0}, 10)
    with pytest.raises(ValueError):
        weighted_paths({"http://example.test/": 1}, 10)


def test_load_result_percentiles_use_nearest_rank():
    records = tuple(
        RequestRecord(index=i, path="/a" if i % 2 else "/b", status=200, started_s=0.0, latency_s=(i + 1) / 10, bytes=1)
        for i in range(10)
    )
    result = LoadResult(base_url="http://127.0.0.1", requested=10, concurrency=1, elapsed_s=1.0, hit_time_limit=False, records=records)
    assert result.percentile(0.5) == pytest.approx(0.5)
    assert result.percentile(0.9) == pytest.approx(0.9)
    assert result.percentile(1.0) == pytest.approx(1.0)
    assert result.percentile(1.0, path="/b") == pytest.approx(0.9)
    assert result.latencies("/a") == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
