"""Shared helpers for the format tests: the sample files, a profile full of hostile strings, and
the per-thread / per-function / per-state totals that a round trip must preserve."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from profviz.analysis.calltree import build_call_tree, function_stats
from profviz.formats import FormatError, load_any
from profviz.model import NO_STACK, Profile, Span, State

DATA = Path(__file__).parent / "data" / "formats"
EXAMPLES = DATA / "speedscope-examples"

SAMPLE_FILES = {
    "pyspy.speedscope.json": "speedscope",
    "pyspy_idle_threads.speedscope.json": "speedscope",
    "pyinstrument.speedscope.json": "speedscope",
    "speedscope-examples/simple.speedscope.json": "speedscope",
    "speedscope-examples/simple-sampled.speedscope.json": "speedscope",
    "speedscope-examples/two-sampled.speedscope.json": "speedscope",
    "speedscope-examples/invalid-incomplete-trace.json": "speedscope",
    "speedscope-examples/invalid-out-of-order-events.json": "speedscope",
    "pyspy_raw.txt": "collapsed",
    "pyspy_raw_idle_threads.txt": "collapsed",
    "pyspy_raw_subprocesses.txt": "collapsed",
    "pyinstrument.pyisession": "pyinstrument",
    "pyinstrument_renderer.json": "pyinstrument",
    "chromium.trace.json.gz": "perfetto",
    "pprof/parca-fgprof.pb.gz": "pprof",
    "pprof/parca-profile1.pb.gz": "pprof",
    "pprof/parca-profile-with-labels.pb.gz": "pprof",
    "ddtrace/ddtrace-4.16.pprof": "pprof",
}

HUGE_NAME = "h" * 5000 + "<script>alert('x')</script>" + "é" * 5000
HOSTILE = [
    HUGE_NAME,
    '<img src=x onerror="alert(1)">',
    "quote \" and 'single' and back\\slash",
    "paren (not:a file) and colon: and [brackets]",
    "unicode ☃ 𝄞 \u200b zero-width",
    "json }{ ][ ,: $profviz",
]


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


def npm_package(spec: str, work: Path) -> Path:
    """The npm package ``spec`` (npm pack: the registry's tarball, no install scripts) unpacked in
    ``work``; returns its ``package`` directory."""
    npm = shutil.which("npm")
    assert npm, f"npm is needed to fetch {spec} (Debian: apt-get install npm)"
    result = subprocess.run([npm, "pack", spec, "--silent"], cwd=work, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"npm pack {spec} failed: {result.stderr[-1000:]}"
    with tarfile.open(work / result.stdout.strip().splitlines()[-1]) as archive:
        members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]
        assert all(not m.name.startswith("/") and ".." not in m.name.split("/") for m in members), "unexpected paths in the package"
        archive.extractall(work, members=members)  # checked above: Python before 3.11.4 has no extraction filter
    return work / "package"


def unpacked(name: str) -> bytes:
    """A sample file's bytes, gzip or zstd unpacked as :func:`profviz.formats.load_any` unpacks them."""
    raw = data(name)
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(raw).read()
    return raw


def files_of(format_name: str) -> list[str]:
    return [name for name, fmt in SAMPLE_FILES.items() if fmt == format_name]


def files_not_of(format_name: str) -> list[str]:
    return [name for name, fmt in SAMPLE_FILES.items() if fmt != format_name]


def rich_profile(*, hostile: list[str] = HOSTILE, rate_hz: float = 100.0) -> Profile:
    """Three threads in two processes, every state, wait reasons, NO_STACK samples, recursion,
    hostile function/file/thread names and reasons, weights that are multiples of 1/rate."""
    interval = int(1e9 / rate_hz)
    profile = Profile({"kind": "attach", "pid": 4242, "cmdline": "python app.py --port 8000", "rate_hz": rate_hz,
                       "labels": {"env": "test"}, "notes": ["a note"], "error_count": 2})
    main = profile.add_thread(4242, 101, "MainThread")
    worker = profile.add_thread(4242, 102, hostile[1])
    child = profile.add_thread(4343, 201, "child-" + hostile[4])
    handle = [("<module>", "app.py", 1), ("serve", "app.py", 20), ("handle", "app.py", 33)]
    stacks = {
        "cpu": profile.intern_frames(handle + [("render", "views.py", 7), (hostile[0], hostile[2], 9)]),
        "db": profile.intern_frames(handle + [("query", "db.py", 50), ("socket.recv", "<built-in>", 0)]),
        "recurse": profile.intern_frames(handle + [("fib", "m.py", 3), ("fib", "m.py", 4), ("fib", "m.py", 4)]),
        "hostile": profile.intern_frames([(hostile[3], hostile[5], 2), (hostile[1], "", 0)]),
        "child": profile.intern_frames([("<module>", "child.py", 1), ("work", "child.py", 5)]),
    }
    start = 1_700_000_000_000_000_000
    plan = [
        (main, "cpu", State.ON_CPU, None), (main, "cpu", State.ON_CPU, None), (main, "db", State.WAITING, "socket recv"),
        (main, "db", State.WAITING, hostile[2]), (main, "recurse", State.RUNNABLE, None), (main, None, State.WAITING, None),
        (worker, "hostile", State.ON_CPU, None), (worker, "hostile", State.UNKNOWN, None), (worker, "db", State.WAITING, "lock"),
        (child, "child", State.ON_CPU, None), (child, "child", State.WAITING, "sleep"), (child, None, State.UNKNOWN, None),
    ]
    for n, (thread, stack, state, reason) in enumerate(plan):
        weight = interval * (1 + n % 3)
        profile.append_sample(start + n * interval, thread, NO_STACK if stack is None else stacks[stack], weight, state, reason)
    profile.spans.append(Span("t" * 32, "s" * 16, None, "GET /" + hostile[1], "server", "ok", start, start + 5 * interval, thread=main, attributes={"http.route": hostile[0]}))
    return profile


def thread_totals(profile: Profile) -> dict[tuple[int, str], int]:
    """Total weight per (tid, name)."""
    cols = profile.columns()
    out: Counter = Counter()
    for thread, weight in zip(cols["thread"].tolist(), cols["weight_ns"].tolist()):
        info = profile.threads[thread]
        out[(info.tid, info.name)] += weight
    return dict(out)


def function_totals(profile: Profile) -> dict[tuple[str, str], tuple[int, int]]:
    """(total, self) ns per (function, file), from the call tree."""
    return {(f.function, f.file): (f.total_ns, f.self_ns) for f in function_stats(build_call_tree(profile))}


def state_totals(profile: Profile) -> dict[tuple[int, str, int], int]:
    """Weight per (tid, state, reason text)."""
    cols = profile.columns()
    out: Counter = Counter()
    for thread, state, reason, weight in zip(cols["thread"].tolist(), cols["state"].tolist(), cols["reason"].tolist(), cols["weight_ns"].tolist()):
        out[(profile.threads[thread].tid, state, None if reason < 0 else profile.strings[reason])] += weight
    return dict(out)


def sample_rows(profile: Profile) -> list[tuple]:
    """Every sample as (time, pid, tid, thread name, frames, weight, state, reason), in profile order."""
    cols = profile.columns()
    rows = []
    for time, thread, stack, weight, state, reason in zip(*(cols[k].tolist() for k in ("time_ns", "thread", "stack", "weight_ns", "state", "reason"))):
        info = profile.threads[thread]
        frames = tuple(profile.frame(f) for f in profile.stack_frames(stack))
        rows.append((time, info.pid, info.tid, info.name, frames, weight, state, None if reason < 0 else profile.strings[reason]))
    return rows


def function_names(profile: Profile) -> set[str]:
    return {f[0] for f in function_totals(profile)}


def assert_format_error(data: bytes, *fragments: str, name: str = "bad.file", **options) -> str:
    """load_any must raise a one-line FormatError naming the file and containing every fragment."""
    with pytest.raises(FormatError) as caught:
        load_any(data, name, **options)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(f"cannot read {name!r}"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message
