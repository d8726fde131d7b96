"""profviz._speedups: built, and doing exactly what the pure Python versions do, edge cases included.

The WSGI and sampler tests run once with each implementation (tests/speedups_support.py); these
drive both directly with iterables and recorders that misbehave in every way the C code handles.
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest

from profviz.collect.sampler import _walk_fresh_python
from profviz.wsgi import RequestInfo, _observe_response_python, _RequestFieldsPython, _start_request_python
from tests.speedups_support import _speedups, implementation  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
OBSERVERS = {"python": _observe_response_python}
if _speedups is not None:
    OBSERVERS["c"] = _speedups.observe_response


def test_the_extension_is_built():
    """The editable install (and CI) compiles it; without it the request path is the slower Python one."""
    assert _speedups is not None, "profviz._speedups is missing: install a C compiler and Python's headers, then pip install -e . again"


class Info:
    response_bytes = 0
    finished = False


class Recorder:
    """Records finish() calls as (error type name or None, response_bytes then) and sets ``finished``."""

    def __init__(self, fail_with: BaseException | None = None):
        self.calls: list[tuple[str | None, int]] = []
        self.fail_with = fail_with

    def finish(self, info, error=None):
        self.calls.append((None if error is None else type(error).__name__, info.response_bytes))
        info.finished = True
        if self.fail_with is not None:
            raise self.fail_with


class Body:
    """An app iterable: yields ``chunks``, then raises ``fail`` if given; records close()."""

    def __init__(self, chunks, fail: BaseException | None = None, close_fails: BaseException | None = None):
        self.chunks, self.fail, self.close_fails, self.closed = list(chunks), fail, close_fails, 0

    def __iter__(self):
        yield from self.chunks
        if self.fail is not None:
            raise self.fail

    def close(self):
        self.closed += 1
        if self.close_fails is not None:
            raise self.close_fails


class NotIterable:
    def close(self):
        pass


def run(observe, body, recorder=None, *, iterate=True, close=True, sized=False):
    """(chunks read, exception type raised or None, recorder calls, info) of one response's life."""
    info, recorder = Info(), recorder or Recorder()
    response = observe(body, info, recorder, sized)
    chunks, raised = [], None
    try:
        if iterate:
            for chunk in response:
                chunks.append(chunk)
        if close:
            response.close()
    except BaseException as exc:  # noqa: BLE001 - the type is what is compared
        raised = type(exc).__name__
    return chunks, raised, recorder.calls, info


CASES = {
    "chunks then close": lambda: (Body([b"ab", b"cde"]), {}),
    "no chunks": lambda: (Body([]), {}),
    "a list": lambda: ([b"x", b"yz"], {}),
    "a tuple, sized": lambda: ((b"x",), {"sized": True}),
    "app raises mid-body": lambda: (Body([b"ab"], fail=RuntimeError("boom")), {}),
    "app raises KeyboardInterrupt": lambda: (Body([b"ab"], fail=KeyboardInterrupt()), {}),
    "a chunk without len": lambda: (Body([b"ab", 7]), {}),
    "iter() fails": lambda: (NotIterable(), {}),
    "close raises": lambda: (Body([b"ab"], close_fails=OSError("disk")), {}),
    "close without iterating": lambda: (Body([b"ab"]), {"iterate": False}),
    "close raises without iterating": lambda: (Body([b"ab"], close_fails=ValueError("x")), {"iterate": False}),
    "iterated, never closed": lambda: (Body([b"abc"]), {"close": False}),
    "finish raises at the end": lambda: (Body([b"ab"]), {"recorder": Recorder(fail_with=LookupError("finish"))}),
    "finish raises after the app raised": lambda: (Body([b"ab"], fail=RuntimeError("app")), {"recorder": Recorder(fail_with=LookupError("finish"))}),
}


@pytest.mark.parametrize("case", CASES)
def test_c_and_python_responses_behave_alike(case):
    if "c" not in OBSERVERS:
        pytest.skip("profviz._speedups was not built")
    outcomes = {}
    for name, observe in OBSERVERS.items():
        body, options = CASES[case]()
        chunks, raised, calls, info = run(observe, body, **options)
        closed = getattr(body, "closed", None)
        outcomes[name] = (chunks, raised, calls, info.response_bytes, info.finished, closed)
    assert outcomes["c"] == outcomes["python"]


def test_the_expected_outcomes_of_the_edge_cases():
    """What both implementations do (the test above checks they agree), stated once."""
    observe = OBSERVERS.get("c", _observe_response_python)
    chunks, raised, calls, info = run(observe, Body([b"ab", b"cde"]))
    assert chunks == [b"ab", b"cde"] and raised is None and calls == [(None, 5)]
    chunks, raised, calls, info = run(observe, Body([b"ab"], fail=RuntimeError("boom")))
    assert raised == "RuntimeError" and calls == [("RuntimeError", 2)]
    chunks, raised, calls, _ = run(observe, Body([b"ab", 7]))
    assert raised == "TypeError" and calls == [("TypeError", 2)]
    body = Body([b"ab"], close_fails=OSError("disk"))
    chunks, raised, calls, _ = run(observe, body)
    assert raised == "OSError" and calls == [(None, 2), ("OSError", 2)] and body.closed == 1
    chunks, raised, calls, _ = run(observe, Body([b"ab"]), Recorder(fail_with=LookupError("finish")))
    assert raised == "LookupError"
    assert len(observe((b"a", b"b"), Info(), Recorder(), True)) == 2
    with pytest.raises(TypeError):
        len(observe(Body([]), Info(), Recorder(), False))


@pytest.mark.parametrize("name", ["c", "python"])
def test_a_response_dropped_mid_body_ends_its_request_once(name):
    if name not in OBSERVERS:
        pytest.skip("profviz._speedups was not built")
    info, recorder = Info(), Recorder()
    response = OBSERVERS[name](Body([b"ab", b"cd"]), info, recorder, False)
    assert next(iter(response)) == b"ab"
    del response
    gc.collect()
    assert recorder.calls == [(None, 2)] and info.finished
    info, recorder = Info(), Recorder()
    response = OBSERVERS[name](Body([b"ab"]), info, recorder, False)
    del response  # never iterated: nothing ended it, as a server that never used it
    gc.collect()
    assert recorder.calls == []


def test_a_response_in_a_reference_cycle_is_collected():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    body = Body([b"ab"])
    response = _speedups.observe_response(body, Info(), Recorder(), False)
    body.response = response  # a cycle through the C object: its traverse must report the body
    gone = weakref.ref(body)
    del response, body
    gc.collect()
    assert gone() is None


def chain(depth: int):
    if depth:
        return chain(depth - 1)
    return sys._getframe()


def walkers():
    yield "python", _walk_fresh_python
    if _speedups is not None:
        yield "c", _speedups.walk_fresh


def walk_with(walk, leaf, held):
    fresh, codes, offsets = [], [], []
    met = walk(leaf, held, fresh, codes, offsets)
    return met, fresh, codes, offsets


@pytest.mark.parametrize("stop_at", [None, 0, 3, 7])
def test_walk_fresh_matches_the_python_walk(stop_at):
    leaf = chain(10)
    frames = []
    frame = leaf
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    held = {} if stop_at is None else {frames[stop_at]: 0}
    results = {name: walk_with(walk, leaf, held) for name, walk in walkers()}  # this frame stays put meanwhile
    expected_fresh = frames if stop_at is None else frames[:stop_at]
    met, fresh, codes, offsets = results["python"]
    assert met is (None if stop_at is None else frames[stop_at]) and fresh == expected_fresh
    assert codes == [f.f_code for f in expected_fresh]
    suspended = min(len(expected_fresh), 11)  # chain()'s frames; this test's own frame and its callers move on
    assert offsets[:suspended] == [f.f_lasti for f in expected_fresh[:suspended]]
    if "c" in results:
        assert results["c"] == results["python"]


def test_walk_fresh_refuses_what_it_cannot_walk():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    assert _speedups.walk_fresh(None, {}, [], [], []) is None
    with pytest.raises(TypeError, match="frame or None"):
        _speedups.walk_fresh("not a frame", {}, [], [], [])
    with pytest.raises(TypeError, match="dict of held frames"):
        _speedups.walk_fresh(sys._getframe(), [], [], [], [])
    with pytest.raises(TypeError, match="5 arguments"):
        _speedups.walk_fresh(sys._getframe())
    with pytest.raises(TypeError, match="4 arguments"):
        _speedups.observe_response([])


def python_fields() -> dict:
    return {name: value for name, value in vars(_RequestFieldsPython).items() if not name.startswith("__") and not callable(value)}


def test_request_fields_have_the_python_fields_and_defaults():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    fields = python_fields()
    c_fields = {name for name, member in vars(_speedups.RequestFields).items() if type(member).__name__ == "member_descriptor"}
    assert c_fields == set(fields)
    made = _speedups.RequestFields()
    assert {name: getattr(made, name) for name in fields} == fields
    info = RequestInfo()
    info.route, info.app_note = "/r/<id>", "apps may add attributes"
    assert info.route == "/r/<id>" and info.app_note == "apps may add attributes" and info.labels == {}
    with pytest.raises(TypeError, match="no arguments"):
        _speedups.RequestFields(1)


def started(environ: dict):
    return _speedups.start_request(RequestInfo, environ, itertools.count(7), threading.local(), lambda: 4242, "key")


def test_start_request_fills_what_the_python_version_fills():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    for environ in ({"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/app", "PATH_INFO": "/x"}, {"REQUEST_METHOD": "", "PATH_INFO": ""}, {}):
        made = {}
        for name, start in (("c", _speedups.start_request), ("python", _start_request_python)):
            env = dict(environ)
            info = start(RequestInfo, env, itertools.count(7), threading.local(), lambda: 4242, "key")
            assert env["key"] is info and info.environ is env and info._mono_start > 0 and info._cpu_start > 0
            made[name] = (info.method, info.path, info._seq, info._ident, info.tid, info.route, info.finished)
        assert made["c"] == made["python"]
        assert made["c"][2:5] == (7, threading.get_ident(), 4242)
    with pytest.raises(TypeError, match="RequestFields class and a dict environ"):
        _speedups.start_request(RequestInfo, [("not", "a dict")], itertools.count(), threading.local(), int, "key")
    with pytest.raises(TypeError, match="RequestFields class"):
        _speedups.start_request(dict, {}, itertools.count(), threading.local(), int, "key")
    with pytest.raises(TypeError):  # bytes + str: the same error the Python version raises
        started({"SCRIPT_NAME": b"/bytes", "PATH_INFO": "/x"})


def test_stop_clocks_on_the_starting_thread_and_on_another():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    info = started({"PATH_INFO": "/x"})
    _speedups.stop_clocks(info, lambda ident: pytest.fail("same thread: no other clock is read"))
    assert info.duration_ns > 0 and info.cpu_ns >= 0
    asked = []
    other = threading.Thread(target=lambda: _speedups.stop_clocks(info, lambda ident: asked.append(ident)))
    other.start()
    other.join()
    assert asked == [threading.get_ident()] and info.cpu_ns == 0  # None: unreadable, counted as 0
    other = threading.Thread(target=lambda: _speedups.stop_clocks(info, lambda ident: info._cpu_start - 5))
    other.start()
    other.join()
    assert info.cpu_ns == 0  # never negative
    with pytest.raises(TypeError, match="needs a RequestFields"):
        _speedups.stop_clocks(object(), None)


def test_observed_start_response_passes_every_argument_through():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    calls, written = [], []
    info = started({"PATH_INFO": "/x"})
    info._start_response = lambda *args: calls.append(args) or written.append
    write = info._observed_start_response("200 OK", [("A", "b")])
    assert write(b"abc") is None and write(b"de") is None and written == [b"abc", b"de"] and info.response_bytes == 5
    exc_info = (ValueError, ValueError("x"), None)
    info._observed_start_response(status="500 Oops", headers=[], exc_info=exc_info)
    info._observed_start_response("200 OK", [], None)
    assert calls == [("200 OK", [("A", "b")]), ("500 Oops", [], exc_info), ("200 OK", [])] and info.status_line == "200 OK"
    with pytest.raises(TypeError, match="unexpected keyword argument 'stauts'"):
        info._observed_start_response(stauts="200 OK", headers=[])
    with pytest.raises(TypeError, match="multiple values for argument 'status'"):
        info._observed_start_response("200 OK", [], status="200 OK")
    with pytest.raises(TypeError, match="needs status and headers"):
        info._observed_start_response("200 OK")
    with pytest.raises(TypeError):
        write(7)
    info._start_response = lambda *args: 1 / 0
    with pytest.raises(ZeroDivisionError):
        info._observed_start_response("200 OK", [])


def test_the_pure_python_versions_pass_the_wsgi_and_sampler_tests(tmp_path):
    """PROFVIZ_NO_SPEEDUPS=1: RequestInfo on its Python base class, every hot spot in Python."""
    env = {**os.environ, "PROFVIZ_NO_SPEEDUPS": "1"}
    check = subprocess.run(
        [sys.executable, "-c", "from profviz import wsgi; assert wsgi.RequestInfo.__mro__[1] is wsgi._RequestFieldsPython\n"
         "m = wsgi.ProfilerMiddleware(lambda e, s: [], store=':memory:', sampler=False); assert m.stats['speedups'] is False"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_wsgi.py", "tests/test_sampler.py",
         "tests/test_flask_integration.py", "-k", "not two_worker_processes and not forked_worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


def test_the_request_path_keeps_no_references(tmp_path, implementation):
    """Every object a request passes through (the app's iterable, the server's start_response and
    write, the environ, the request's info) is released once the request is written."""
    from profviz.wsgi import ProfilerMiddleware

    body = Body([b"ab", b"cd"])
    written = []

    def server_write(data):
        written.append(data)

    def server_start_response(status, headers, exc_info=None):
        return server_write

    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"early")
        return body

    middleware = ProfilerMiddleware(app, store=tmp_path / "profviz.db", sampler=False)
    infos = []
    try:
        before = (sys.getrefcount(body), sys.getrefcount(server_write), sys.getrefcount(server_start_response))
        for i in range(300):
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/x/{i}", "SCRIPT_NAME": ""}
            response = middleware(environ, server_start_response)
            assert b"".join(response) == b"abcd"
            response.close()
            infos.append(weakref.ref(environ["profviz.request"]))
            del environ, response
        assert middleware.flush()
        gc.collect()
        after = (sys.getrefcount(body), sys.getrefcount(server_write), sys.getrefcount(server_start_response))
        assert after == before
        assert [ref for ref in infos if ref() is not None] == []
        assert middleware.stats["recorded"] == 300 and middleware.stats["errors"] == 0
        assert middleware.stats["speedups"] is (_speedups is not None)
        assert len(written) == 300 and body.closed == 300
    finally:
        middleware.close()


def test_a_deleted_field_gives_an_attribute_error_not_a_crash():
    if _speedups is None:
        pytest.skip("profviz._speedups was not built")
    info = started({"PATH_INFO": "/x"})
    del info._mono_start
    with pytest.raises(AttributeError, match="_mono_start"):
        info._mono_start
    with pytest.raises(AttributeError, match="_mono_start.*deleted"):
        _speedups.stop_clocks(info, None)
    info = started({"PATH_INFO": "/x"})
    info._start_response = lambda *args: None
    write = info._observed_start_response("200 OK", [])
    del info.response_bytes
    with pytest.raises(AttributeError, match="response_bytes"):
        write(b"x")
    with pytest.raises(AttributeError, match="response_bytes"):
        list(_speedups.observe_response([b"x"], info, Recorder(), False))
    del info.finished
    with pytest.raises(AttributeError, match="finished"):
        _speedups.observe_response([], info, Recorder(), False).close()
    del info._start_response
    with pytest.raises(AttributeError, match="_start_response"):
        info._observed_start_response("200 OK", [])
