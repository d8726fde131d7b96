"""The sample shop's database across a socket (profviz_shop.dbserver and its client, netdb): the
same answers as the SQLite file in process, a round trip per statement and a handshake per
connection, so the shop's N+1 and connection-per-query routes cost what they cost in production."""

from __future__ import annotations

import statistics
import time

import pytest
import requests

from profviz_shop import netdb
from profviz_shop.app import REPORT_QUERIES, create_app
from profviz_shop.data import build_database
from profviz_shop.dbserver import DatabaseServer
from profviz_shop.serving import waitress_in_thread
from profviz_shop.services import ExternalService, SlowLogSink

ROWS = 20_000


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("dbserver") / "shop.sqlite3"
    build_database(path, rows=ROWS)
    return path


@pytest.fixture(scope="module")
def database(db_path):
    with DatabaseServer(db_path, latency_ms=1.0, connect_latency_ms=5.0) as server:
        yield server


@pytest.fixture(scope="module")
def shops(db_path, database):
    """Base URLs of the shop over the database server ("net") and over the file in process ("local")."""
    with SlowLogSink(delay_s=0.001) as sink, ExternalService(delay_s=0.001) as external:
        net = create_app(db_path, log_sink_url=sink.url, external_url=external.url, trace_sql=True, db_address=database.address)
        local = create_app(db_path, log_sink_url=sink.url, external_url=external.url)
        with waitress_in_thread(net, threads=4) as a, waitress_in_thread(local, threads=4) as b:
            yield {"net": f"http://127.0.0.1:{a.effective_port}", "local": f"http://127.0.0.1:{b.effective_port}", "app": net}


def median_ms(url: str, runs: int = 7) -> float:
    times = []
    with requests.Session() as session:
        for _ in range(runs):
            started = time.perf_counter()
            assert session.get(url, timeout=30).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@pytest.mark.parametrize("path", ["/posts", "/posts/fast", "/posts/77", "/report", "/search/slow?q=amber", "/tags/python"])
def test_answers_are_those_of_the_file_in_process(shops, path):
    net = requests.get(shops["net"] + path, timeout=30)
    local = requests.get(shops["local"] + path, timeout=30)
    assert net.status_code == local.status_code == 200
    assert net.json() == local.json()


def test_checkout_writes_its_order_through_the_server(shops, db_path):
    answer = requests.get(shops["net"] + "/checkout?product=3&product=5", timeout=30).json()
    connection = netdb.connect(shops["app"].extensions["shop"].db_address)
    (row,) = connection.execute("SELECT item_count, total_cents FROM orders WHERE id = ?", (answer["order_id"],)).fetchall()
    assert (row["item_count"], row["total_cents"]) == (2, answer["total_cents"])
    connection.close()


def test_the_n_plus_one_and_a_connection_per_query_cost_round_trips_and_handshakes(shops):
    posts, posts_fast = median_ms(shops["net"] + "/posts"), median_ms(shops["net"] + "/posts/fast")
    assert posts >= 3 * posts_fast and posts >= 51 * 1.0, (posts, posts_fast)  # 51 statements, 1 ms each at least
    report, report_fast = median_ms(shops["net"] + "/report"), median_ms(shops["net"] + "/report/fast")
    assert report >= 3 * report_fast and report >= len(REPORT_QUERIES) * 6.0, (report, report_fast)
    response = requests.get(shops["net"] + "/report", timeout=30)
    assert int(response.headers["X-Shop-Db-Connections"]) == len(REPORT_QUERIES)
    assert int(response.headers["X-Shop-Sql-Statements"]) == len(REPORT_QUERIES)


def test_errors_say_what_failed(database):
    connection = netdb.connect(database.address)
    with pytest.raises(netdb.DatabaseError, match="no such table"):
        connection.execute("SELECT * FROM nowhere")
    assert connection.execute("SELECT 1 AS one").fetchone()["one"] == 1, "the connection survives a failed statement"
    connection.close()
    with pytest.raises(netdb.OperationalError, match="closed"):
        connection.execute("SELECT 1")


def test_the_server_stops_with_its_parent_and_refuses_afterwards(db_path):
    server = DatabaseServer(db_path, latency_ms=0, connect_latency_ms=0)
    address = server.start()
    process = server.process
    netdb.connect(address).close()
    server.stop()
    assert process.returncode == 0, "it exits cleanly when its parent's pipe closes"
    with pytest.raises(netdb.OperationalError, match="cannot connect"):
        netdb.connect(address, timeout_s=2)


def test_a_timed_out_connection_is_closed_and_the_app_replaces_it(db_path):
    with DatabaseServer(db_path, latency_ms=500, connect_latency_ms=0) as slow:
        connection = netdb.connect(slow.address, timeout_s=0.1)
        with pytest.raises(netdb.OperationalError, match="failed"):
            connection.execute("SELECT 1")
        assert connection.closed, "out of step with the server after a timeout: it cannot be used again"
        with pytest.raises(netdb.OperationalError, match="closed"):
            connection.execute("SELECT 1")
