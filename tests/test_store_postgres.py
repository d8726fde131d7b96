"""The PostgreSQL backend beyond the shared contract (tests/test_store_contract.py): its errors,
day partitions, writers in many processes, a server restart, text PostgreSQL refuses, and its
statements kept out of the profiled app's traces. A real server: the session's throwaway cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from profviz.model import RequestBatch, RequestRow, Span
from profviz.store import StoreError, open_store, store_location
from profviz.store.postgres.database import StoreConnection
from tests.postgres_cluster import PASSWORD, create_database, drop_database, restart_cluster

T0 = 1_700_000_000_000_000_000
DAY = 86_400 * 10**9


@pytest.fixture
def url(postgres):
    found = create_database(postgres)
    yield found
    drop_database(postgres, found)


def rows(count: int, start_ns: int, step_ns: int, route: str = "/items/<id>", pid: int = 1) -> list[RequestRow]:
    return [RequestRow(pid=pid, tid=2, route=route, method="GET", path=f"/items/{i}", status=200, start_ns=start_ns + i * step_ns,
                       duration_ns=1_000_000 + i, labels={"n": i}) for i in range(count)]


def batch_of(items: list[RequestRow]) -> RequestBatch:
    batch = RequestBatch()
    for row in items:
        batch.add_row(row)
    return batch


def test_a_url_opens_a_postgresql_store_and_its_location_has_no_password(url):
    assert store_location(url) == ("postgresql", url)
    with open_store(url) as store:
        assert PASSWORD not in store.location and "***" in store.location
        assert type(store).__name__ == "PostgresStore"


def test_pgprofviz_store_env_names_the_store(url, monkeypatch):
    monkeypatch.setenv("PROFVIZ_STORE", url)
    assert store_location(None) == ("postgresql", url)


@pytest.mark.parametrize("case, expected", [
    ("password", "refused the user or password"),
    ("database", "create the database first"),
    ("port", "did not answer"),
    ("foreign", "holds other tables"),
])
def test_errors_say_what_to_do_and_never_show_the_password(postgres, url, case, expected):
    if case == "password":
        target = url.replace(PASSWORD, "wrong-pw")
    elif case == "database":
        target = url.rsplit("/", 1)[0] + "/no_such_db"
    elif case == "port":
        with __import__("socket").socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        target = url.replace(f":{postgres.port}/", f":{free}/")
    else:
        with psycopg.Connection.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE orders (id int)")
        target = url
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        open_store(target)
    message = str(raised.value)
    assert expected in message and PASSWORD not in message and "wrong-pw" not in message
    assert "\n" not in message and time.monotonic() - started < 15


def test_requests_go_to_day_partitions_which_retention_drops(url):
    store = open_store(url)
    store.write_batch(batch_of(rows(30, T0 // DAY * DAY, DAY // 10)))  # three days
    names = [r[0] for r in store.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                       " WHERE i.inhparent = 'requests'::regclass ORDER BY 1")]
    assert len(names) == 3 and all(name.startswith("requests_d2023") for name in names)
    counts = [store.fetch(f'SELECT count(*) FROM "{name}"')[0][0] for name in names]
    assert counts == [10, 10, 10]
    gone = store.retain(T0 // DAY * DAY + 2 * DAY + 1)
    assert gone["requests"] == 20
    assert len(store.fetch("SELECT 1 FROM pg_inherits WHERE inhparent = 'requests'::regclass")) == 1
    store.close()


def test_text_postgresql_refuses_is_kept_with_nul_replaced(url):
    store = open_store(url)
    store.write_batch(batch_of([RequestRow(pid=1, tid=2, route="/a\x00b", method="GET", path="/a\x00b?x", status=200,
                                           start_ns=T0, duration_ns=5, error="boom\x00", labels={"k\x00": "v\x00"})]))
    row = store.query_requests()[0]
    assert (row.route, row.path, row.error, row.labels) == ("/a\ufffdb", "/a\ufffdb?x", "boom\ufffd", {"k\ufffd": "v\ufffd"})
    store.insert_spans([Span("ab" * 16, "cd" * 8, None, "q\x00", "client", "ok", T0, T0 + 10, pid=1, tid=2, thread_name="t\x00",
                             attributes={"db.statement": "SELECT 1 -- \x00"})])
    span = store.query_spans()[0]
    assert (span.name, span.thread_name) == ("q\ufffd", "t\ufffd") and "\x00" not in span.attributes["db.statement"]
    store.close()


WRITER = """
import sys
from profviz.model import RequestBatch, RequestRow
from profviz.store import open_store
store = open_store(sys.argv[1])
pid = int(sys.argv[2])
for b in range(20):
    batch = RequestBatch()
    for i in range(50):
        batch.add_row(RequestRow(pid=pid, tid=1, route="/hot", method="GET", path="/hot", status=500 if i % 10 == 0 else 200,
                                 start_ns={t0} + (b * 50 + i) * 1_000_000, duration_ns=1_000_000 + i * 1000))
    store.write_batch(batch)
store.close()
"""


def test_writers_in_many_processes_merge_into_the_same_sketches_without_losing_a_request(url):
    """Four processes write 1,000 requests each into the same minutes at once: the rows and the
    sketches (merged under row locks) count every one."""
    open_store(url).close()
    code = WRITER.format(t0=T0)
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(pid)], cwd=os.getcwd(), stderr=subprocess.PIPE, text=True)
             for pid in range(4)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    store = open_store(url)
    assert len(store.query_requests()) == 4000
    (sketch,) = store.route_sketches()
    assert (sketch.count, sketch.errors) == (4000, 400)
    store.close()


def test_a_server_restart_mid_writes_loses_no_batch(postgres, url):
    """``pg_ctl restart -m fast`` while a thread writes batches: each write is retried on a new
    connection until the server is back, and every batch is stored once."""
    store = open_store(url)
    written, errors = [], []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set() and n < 2000:
            try:
                store.write_batch(batch_of(rows(10, T0 + n * 10**9, 1000, pid=n)))
                written.append(n)
            except StoreError as exc:
                errors.append(str(exc))
            n += 1

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.5)
    restart_cluster(postgres)
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=60)
    assert not errors and len(written) > 20
    stored = store.query_requests()
    by_batch = {}
    for row in stored:
        by_batch[row.pid] = by_batch.get(row.pid, 0) + 1
    assert set(by_batch) == set(written) and set(by_batch.values()) == {10}
    store.close()


def test_the_stores_statements_are_not_traced_by_the_apps_psycopg_instrumentation(url):
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    try:
        with psycopg.connect(url) as app_conn:  # the app's own connection is traced: the instrumentation works
            app_conn.execute("SELECT 1")
        traced = len(exporter.get_finished_spans())
        store = open_store(url)
        store.write_batch(batch_of(rows(5, T0, 1000)))
        assert len(store.query_requests()) == 5
        store.close()
        assert traced >= 1 and len(exporter.get_finished_spans()) == traced
        assert StoreConnection.connect is not psycopg.Connection.connect
    finally:
        PsycopgInstrumentor().uninstrument()


def test_a_span_sent_again_with_another_start_is_stored_once(url):
    """As SQLite's unique (trace, span) key: the copy is ignored even where its start puts it in another partition."""
    store = open_store(url)
    span = Span("ab" * 16, "cd" * 8, None, "q", "client", "ok", T0, T0 + 10, pid=1, tid=2)
    moved = Span("ab" * 16, "cd" * 8, None, "q", "client", "ok", T0 + DAY, T0 + DAY + 10, pid=1, tid=2)
    assert store.insert_spans([span, moved]) == 1
    assert store.insert_spans([moved]) == 0
    assert [s.start_ns for s in store.query_spans()] == [T0]
    store.close()


def test_a_batch_written_again_after_a_lost_answer_is_stored_once(url):
    """The id a PostgreSQL store gives a batch makes a retry of the same batch (its commit's answer
    lost with the connection) find it stored."""
    store = open_store(url)
    batch = batch_of(rows(5, T0, 1000))
    store.write_batch(batch)
    assert batch.batch_id
    store.write_batch(batch)
    assert len(store.query_requests()) == 5
    store.close()


def test_the_middleware_writes_straight_to_postgresql(url):
    """A real waitress app whose middleware has store="postgresql://...": every answered request is stored."""
    import signal

    import requests as http

    from tests.served import logged, serve

    process, app_url = serve("waitress", url, SERVED_APP_WRITER_S="0.2")
    try:
        answered = [path for path in (f"/work/pg/{n}" for n in range(40)) if http.get(app_url + path, timeout=10).text == path]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM), logged(process)[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
    store = open_store(url)
    assert len(answered) == 40 and sorted(r.path for r in store.query_requests()) == sorted(answered)
    store.close()
