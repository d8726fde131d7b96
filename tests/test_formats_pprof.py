"""pprof import/export: real profiles other profilers wrote (Parca's test data: Go CPU, fgprof
wall-clock, parca-agent; ddtrace's upload), profviz -> pprof -> profviz keeping totals per thread and per state
exactly, and profviz's files read by two decoders profviz did not write: Google's own (protoc, from
grpcio-tools) and Datadog's JavaScript one (the pprof-format npm package, in node)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from profviz.formats import FormatError, load_any, pprof
from profviz.formats.base import STATE_LABELS
from profviz.formats.pprof_messages import FIELDS, Profile as PprofProfile
from profviz.model import State
from tests.formats_support import (HOSTILE, assert_format_error, data, files_not_of, files_of, function_names, rich_profile, state_totals,
                                   npm_package, thread_totals, unpacked)

PROTO = Path(pprof.__file__).parent / "vendor" / "pprof" / "profile.proto"


def test_the_message_table_is_the_vendored_profile_proto():
    text = re.sub(r"//[^\n]*", "", PROTO.read_text(encoding="utf-8"))
    found = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\n\}", text, re.S):
        found[name] = [(field, int(number), kind, bool(repeated))
                       for repeated, kind, field, number in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body)]
    assert found == FIELDS


@pytest.mark.parametrize("name", files_of("pprof"))
def test_detects_its_own_files(name):
    assert pprof.detect(unpacked(name))


@pytest.mark.parametrize("name", files_not_of("pprof"))
def test_rejects_other_formats(name):
    assert not pprof.detect(unpacked(name))


def raw_values(name: str, kind: str) -> int:
    parsed = PprofProfile.FromString(unpacked(name))
    index = [parsed.string_table[t.type] for t in parsed.sample_type].index(kind)
    return sum(sample.value[index] for sample in parsed.sample)


def test_a_go_cpu_profile_is_time_on_cpu():
    profile = load_any(data("pprof/parca-profile1.pb.gz"), "profile1.pb.gz")
    assert state_totals(profile) == {(0, int(State.ON_CPU), None): raw_values("pprof/parca-profile1.pb.gz", "cpu")}
    assert any(name.startswith("runtime.") for name in function_names(profile))


def test_an_fgprof_wall_clock_profile_keeps_its_time():
    profile = load_any(data("pprof/parca-fgprof.pb.gz"), "fgprof.pb.gz")
    assert sum(thread_totals(profile).values()) == raw_values("pprof/parca-fgprof.pb.gz", "time")
    assert profile.meta["start_ns"] == 1669885092670395000 and profile.meta["duration_ns"] == 30001091459


def test_counts_without_a_period_are_priced_at_the_rate_and_threads_come_from_labels():
    name = "pprof/parca-profile-with-labels.pb.gz"
    counts = raw_values(name, "samples")
    profile = load_any(data(name), "labels.pb.gz", rate_hz=19.0)
    assert sum(thread_totals(profile).values()) == counts * int(1e9 / 19.0)
    assert len(profile.threads) == 6 and {t.name for t in profile.threads} >= {"parca"}
    assert all(t.tid > 0 for t in profile.threads)
    assert "each sample counted as" in profile.meta["notes"][-1]


def test_a_ddtrace_profile_splits_each_threads_wall_time_into_cpu_and_waiting_at_its_sample_times():
    """ddtrace's own upload (zstd, wall and CPU time beside lock and allocation events, its own label names)."""
    name = "ddtrace/ddtrace-4.16.pprof"
    raw = data(name)
    assert raw[:4] == b"\x28\xb5\x2f\xfd"  # zstd, as ddtrace writes it
    parsed = PprofProfile.FromString(unpacked(name))
    strings = parsed.string_table
    kinds = [strings[t.type] for t in parsed.sample_type]
    wall, cpu = kinds.index("wall-time"), kinds.index("cpu-time")
    label = lambda sample, key: next(l.str and strings[l.str] or l.num for l in sample.label if strings[l.key] == key)  # noqa: E731
    expected = Counter()
    for sample in parsed.sample:
        if sample.value[wall]:
            thread = label(sample, "thread name")
            expected[thread, int(State.ON_CPU)] += min(sample.value[cpu], sample.value[wall])
            expected[thread, int(State.WAITING)] += sample.value[wall] - min(sample.value[cpu], sample.value[wall])
    profile = load_any(raw, "profile.pprof")
    name_of = {t.tid: t.name for t in profile.threads}
    got = Counter()
    for (tid, state, _), ns in state_totals(profile).items():
        got[name_of[tid], state] += ns
    assert +got == +expected
    on_cpu = {name: got[name, int(State.ON_CPU)] / (got[name, int(State.ON_CPU)] + got[name, int(State.WAITING)])
              for name in ("hasher", "sleeper", "locker-1", "locker-2")}
    assert on_cpu["hasher"] > 0.7 and max(on_cpu["sleeper"], on_cpu["locker-1"], on_cpu["locker-2"]) < 0.1, on_cpu
    assert all(t.tid < 2**22 for t in profile.threads)  # the OS thread ids ("thread native id"), not Python's idents
    cols = profile.columns()
    assert cols["time_ns"].min() >= parsed.time_nanos - 10**9 and cols["time_ns"].max() <= parsed.time_nanos + parsed.duration_nanos
    assert "placed by their end_timestamp_ns" in profile.meta["notes"][-1] and "allocation or lock events) left out" in profile.meta["notes"][-1]


def test_corrupt_zstd_is_one_line():
    with pytest.raises(FormatError, match="starts like zstd but does not unpack"):
        load_any(b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 20, "bad.pprof")


def test_profviz_to_pprof_to_profviz_keeps_totals_threads_states_and_reasons():
    original = rich_profile()
    original.meta["labels"] = {"route": "/checkout/<id>", "request_id": "r-1"}
    loaded = load_any(pprof.dump(original), "out.pb.gz")
    assert state_totals(loaded) == state_totals(original)
    assert {(t.pid, t.tid, t.name) for t in loaded.threads} == {(t.pid, t.tid, t.name) for t in original.threads}
    assert function_names(loaded) == function_names(original)
    assert {(f.function, f.file, f.line) for f in map(loaded.frame, range(len(loaded.frame_function)))} == \
        {(f.function, f.file, f.line) for f in map(original.frame, range(len(original.frame_function)))}
    assert loaded.meta["rate_hz"] == 100.0 and "no spans" in loaded.meta["notes"][-1] and "laid end to end" in loaded.meta["notes"][-1]


def test_googles_decoder_reads_profviz_pprof_files(tmp_path):
    """protoc --decode (Google's C++ parser, over the vendored .proto) reads the file: its sample
    types, its labels and its wall and CPU totals."""
    original = rich_profile(hostile=HOSTILE)
    original.meta["labels"] = {"route": "/checkout", "request_id": "r-9"}
    raw = gzip.decompress(pprof.dump(original))
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", "--decode=perftools.profiles.Profile",
                             PROTO.name], input=raw, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    text = result.stdout.decode("utf-8", "replace")
    strings = [bytes(s, "latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8")
               for s in re.findall(r'^string_table: "(.*)"$', text, re.M)]
    types = [(strings[int(t)], strings[int(u)]) for t, u in re.findall(r"sample_type \{\s*type: (\d+)\s*unit: (\d+)\s*\}", text)]
    assert types == [("samples", "count"), ("wall", "nanoseconds"), ("cpu", "nanoseconds")]
    values = re.findall(r"sample \{(.*?)\n\}", text, re.S)
    wall = sum(int(re.findall(r"value: (-?\d+)", body)[1]) for body in values)
    cpu = sum(int(re.findall(r"value: (-?\d+)", body)[2]) for body in values)
    totals = Counter()
    for (_, state, _), ns in state_totals(original).items():
        totals[state] += ns
    assert wall == sum(totals.values()) and cpu == totals[int(State.ON_CPU)]
    assert {"thread", "thread_id", "pid", "state", "wait_reason", "route", "request_id"} <= set(strings)
    assert HOSTILE[1] in strings  # a hostile thread name survives as data


PPROF_FORMAT = "pprof-format@2.3.2"  # Datadog's pure-JavaScript pprof decoder (MIT), which dd-trace-js profiles with

DECODE_JS = """
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
const { Profile } = await import(process.argv[2]);
const profile = Profile.decode(gunzipSync(readFileSync(process.argv[3])));
const strings = profile.stringTable.strings;
const text = (i) => strings[Number(i)];
const types = profile.sampleType.map((t) => [text(t.type), text(t.unit)]);
const totals = {};
for (const sample of profile.sample) {
  const labels = Object.fromEntries(sample.label.map((l) => [text(l.key), l.str ? text(l.str) : Number(l.num)]));
  const key = `${labels.thread_id}|${labels.state}|${labels.wait_reason ?? ""}`;
  const [count, wall, cpu] = sample.value.map(Number);
  const total = (totals[key] ??= { count: 0, wall: 0, cpu: 0, thread: labels.thread });
  total.count += count; total.wall += wall; total.cpu += cpu;
}
const functions = [...new Set(profile.function.map((f) => text(f.name)))];
console.log(JSON.stringify({ types, totals, functions, timeNanos: Number(profile.timeNanos), period: Number(profile.period),
                             periodType: [text(profile.periodType.type), text(profile.periodType.unit)] }));
"""


@pytest.fixture(scope="module")
def pprof_format(tmp_path_factory) -> Path:
    """The pprof-format npm package (npm pack: the registry's tarball, no install scripts), its ES module entry."""
    return npm_package(PPROF_FORMAT, tmp_path_factory.mktemp("pprof-format")) / "dist" / "esm" / "index.js"


def test_datadogs_javascript_decoder_reads_profviz_pprof_files(pprof_format, tmp_path):
    """pprof-format (the decoder dd-trace-js uses, written by neither profviz nor Google) reads the
    file: sample types, each (thread, state, wait reason)'s wall and CPU time, thread names, functions."""
    original = rich_profile(hostile=HOSTILE)
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(pprof.dump(original))
    script = tmp_path / "decode.mjs"
    script.write_text(DECODE_JS)
    result = subprocess.run(["node", str(script), pprof_format.as_uri(), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    decoded = json.loads(result.stdout)
    assert decoded["types"] == [["samples", "count"], ["wall", "nanoseconds"], ["cpu", "nanoseconds"]]
    assert decoded["periodType"] == ["wall", "nanoseconds"] and decoded["period"] == int(1e9 / original.meta["rate_hz"])
    expected: Counter = Counter()
    for (tid, state, reason), ns in state_totals(original).items():
        expected[f"{tid}|{STATE_LABELS[State(state)]}|{reason or ''}", "wall"] += ns
        expected[f"{tid}|{STATE_LABELS[State(state)]}|{reason or ''}", "cpu"] += ns if state == State.ON_CPU else 0
    got = Counter({(key, kind): total[kind] for key, total in decoded["totals"].items() for kind in ("wall", "cpu")})
    assert +got == +expected
    names = {t.tid: t.name for t in original.threads}
    assert all(total["thread"] == names[int(key.split("|")[0])] for key, total in decoded["totals"].items())
    assert set(decoded["functions"]) == function_names(original)


def test_a_heap_profile_and_garbage_are_refused_in_one_line():
    heap = PprofProfile()
    heap.string_table.extend(["", "alloc_space", "bytes"])
    heap.sample_type.add(type=1, unit=2)
    heap.sample.add(value=[100])
    assert_format_error(gzip.compress(heap.SerializeToString()), "hold no time", "heap", format_name="pprof")
    assert_format_error(b"\x0a\x05broken", "not a pprof profile", format_name="pprof")
