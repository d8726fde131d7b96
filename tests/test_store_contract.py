"""The store contract (profviz/store/base.py), once for every backend: profiles, requests, batches,
shared-stack profiles and spans. Backend-specific behaviour is in tests/test_store_<backend>.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http import HTTPStatus

import numpy as np
import pytest

from profviz.collect.sampler import StackSampler
from profviz.collect.stack_table import samples_to_profile
from profviz.model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, SpanError, StackNodes, State
from profviz.store import REQUEST_COLUMN_NAMES, ProfileNotFound, RequestNotFound, StoreError
from profviz.store.spans import MAX_NAME_CHARS
from tests.store_backends import backend  # noqa: F401 - a fixture

T0 = 1_700_000_000_000_000_000
HOSTILE = '<script>alert(1)</script>\u202e'


def make_profile(start_ns: int, hostile: bool = False) -> Profile:
    profile = Profile({"kind": "attach", "pid": 42, "cmdline": "python app.py", "rate_hz": 100.0,
                       "start_ns": start_ns, "duration_ns": 2_000_000_000, "error_count": 3,
                       "labels": {"env": "test"}, "notes": ["partial: target exited"]})
    name = HOSTILE + "x" * 10_000 if hostile else "handler"
    thread = profile.add_thread(42, 4242, "worker")
    stack = profile.intern_frames([("main", "app.py", 1), (name, "app.py", 7)])
    for i in range(500):
        state = State.ON_CPU if i % 3 else State.WAITING
        profile.append_sample(start_ns + i * 10_000_000, thread, stack, 10_000_000, state,
                              "socket recv 127.0.0.1:5432" if state == State.WAITING else None)
    return profile


def request_row(i: int, **fields) -> RequestRow:
    values = dict(pid=4000 + i % 3, tid=7, route="/posts/<id>", method="GET", path=f"/posts/{i}", status=200,
                  start_ns=T0 + i * 1_000_000, duration_ns=2_000_000 + i, cpu_ns=1_000_000, response_bytes=512,
                  labels={"request_id": f"r{i}"})
    values.update(fields)
    return RequestRow(**values)


def batch_of(rows) -> RequestBatch:
    batch = RequestBatch()
    for row in rows:
        batch.add_row(row)
    return batch


def assert_same_samples(loaded: Profile, original: Profile) -> None:
    assert loaded.strings == original.strings
    assert list(loaded.stack_prefix) == list(original.stack_prefix)
    for name, column in original.columns().items():
        assert np.array_equal(loaded.columns()[name], column), name


# -- profiles ---------------------------------------------------------------------------------


def test_a_profile_round_trips_with_its_tables_samples_and_metadata(backend):
    store = backend.open()
    original = make_profile(T0, hostile=True)
    profile_id = store.save_profile(original)
    assert original.meta["id"] == profile_id
    assert_same_samples(store.load_profile(profile_id), original)
    meta = store.profile_meta(profile_id)
    assert meta["kind"] == "attach" and meta["sample_count"] == 500 and meta["error_count"] == 3
    assert meta["labels"] == {"env": "test"} and meta["notes"] == ["partial: target exited"]
    assert meta["cpu_ns"] + meta["wait_ns"] == 500 * 10_000_000 and meta["runnable_ns"] == 0
    assert meta["thread_count"] == 1 and meta["format_version"] == 1
    assert store.profile_bytes(profile_id) > 0 and store.profile_bytes(profile_id + 1000) == 0


def test_profiles_list_newest_first_filter_by_kind_and_delete(backend):
    store = backend.open()
    old = store.save_profile(make_profile(1_000))
    other = make_profile(3_000)
    other.meta["kind"] = "request"
    middle = store.save_profile(other)
    new = store.save_profile(make_profile(5_000))
    assert [m["id"] for m in store.list_profiles()] == [new, middle, old]
    assert [m["id"] for m in store.list_profiles(kind="request")] == [middle]
    assert [m["id"] for m in store.list_profiles(limit=1)] == [new]
    store.delete_profile(old)
    assert [m["id"] for m in store.list_profiles()] == [new, middle]
    for call in (store.load_profile, store.profile_meta, store.delete_profile, lambda i: store.set_labels(i, {})):
        with pytest.raises(ProfileNotFound, match=f"no profile with id {old}"):
            call(old)


def test_labels_can_be_replaced(backend):
    store = backend.open()
    profile_id = store.save_profile(make_profile(1_000))
    store.set_labels(profile_id, {"deploy": HOSTILE, "n": 3})
    assert store.profile_meta(profile_id)["labels"] == {"deploy": HOSTILE, "n": 3}
    assert backend.open().load_profile(profile_id).meta["labels"] == {"deploy": HOSTILE, "n": 3}


def test_a_batch_of_profiles_is_saved_as_each_one_alone(backend):
    store = backend.open()
    before = store.save_profile(make_profile(1))
    store.delete_profile(before)  # a deleted id is never handed out again
    profiles = [make_profile(1_000 + i, hostile=(i == 3)) for i in range(57)]
    ids = store.save_profiles(profiles)
    assert len(set(ids)) == 57 and min(ids) > before and ids == sorted(ids)
    assert [p.meta["id"] for p in profiles] == ids
    for profile, profile_id in zip(profiles, ids):
        loaded = store.load_profile(profile_id)
        assert loaded.meta["start_ns"] == profile.meta["start_ns"]
        assert_same_samples(loaded, profile)
    alone = store.save_profile(make_profile(1_005))
    assert store.profile_meta(ids[5]) | {"id": 0, "created_ns": 0} == store.profile_meta(alone) | {"id": 0, "created_ns": 0}
    assert store.save_profile(make_profile(7)) > max(ids)
    assert store.save_profiles([]) == []


def test_a_batch_with_one_bad_profile_writes_nothing(backend):
    store = backend.open()
    profiles = [make_profile(1), make_profile(2), make_profile(3)]
    profiles[1].meta["pid"] = object()  # no backend can store it
    with pytest.raises(StoreError):
        store.save_profiles(profiles)
    assert store.list_profiles() == [] and all("id" not in p.meta for p in profiles)
    assert store.save_profiles([make_profile(4)]) and len(store.list_profiles()) == 1


def test_processes_write_to_one_store_at_once(backend):
    backend.open()
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.test_store_contract import make_profile\nfrom profviz.store import open_store\n"
        "s = open_store(%r)\nfor i in range(15): s.save_profile(make_profile(i))\n" % (os.getcwd(), backend.location)
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    assert len(backend.open().list_profiles()) == 45


# -- requests ---------------------------------------------------------------------------------


def test_requests_are_read_back_by_window_route_and_slowness(backend):
    store = backend.open()
    rows = [request_row(i, route="/a" if i % 2 else "/b", method="POST" if i == 3 else "GET") for i in range(10)]
    assert store.insert_requests(rows) == 10
    got = store.query_requests()
    assert [r.path for r in got] == [f"/posts/{i}" for i in range(10)]
    assert [r.id for r in got] == sorted(r.id for r in got) and len({r.id for r in got}) == 10
    first = got[0]
    assert (first.pid, first.tid, first.route, first.status, first.start_ns, first.duration_ns, first.cpu_ns) == (
        4000, 7, "/b", 200, T0, 2_000_000, 1_000_000)
    assert first.response_bytes == 512 and first.labels == {"request_id": "r0"}
    assert first.error is None and first.profile_id is None
    window = store.query_requests(since_ns=T0 + 2_000_000, until_ns=T0 + 5_000_000)
    assert [r.path for r in window] == ["/posts/2", "/posts/3", "/posts/4"]
    assert [r.path for r in store.query_requests(route="/a", method="get")] == ["/posts/1", "/posts/5", "/posts/7", "/posts/9"]
    assert [r.path for r in store.query_requests(slowest=3)] == ["/posts/9", "/posts/8", "/posts/7"]
    assert [r.path for r in store.query_requests(limit=2)] == ["/posts/8", "/posts/9"]
    assert store.query_requests(with_profile=True) == []


def test_request_lookups(backend):
    store = backend.open()
    profile_id = store.save_profile(make_profile(T0))
    store.insert_requests([request_row(0, error="ValueError: boom", profile_id=profile_id), request_row(1)])
    first, second = store.query_requests()
    assert store.request_by_id(first.id) == first and first.error == "ValueError: boom"
    assert store.request_for_profile(profile_id) == first.id and store.request_for_profile(profile_id + 1) is None
    assert store.latest_request_ns() == T0 + 1_000_000 + 2_000_001
    with pytest.raises(RequestNotFound, match=f"no request with id {second.id + 100}"):
        store.request_by_id(second.id + 100)
    assert backend.open().query_requests() == [first, second]


def test_request_columns_give_the_analysis_columns(backend):
    store = backend.open()
    store.insert_requests([request_row(0, labels={"capacity": 8}), request_row(1, status=HTTPStatus.NOT_FOUND)])
    columns = store.request_columns()
    assert tuple(columns) == REQUEST_COLUMN_NAMES
    assert columns["capacity"] == [8, None] and columns["status"] == [200, 404] and type(columns["status"][1]) is int
    assert columns["duration_ns"] == [2_000_000, 2_000_001]
    assert store.request_columns(route="/nowhere")["id"] == [] and store.latest_request_ns() is not None
    assert backend.open().request_columns(since_ns=T0 + 1)["id"] == columns["id"][1:]


def test_plain_values_are_stored_for_int_and_str_subclasses(backend):
    store = backend.open()
    row = request_row(0, status=HTTPStatus.NOT_FOUND, labels={"capacity": 4})
    assert store.insert_requests([row]) == 1
    (stored,) = store.query_requests()
    assert stored.status == 404 and type(stored.status) is int and stored.labels == {"capacity": 4}


def test_a_batch_links_its_profiles_to_their_requests(backend):
    store = backend.open()
    batch = batch_of(request_row(i) for i in range(3))
    kept, aggregate = make_profile(T0), make_profile(T0 + 5)
    batch.keep(kept, 1)
    batch.keep(aggregate)
    ids = store.write_batch(batch)
    assert ids == [kept.meta["id"], aggregate.meta["id"]] and ids[0] < ids[1]
    assert [r.profile_id for r in store.query_requests()] == [None, ids[0], None]
    assert store.request_for_profile(ids[0]) is not None and store.request_for_profile(ids[1]) is None
    assert store.write_batch(RequestBatch()) == []


def test_a_failed_batch_writes_nothing_and_its_requests_alone_can_follow(backend):
    store = backend.open()
    batch = batch_of(request_row(i) for i in range(3))
    bad = make_profile(T0)
    bad.meta["pid"] = object()
    batch.keep(bad, 0)
    with pytest.raises(StoreError):
        store.write_batch(batch)
    assert store.query_requests() == [] and store.list_profiles() == []
    store.write_batch(batch.without_profiles())
    assert [r.profile_id for r in store.query_requests()] == [None] * 3


def test_a_deleted_profile_leaves_its_requests_without_one(backend):
    store = backend.open()
    kept, deleted = store.save_profile(make_profile(1)), store.save_profile(make_profile(2))
    store.insert_requests([request_row(0, profile_id=kept), request_row(1, profile_id=deleted)])
    store.delete_profile(deleted)
    assert [r.profile_id for r in store.query_requests()] == [kept, None]
    store.delete_profile(kept)
    assert [r.profile_id for r in store.query_requests()] == [None, None]


def test_requests_the_backend_refuses_are_dropped_alone_with_a_notice(backend, capsys):
    store = backend.open()
    rows = [request_row(0), request_row(1, start_ns=2 ** 70), request_row(2, route="/bad\udc80"), request_row(3)]
    store.insert_requests(rows)
    assert [r.path for r in store.query_requests()] == ["/posts/0", "/posts/3"]
    err = capsys.readouterr().err
    assert err.startswith("profviz: dropped") and err.count("refuses") == 2


# -- shared-stack profiles ----------------------------------------------------------------------


def sampled_stacks() -> tuple[StackSampler, list[int]]:
    """A sampler's table with real stacks of this thread, some sharing prefixes, one hostile name."""
    sampler = StackSampler(100)
    ident = threading.get_ident()
    stack_ids = []

    def leaf():
        stack_ids.append(sampler._stack_of(ident, sys._getframe()))

    def branch(depth):
        if depth:
            return branch(depth - 1)
        leaf()

    hostile = {}
    exec("def hostile(leaf):\n    leaf()\n", hostile)
    hostile["hostile"].__code__ = hostile["hostile"].__code__.replace(
        co_name="<img src=x onerror=alert(1)>", co_qualname="<img src=x onerror=alert(1)>", co_filename="</script>'\"&.py"
    )
    for n in range(6):
        branch(n % 3)
        leaf()
    hostile["hostile"](leaf)
    return sampler, stack_ids


def shared(sampler: StackSampler, stack_ids: list[int], source: str = "proc-a") -> SharedStackProfile:
    times = [1_000_000 * i for i in range(len(stack_ids))]
    return SharedStackProfile(
        {"kind": "request", "pid": 7, "cmdline": "GET /x", "labels": {"route": "/x", "capture": "tail"}}, source,
        (7, 8, "worker-1"), times, stack_ids, [1_000_000] * len(stack_ids),
        [int(State.ON_CPU if i % 3 else State.WAITING) for i in range(len(stack_ids))],
        [None if i % 3 else ("socket recv 10.0.0.5:5432" if i % 2 else "<b>lock</b>") for i in range(len(stack_ids))],
    )


def save_shared(store, profile: SharedStackProfile, sampler: StackSampler, nodes: bool = True) -> int:
    batch = RequestBatch()
    batch.keep(profile, None)
    if nodes:
        batch.stack_nodes = StackNodes(profile.source, sampler.table.nodes(0, len(sampler.table)))
    return store.write_batch(batch)[0]


def frames_per_sample(profile) -> list[list[tuple[str, str, int]]]:
    out = []
    for node in profile.columns()["stack"]:
        frames, node = [], int(node)
        while node >= 0:
            frame = profile.frame(int(profile.stack_frame[node]))
            frames.append((frame.function, frame.file, frame.line))
            node = profile.stack_prefix[node]
        out.append(frames[::-1])
    return out


def test_route_sketches_count_every_request_and_agree_with_exact_percentiles(backend):
    """Sketches kept as requests are stored: per (route, method) every request counted once, its
    errors, and percentiles within the sketch's 1% of the exact value at the same rank, over the
    whole store, a window (to the minute) and from another process's view of the store."""
    from profviz.model.latency_sketch import RELATIVE_ACCURACY

    rng = np.random.default_rng(3)
    rows = []
    for i in range(6000):  # ~2.5 hours, three routes, queue times on one of them
        route = ("/a", "/b", "/c")[i % 3]
        rows.append(request_row(i, route=route, start_ns=T0 + i * 1_500_000_000, duration_ns=int(rng.lognormal(15, 1)) + 1,
                                status=500 if i % 17 == 0 else 200,
                                queue_ns=int(rng.integers(0, 5_000_000)) if route == "/c" else None))
    store = backend.open()
    for start in range(0, len(rows), 700):  # batches, as a middleware writes them
        store.write_batch(batch_of(rows[start:start + 700]))

    def check(sketches, chosen):
        assert {s.route: s.count for s in sketches} == {r: sum(1 for x in chosen if x.route == r) for r in ("/a", "/b", "/c")}
        for sketch in sketches:
            mine = [x for x in chosen if x.route == sketch.route]
            assert sketch.errors == sum(1 for x in mine if x.status >= 500)
            assert (sketch.total is not None) == (sketch.route == "/c")
            for values, sketched in ((sorted(x.duration_ns for x in mine), sketch.app),
                                     (sorted(x.total_ns for x in mine), sketch.total or sketch.app)):
                for q in (0.5, 0.95, 0.99):
                    exact = values[int(q * (len(values) - 1))]
                    assert abs(sketched.quantile_ns(q) - exact) <= RELATIVE_ACCURACY * exact, (sketch.route, q)
                assert sketched.max_ns == values[-1]

    check(store.route_sketches(), rows)
    since, until = T0 + 1000 * 1_500_000_000, T0 + 4000 * 1_500_000_000
    minute = 60 * 10**9
    low, high = since // minute * minute, -(-until // minute) * minute  # the edge minutes count whole
    check(store.route_sketches(since_ns=since, until_ns=until), [r for r in rows if low <= r.start_ns < high])
    store.close()
    check(backend.open().route_sketches(), rows)


def test_a_shared_stack_profile_loads_as_the_profile_its_samples_make(backend):
    sampler, stack_ids = sampled_stacks()
    store = backend.open()
    pending = shared(sampler, stack_ids)
    profile_id = save_shared(store, pending, sampler)
    assert pending.meta["id"] == profile_id
    loaded = backend.open().load_profile(profile_id)
    built = samples_to_profile(
        sampler.table, list(zip(pending.times, pending.stacks, pending.states, pending.weights, pending.reasons)),
        pid=7, tid=8, thread_name="worker-1", meta={},
    )
    assert frames_per_sample(loaded) == frames_per_sample(built) == [sampler.table.frames(s) for s in stack_ids]
    assert any(function == "<img src=x onerror=alert(1)>" for frames in frames_per_sample(loaded) for function, _, _ in frames)
    for column in ("time_ns", "weight_ns", "state"):
        assert list(loaded.columns()[column]) == list(built.columns()[column])
    assert [loaded.strings[r] if r >= 0 else None for r in loaded.columns()["reason"]] == pending.reasons
    assert "<b>lock</b>" in pending.reasons and "socket recv 10.0.0.5:5432" in pending.reasons
    assert [(t.pid, t.tid, t.name) for t in loaded.threads] == [(7, 8, "worker-1")]
    assert len(loaded.stack_prefix) == len(built.stack_prefix)  # each stack once
    meta = store.profile_meta(profile_id)
    waiting = sum(w for w, s in zip(pending.weights, pending.states) if s == int(State.WAITING))
    assert (meta["sample_count"], meta["thread_count"], meta["wait_ns"]) == (len(stack_ids), 1, waiting)
    assert meta["cpu_ns"] == sum(pending.weights) - waiting and meta["labels"]["route"] == "/x"


def test_two_sources_with_the_same_node_ids_do_not_mix(backend):
    store = backend.open()
    first, first_ids = sampled_stacks()
    save_shared(store, shared(first, first_ids, "proc-a"), first)
    other = StackSampler(100)
    ident = threading.get_ident()

    def elsewhere():
        return other._stack_of(ident, sys._getframe())

    other_ids = [elsewhere()]
    other_id = save_shared(store, shared(other, other_ids, "proc-b"), other)
    assert other_ids[0] < len(first.table)  # the same node id exists under proc-a
    assert frames_per_sample(store.load_profile(other_id)) == [other.table.frames(other_ids[0])]


def test_a_shared_stack_profile_without_its_nodes_is_refused_with_a_fix(backend):
    sampler, stack_ids = sampled_stacks()
    store = backend.open()
    profile_id = save_shared(store, shared(sampler, stack_ids), sampler, nodes=False)
    with pytest.raises(StoreError, match=f"profile {profile_id} .* is damaged .*missing from the store.*profviz delete {profile_id}"):
        store.load_profile(profile_id)


def test_show_prints_a_shared_stack_profile(backend):
    sampler, stack_ids = sampled_stacks()
    profile_id = save_shared(backend.open(), shared(sampler, stack_ids), sampler)
    out = subprocess.run(
        [sys.executable, "-m", "profviz", "show", str(profile_id), "--json", "--store", backend.location],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (shown["id"], shown["kind"], shown["sample_count"]) == (profile_id, "request", len(stack_ids))
    assert [(t["tid"], t["name"], t["samples"]) for t in shown["threads"]] == [(8, "worker-1", len(stack_ids))]
    functions = {f["function"]: f for f in shown["functions"]}
    assert functions["sampled_stacks.<locals>.leaf"]["samples"] == len(stack_ids)
    assert functions["<img src=x onerror=alert(1)>"]["file"] == "</script>'\"&.py"


# -- spans ------------------------------------------------------------------------------------


def span(n: int, start_ms: int, end_ms: int, *, pid: int | None = 10, tid: int | None = 20, trace: str = "ab", **fields) -> Span:
    return Span(trace * 16, f"{n:016x}", None, fields.pop("name", f"span {n}"), "client", "ok", T0 + start_ms * 1_000_000,
                T0 + end_ms * 1_000_000, pid=pid, tid=tid, attributes=fields.pop("attributes", {}), **fields)


def test_span_facts_are_the_statements_and_calls_as_columns(backend):
    """What the findings detectors read: each statement (normalised) and HTTP call with its thread
    and times; not a statement's span inside another's (an ORM around its driver), not a span
    without a thread, not a span stored twice; filtered by process and window."""
    store = backend.open()
    sql = {"db.system": "sqlite", "db.name": "/srv/shop.db", "db.statement": "SELECT name FROM authors WHERE id = 7"}
    orm = span(1, 0, 40, attributes={**sql, "db.statement": "SELECT name FROM authors WHERE id = 8"})
    driver = Span(orm.trace_id, f"{2:016x}", orm.span_id, "SELECT", "client", "ok", T0 + 1_000_000, T0 + 39_000_000, pid=10, tid=20,
                  attributes=sql)
    spans = [orm, driver, span(3, 50, 60, attributes={"http.method": "get", "http.url": "http://api:81/items/42?full=1"}),
             span(4, 70, 80, attributes={"other": 1}), span(5, 90, 95, pid=None, tid=None, attributes=sql),
             span(6, 100, 130, pid=11, attributes=sql), span(7, 200, 210, attributes=sql)]
    assert store.insert_spans(spans) == 7 and store.insert_spans(spans[:3]) == 0
    facts = store.span_facts(pids=[10], start_ns=T0, end_ns=T0 + 300_000_000)
    assert [facts.span_hex(i) for i in range(len(facts))] == [f"{1:016x}", f"{3:016x}", f"{7:016x}"]
    assert facts.start_ns.tolist() == [T0, T0 + 50_000_000, T0 + 200_000_000] and facts.tid.tolist() == [20, 20, 20]
    keys = [facts.keys[k] for k in facts.key.tolist()]
    assert [(k.kind, k.text) for k in keys] == [("sql", "SELECT name FROM authors WHERE id = ?"), ("http", "GET api:81/items/{id}"),
                                                 ("sql", "SELECT name FROM authors WHERE id = ?")]
    assert keys[0].system == "sqlite" and keys[0].database == "/srv/shop.db" and keys[0].source == "processor"
    assert facts.key[0] == facts.key[2]
    window = store.span_facts(pids=[10, 11], start_ns=T0 + 95_000_000, end_ns=T0 + 150_000_000)
    assert window.pid.tolist() == [11] and len(store.span_facts(pids=[12], start_ns=T0, end_ns=T0 + 10**9)) == 0


def test_spans_are_stored_once_and_queried_by_window_process_thread_and_trace(backend):
    store = backend.open()
    assert store.count_spans() == 0 and store.newest_span_id() is None
    spans = [span(1, 0, 10), span(2, 5, 30, tid=21), span(3, 40, 50, pid=None, tid=None, approximate=True),
             span(4, 60, 70, pid=11, trace="cd", attributes={"db.statement": HOSTILE, "n": 2, "ok": True, "label": HOSTILE,
                                                             "db.connection_string": "postgresql://u:pw@h/db"})]
    assert store.insert_spans(spans) == 4
    newest = store.newest_span_id()
    assert store.insert_spans([span(1, 0, 10), span(5, 80, 90)]) == 1, "a span already stored is kept as it is"
    assert store.count_spans() == 5 and store.newest_span_id() > newest
    got = backend.open().query_spans()
    assert [s.span_id[-1] for s in got] == ["1", "2", "3", "4", "5"]
    fourth = got[3]
    # hostile text comes back verbatim; SQL literals and credentials are never stored
    assert (fourth.pid, fourth.tid, fourth.attributes, fourth.source) == (11, 20, {
        "db.statement": HOSTILE.replace("(1)", "(?)"), "n": 2, "ok": True, "label": HOSTILE,
        "db.connection_string": "postgresql://u:***@h/db"}, "processor")
    assert got[2].approximate and got[2].pid is None and got[0].id is not None
    ids = lambda found: [s.span_id[-1] for s in found]  # noqa: E731
    assert ids(store.query_spans(start_ns=T0 + 20_000_000, end_ns=T0 + 65_000_000)) == ["2", "3", "4"]
    assert ids(store.query_spans(pid=10)) == ["1", "2", "5"]
    assert ids(store.query_spans(pids=[10, 11], include_unknown_pid=True)) == ["1", "2", "3", "4", "5"]
    assert ids(store.query_spans(tids=[21])) == ["2"] and ids(store.query_spans(tids=[])) == []
    assert ids(store.query_spans(trace_id="CD" * 16)) == ["4"]
    assert ids(store.query_spans(limit=2)) == ["1", "2"]


def test_a_span_breaking_a_rule_stops_the_whole_insert(backend):
    store = backend.open()
    with pytest.raises(SpanError, match="ends .* before it starts"):
        store.insert_spans([span(1, 0, 10), span(2, 30, 20)])
    assert store.count_spans() == 0


def test_stored_spans_are_bounded(backend):
    store = backend.open()
    store.insert_spans([span(1, 0, 10, name="n" * 50_000, thread_name="t" * 1000,
                             attributes={f"k{i}": "v" * 10_000 for i in range(100)})])
    (stored,) = store.query_spans()
    assert len(stored.name) == MAX_NAME_CHARS and stored.name.endswith("…")
    assert len(stored.thread_name) == 256 and stored.attributes["profviz.dropped_attributes"] == 36


# -- retention ----------------------------------------------------------------------------------


def test_retain_deletes_what_started_before_the_cutoff_and_keeps_the_hour_sketches(backend):
    """Requests, spans and profiles of the days before the cutoff go (a backend may keep the whole
    day holding it); everything from the cutoff on stays; the hour sketches still count every
    request; the deleted days can be written again."""
    day, hour = 86_400 * 10**9, 3600 * 10**9
    base = T0 // day * day
    store = backend.open()
    rows = [request_row(d * 10 + i, start_ns=base + d * day + i * hour) for d in range(3) for i in range(10)]
    store.write_batch(batch_of(rows))
    old = store.save_profile(make_profile(base + hour))
    new = store.save_profile(make_profile(base + 2 * day + 6 * hour))
    store.insert_spans([Span("ab" * 16, f"{n:016x}", None, "s", "client", "ok", start, start + 1000, pid=1, tid=1)
                        for n, start in enumerate((base + hour, base + day + hour, base + 2 * day + 6 * hour), 1)])
    cutoff = base + 2 * day + 5 * hour
    gone = backend.open().retain(cutoff)
    kept = store.query_requests()
    assert all(r.start_ns >= base + 2 * day for r in kept)
    assert {r.start_ns for r in rows if r.start_ns >= cutoff} <= {r.start_ns for r in kept}
    assert gone["requests"] == 30 - len(kept) >= 20
    assert [p["id"] for p in store.list_profiles()] == [new] and gone["profiles"] == 1
    with pytest.raises(ProfileNotFound):
        store.load_profile(old)
    assert [s.start_ns for s in store.query_spans()] == [base + 2 * day + 6 * hour] and gone["spans"] == 2
    assert sum(s.count for s in store.route_sketches()) == 30
    store.write_batch(batch_of([request_row(99, start_ns=base + 2 * hour)]))
    assert [r.path for r in backend.open().query_requests(until_ns=base + day)] == ["/posts/99"]


def test_the_newest_request_id_changes_with_every_write_even_of_old_requests(backend):
    """What caches of analyses key on: requests that started long ago (a collector's late batch) change it too."""
    store = backend.open()
    assert store.newest_request_id() is None
    store.write_batch(batch_of([request_row(5)]))
    first = store.newest_request_id()
    store.write_batch(batch_of([request_row(0, start_ns=T0 - 3600 * 10**9)]))
    assert backend.open().newest_request_id() > first and store.latest_request_ns() == T0 + 5 * 1_000_000 + 2_000_005


def test_a_batch_sent_again_with_its_id_is_stored_once(backend):
    """A collector stores a sender's retried batch once and answers with the first time's profile ids."""
    store = backend.open()
    first = batch_of([request_row(i) for i in range(5)])
    first.keep(make_profile(T0), 2)
    again = batch_of([request_row(i) for i in range(5)])
    again.keep(make_profile(T0), 2)
    ids = store.write_batch(first, batch_id="3b241101-e2bb-4255-8caf-4136c566a962")
    assert backend.open().write_batch(again, batch_id="3b241101-e2bb-4255-8caf-4136c566a962") == ids
    assert len(store.query_requests()) == 5 and len(store.list_profiles()) == 1
    assert store.query_requests()[2].profile_id == ids[0]
    assert sum(s.count for s in store.route_sketches()) == 5
    store.write_batch(batch_of([request_row(9)]), batch_id="another")
    assert len(store.query_requests()) == 6


def test_requests_are_filtered_by_their_origin_labels(backend):
    store = backend.open()
    rows = [request_row(i, labels={"request_id": f"r{i}", "host": "abc"[i % 3], "version": "1.4" if i < 30 else "1.5",
                                   "service": "shop"}) for i in range(60)]
    store.write_batch(batch_of(rows))
    assert len(store.query_requests(labels={"host": "a"})) == 20
    assert len(store.query_requests(labels={"host": "b", "version": "1.5"}, limit=1000)) == 10
    columns = backend.open().request_columns(labels={"version": "1.4", "service": "shop"})
    assert columns["id"] and len(columns["id"]) == 30
    assert store.request_columns(labels={"host": "<script>'"})["id"] == []
    with pytest.raises(ValueError, match="not 'team'"):
        store.query_requests(labels={"team": "x"})
    assert store.origin_values() == {"host": ["a", "b", "c"], "service": ["shop"], "version": ["1.4", "1.5"]}
    assert [s.count for s in store.route_sketches(labels={"host": "a"})] == [20]
    assert [s.count for s in store.route_sketches(labels={"host": "b", "version": "1.5"})] == [10]
    assert sum(s.count for s in store.route_sketches()) == 60
    assert store.origin_values(since_ns=T0 + 30 * 1_000_000)["version"] == ["1.5"]
