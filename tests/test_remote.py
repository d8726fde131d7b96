"""Pushing to a collector (profviz/store/remote, profviz/server/api_ingest.py): the wire format
round trip and its refusals, the collector's answers, and the sender's buffer, retries and drops
against a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid

import numpy as np
import pytest
import requests

from profviz.model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, StackNodes, State
from profviz.server import create_app
from profviz.server.runner import RunningServer
from profviz.store import StoreError, open_store
from profviz.store.remote import HTTPStore, wire

TOKEN = "collector-token-for-tests"
T0 = 1_700_000_000_000_000_000
HOSTILE = "<img src=x onerror=alert(1)>\u202e"


def rows(count: int, first: int = 0, route: str = "/items/<id>") -> list[RequestRow]:
    return [RequestRow(pid=7, tid=8, route=route, method="GET", path=f"/items/{i}", status=200 if i % 9 else 500,
                       start_ns=T0 + i * 1_000_000, duration_ns=2_000_000 + i, cpu_ns=1000, labels={"host": "a", "i": i})
            for i in range(first, first + count)]


def batch_of(items: list[RequestRow]) -> RequestBatch:
    batch = RequestBatch()
    for row in items:
        batch.add_row(row)
    return batch


def plain_profile() -> Profile:
    profile = Profile({"kind": "request", "pid": 7, "start_ns": T0, "labels": {"route": HOSTILE}})
    thread = profile.add_thread(7, 8, "worker")
    stack = profile.intern_frames([("main", "app.py", 1), (HOSTILE, "app.py", 9)])
    for i in range(20):
        profile.append_sample(T0 + i * 10_000_000, thread, stack, 10_000_000, State.WAITING if i % 2 else State.ON_CPU,
                              "socket recv db:5432" if i % 2 else None)
    return profile


def full_batch() -> tuple[RequestBatch, list[Span]]:
    batch = batch_of(rows(5))
    batch.keep(plain_profile(), 1)
    batch.keep(SharedStackProfile({"kind": "request", "pid": 7, "labels": {"capture": "tail"}}, "proc-7", (7, 8, "worker"),
                                  [T0, T0 + 10], [1, 2], [10, 10], [int(State.ON_CPU), int(State.WAITING)], [None, "lock"]), 3)
    batch.stack_nodes = StackNodes("proc-7", [(0, -1, "main", "app.py", 1), (1, 0, "handler", "app.py", 5), (2, 0, HOSTILE, "x.py", 7)])
    spans = [Span("ab" * 16, "cd" * 8, None, "SELECT", "client", "ok", T0, T0 + 5000, pid=7, tid=8,
                  attributes={"db.statement": "SELECT 1"})]
    return batch, spans


# -- the wire format ------------------------------------------------------------------------------


def test_a_batch_round_trips_through_the_wire_format():
    batch, spans = full_batch()
    got, got_spans = wire.decode(wire.encode(batch, spans))
    assert list(got.rows())[0] == list(batch.rows())[0] and len(got) == 5
    assert [request for _, request in got.profiles] == [1, 3]
    plain, shared = got.profiles[0][0], got.profiles[1][0]
    assert plain.frame(int(plain.stack_frame[int(plain.columns()["stack"][0])])).function == HOSTILE
    assert np.array_equal(plain.columns()["weight_ns"], batch.profiles[0][0].columns()["weight_ns"])
    assert (shared.source, shared.stacks, shared.reasons) == ("proc-7", [1, 2], [None, "lock"])
    assert got.stack_nodes.nodes == batch.stack_nodes.nodes
    assert got_spans[0].attributes == {"db.statement": "SELECT 1"} and got_spans[0].pid == 7


@pytest.mark.parametrize("body, status, words", [
    (b"\x1f\x8b\x08garbage", 400, "not valid gzip"),
    (gzip.compress(b"{not json"), 400, "not valid JSON"),
    (gzip.compress(json.dumps({"format": "other", "version": 1}).encode()), 400, "expected 'profviz-batch'"),
    (gzip.compress(json.dumps({"format": "profviz-batch", "version": 1, "requests": [1] * 14}).encode()), 400, "requests[0].route"),
    (gzip.compress(json.dumps({"format": "profviz-batch", "version": 1, "requests": [], "profiles": [{"request": 3, "profile": {}}]}).encode()),
     400, "the batch has 0 requests"),
    (gzip.compress(json.dumps({"format": "profviz-batch", "version": 1, "spans": [{"trace_id": "x", "span_id": "cd" * 8, "name": "n",
                                                                                 "kind": "client", "status": "ok", "source": "processor",
                                                                                 "start_ns": 1, "end_ns": 2}]}).encode()), 400, "trace id"),
    (gzip.compress(b" " * (wire.MAX_DECODED_BYTES + 10)), 413, "decompresses to over"),
    (b"x" * (wire.MAX_BODY_BYTES + 1), 413, "over the"),
], ids=["gzip", "json", "format", "field", "link", "span", "bomb", "size"])
def test_bodies_that_break_a_rule_are_refused_naming_it(body, status, words):
    with pytest.raises(wire.WireError) as raised:
        wire.decode(body)
    assert raised.value.status == status and words in str(raised.value)


# -- the collector ----------------------------------------------------------------------------------


@pytest.fixture
def collector(tmp_path):
    store_path = tmp_path / "collector.db"
    with RunningServer(create_app(str(store_path), token=TOKEN), "127.0.0.1", 0) as server:
        yield server.url.rstrip("/"), store_path


def push(url: str, body: bytes, *, token: str = TOKEN, batch_id: str | None = None, **headers) -> requests.Response:
    return requests.post(url + "/v1/ingest", data=body, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Encoding": "gzip", "X-Profviz-Batch": batch_id or str(uuid.uuid4()), **headers})


def test_the_collector_stores_a_push_once_and_refuses_bad_ones_storing_nothing(collector):
    url, store_path = collector
    batch, spans = full_batch()
    body = wire.encode(batch, spans)
    assert push(url, body, token="wrong-token-123").status_code == 401
    assert push(url, b"\x1f\x8b\x08garbage").status_code == 400
    assert push(url, body, batch_id="bad id with spaces").status_code == 400
    store = open_store(store_path)
    assert store.query_requests() == [] and store.list_profiles() == [] and store.count_spans() == 0
    first = push(url, body, batch_id="b-1")
    assert first.status_code == 200 and first.json()["requests"] == 5
    again = push(url, body, batch_id="b-1")
    assert again.status_code == 200 and again.json()["profile_ids"] == first.json()["profile_ids"]
    stored = store.query_requests()
    assert len(stored) == 5 and stored[1].profile_id == first.json()["profile_ids"][0]
    assert store.load_profile(stored[3].profile_id).sample_count == 2  # the shared profile, with its pushed nodes
    assert store.count_spans() == 1 and len(store.list_profiles()) == 2


def test_a_server_without_a_token_takes_no_pushes(tmp_path):
    with RunningServer(create_app(str(tmp_path / "s.db")), "127.0.0.1", 0) as server:
        answer = push(server.url.rstrip("/"), wire.encode(batch_of(rows(2))))
    assert answer.status_code == 403 and "--token" in answer.json()["error"]["message"]


# -- the sender -------------------------------------------------------------------------------------


def test_the_sender_pushes_every_batch_and_reads_are_refused(collector):
    url, store_path = collector
    sender = open_store(url.replace("http://", f"http://:{TOKEN}@"))
    assert isinstance(sender, HTTPStore) and TOKEN not in sender.location
    sender.check_writable()
    for n in range(20):
        sender.write_batch(batch_of(rows(10, n * 10)))
    batch, spans = full_batch()
    sender.write_batch(batch)
    sender.insert_spans(spans)
    assert sender.flush(30)
    assert sender.stats()["requests_sent"] == 205 and sender.stats()["batches_dropped"] == 0
    (profile_id,) = sender.save_profiles([plain_profile()])
    store = open_store(store_path)
    assert len(store.query_requests()) == 205 and store.load_profile(profile_id).sample_count == 20
    with pytest.raises(StoreError, match="takes pushes only"):
        sender.query_requests()
    sender.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_collector_down_then_up_loses_nothing(tmp_path):
    port = free_port()
    sender = HTTPStore(f"http://127.0.0.1:{port}", token=TOKEN)
    for n in range(30):
        sender.write_batch(batch_of(rows(10, n * 10)))
    time.sleep(1.5)  # the sender retries against a closed port meanwhile
    assert sender.stats()["retries"] >= 2 and sender.stats()["batches_sent"] == 0
    with RunningServer(create_app(str(tmp_path / "c.db"), token=TOKEN), "127.0.0.1", port):
        assert sender.flush(30)
        stats = sender.stats()
        assert stats["requests_sent"] == 300 and stats["batches_dropped"] == 0
        assert len(open_store(tmp_path / "c.db").query_requests()) == 300
    sender.close()


def test_a_full_buffer_drops_the_oldest_batches_counting_them_and_keeps_stack_nodes(tmp_path, capsys):
    port = free_port()
    one = len(wire.encode(batch_of(rows(50))))
    sender = HTTPStore(f"http://127.0.0.1:{port}", token=TOKEN, buffer_bytes=one * 5)
    nodes = RequestBatch()
    nodes.stack_nodes = StackNodes("proc-9", [(0, -1, "main", "app.py", 1)])
    sender.write_batch(nodes)
    for n in range(20):
        sender.write_batch(batch_of(rows(50, n * 50)))
    stats = sender.stats()
    assert stats["batches_dropped"] >= 14 and stats["requests_dropped"] == 50 * stats["batches_dropped"]
    assert "dropping the oldest batches" in capsys.readouterr().err
    with RunningServer(create_app(str(tmp_path / "c.db"), token=TOKEN), "127.0.0.1", port):
        assert sender.flush(30)
        stats = sender.stats()
        kept = open_store(tmp_path / "c.db").query_requests()
        assert len(kept) == stats["requests_sent"] == 1000 - stats["requests_dropped"]
        assert {r.path for r in kept} == {f"/items/{i}" for i in range(1000 - len(kept), 1000)}  # the newest
        assert open_store(tmp_path / "c.db").read("SELECT count(*) FROM stack_nodes")[0][0] == 1
    sender.close()


def test_a_sender_without_a_token_or_with_a_bad_url_says_what_to_do(monkeypatch):
    monkeypatch.delenv("PROFVIZ_TOKEN", raising=False)
    with pytest.raises(StoreError, match="needs its access token"):
        open_store("https://collector.example:8080")
    with pytest.raises(StoreError, match="cannot reach it"):
        HTTPStore(f"http://127.0.0.1:{free_port()}", token=TOKEN).check_writable()


def test_requests_out_of_range_are_left_out_alone_and_origin_labels_become_bounded_strings():
    batch = batch_of(rows(3))
    batch.values[6] = -5  # the first request's start_ns: before 1970
    batch.values[14 + 12] = json.dumps({"version": 2, "host": "h" * 500, "env": None})
    batch.keep(plain_profile(), 1)
    got, _ = wire.decode(wire.encode(batch))
    assert len(got) == 2 and got.profiles[0][1] == 0, "the profile follows its request to its new index"
    assert json.loads(got.values[12]) == {"version": "2", "host": "h" * 200}
    late = Span("ab" * 16, "cd" * 8, None, "x", "client", "ok", time.time_ns() + 3 * 86_400 * 10**9, time.time_ns() + 4 * 86_400 * 10**9)
    with pytest.raises(wire.WireError, match="more than a day from now"):
        wire.decode(wire.encode(spans=[late]))


def test_a_batch_the_store_cannot_hold_is_refused_with_422_and_not_retried(collector):
    url, store_path = collector
    huge = plain_profile()
    huge.meta["pid"] = 2**70
    answer = push(url, wire.encode(profiles=[huge]))
    assert answer.status_code == 422 and "cannot hold" in answer.json()["error"]["message"]
    assert str(store_path) not in answer.text
    sender = HTTPStore(url, token=TOKEN)
    sender.save_profiles([plain_profile()])
    sender.insert_spans([])
    sender._enqueue(wire_entry(wire.encode(profiles=[huge])))
    sender.write_batch(batch_of(rows(4)))
    assert sender.flush(30)
    stats = sender.stats()
    assert stats["batches_refused"] == 1 and stats["requests_sent"] == 4, "the refused batch did not block the next one"
    sender.close()


def wire_entry(body: bytes):
    from profviz.store.remote.sender import _Entry

    return _Entry(str(uuid.uuid4()), body, 0, False)


def test_retry_after_is_bounded(tmp_path):
    """A proxy answering 503 with a Retry-After of a day (or not a number) does not idle the sender past MAX_RETRY_S."""
    import http.server
    import threading

    from profviz.store.remote.sender import MAX_RETRY_S

    answers = iter(["86400", "1e400", "soon"])

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Retry-After", next(answers))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = HTTPStore(f"http://127.0.0.1:{server.server_address[1]}", token=TOKEN)
        waits = [sender._post(wire_entry(wire.encode()))[2] for _ in range(3)]
        assert waits == [MAX_RETRY_S, MAX_RETRY_S, None]
    finally:
        server.shutdown()


def test_an_oversized_push_gets_413_and_stores_nothing(collector):
    url, store_path = collector
    answer = push(url, b"\x1f\x8b" + b"x" * (wire.MAX_BODY_BYTES + 10))
    assert answer.status_code == 413 and "at most" in answer.json()["error"]["message"]
    assert open_store(store_path).query_requests() == []
