"""Store encoding: the pure-Python path for small profiles writes exactly what the numpy path
writes, blobs round-trip through the store and the unchanged decoder, damage is reported."""

import json
import struct
import zlib

import numpy as np
import pytest

from profviz.store import summary
from profviz.collect.deep import DeepProfiler, session_to_profile
from profviz.model import Profile, State
from profviz.store import open_store
from profviz.store.summary import encode_profile
from profviz.store import encoding

BOUNDARIES = [-(2**7), 2**7 - 1, -(2**15), 2**15 - 1, -(2**31), 2**31 - 1, -(2**63), 2**63 - 1]


def reference_body(columns: dict, names: tuple, delta: tuple = ()) -> tuple[bytes, bytes]:
    """(header, uncompressed body) as FORMAT_VERSION 1 defines them, written the plain numpy way."""
    count = len(columns[names[0]]) if names else 0
    header, parts = {"count": count, "columns": []}, []
    for name in names:
        values = np.asarray(columns[name], dtype=np.int64)
        if name in delta and count:
            values = np.diff(values, prepend=np.int64(0))
        for dtype in (np.int8, np.int16, np.int32, np.int64):
            if not count or (np.iinfo(dtype).min <= values.min() and values.max() <= np.iinfo(dtype).max):
                narrow = values.astype(dtype)
                break
        header["columns"].append([name, narrow.dtype.str, name in delta])
        parts.append(narrow.view(np.uint8).reshape(count, narrow.itemsize).T.tobytes())
    return json.dumps(header).encode(), b"".join(parts)


def split_blob(blob: bytes) -> tuple[bytes, bytes]:
    assert blob[:4] == encoding.MAGIC
    (head_len,) = struct.unpack("<I", blob[4:8])
    return blob[8 : 8 + head_len], zlib.decompress(blob[8 + head_len :])


def encode_with_limit(monkeypatch, limit: int, columns: dict, names: tuple, delta: tuple = ()) -> bytes:
    monkeypatch.setattr(encoding, "SMALL_COLUMN_LIMIT", limit)
    return encoding.encode_columns(columns, names, delta)


COLUMN_CASES = {
    "empty": [],
    "one value": [5],
    "negative": [-1, -3, -7, -1, 0],
    **{f"boundary {v}": [0, v, v, 0] for v in BOUNDARIES},
    **{f"just past {v}": [0, v - 1 if v < 0 else v + 1] for v in BOUNDARIES[:-2]},
    "all boundaries": BOUNDARIES,
    "timestamps": [1_700_000_000_000_000_000 + i * 10_000_000 + (i % 3) * 1000 for i in range(50)],
    "deltas wider than values": [127, -128, 127, -128, 127],
    "deltas wrap int64": [2**63 - 1, -(2**63), 2**63 - 1, 0],
    "long": list(range(-300, 300, 3)),
}


@pytest.mark.parametrize("case", list(COLUMN_CASES))
def test_python_and_numpy_paths_write_the_same_bytes_as_the_format_defines(monkeypatch, case):
    values = COLUMN_CASES[case]
    columns = {"plain": np.asarray(values, dtype=np.int64), "delta": np.asarray(values, dtype=np.int64),
               "small": np.asarray([v % 100 - 50 for v in values], dtype=np.int8)}
    names, delta = ("plain", "delta", "small"), ("delta",)
    python_blob = encode_with_limit(monkeypatch, 10**9, columns, names, delta)
    numpy_blob = encode_with_limit(monkeypatch, 0, columns, names, delta)
    assert python_blob == numpy_blob
    assert split_blob(python_blob) == reference_body(columns, names, delta)
    decoded = encoding.decode_columns(python_blob, names)
    for name in names:
        assert decoded[name].tolist() == columns[name].tolist(), name


def test_python_path_takes_array_and_list_columns_like_numpy(monkeypatch):
    profile = small_profile(samples=5)
    columns = {"prefix": profile.stack_prefix, "frame": profile.stack_frame}
    assert encode_with_limit(monkeypatch, 10**9, columns, encoding.STACK_COLUMNS) == \
        encode_with_limit(monkeypatch, 0, columns, encoding.STACK_COLUMNS)
    as_lists = {name: list(values) for name, values in columns.items()}
    assert encode_with_limit(monkeypatch, 10**9, as_lists, encoding.STACK_COLUMNS) == \
        encode_with_limit(monkeypatch, 0, columns, encoding.STACK_COLUMNS)


def test_python_path_rejects_values_wider_than_64_bits_and_ragged_columns(monkeypatch):
    monkeypatch.setattr(encoding, "SMALL_COLUMN_LIMIT", 10**9)
    with pytest.raises(encoding.EncodingError, match="do not fit in 64 bits"):
        encoding.encode_columns({"a": [2**63]}, ("a",))
    with pytest.raises(encoding.EncodingError, match="column b has 1 values, expected 2"):
        encoding.encode_columns({"a": [1, 2], "b": [1]}, ("a", "b"))


def small_profile(samples: int, frames: int = 30, seed: int = 3) -> Profile:
    rng = np.random.default_rng(seed)
    profile = Profile({"kind": "request", "pid": 7, "cmdline": "GET /orders", "start_ns": 1_700_000_000_000_000_000,
                       "duration_ns": samples * 10_000_000, "rate_hz": 100.0, "labels": {"route": "/orders"}})
    threads = [profile.add_thread(7, 70, "MainThread"), profile.add_thread(7, 71, "worker \u2603")]
    calls = [(f"fn_{i}", f"/srv/app/mod_{i % 7}.py", 1 + 37 * i) for i in range(frames)]
    stacks = [profile.intern_frames(calls[: int(depth)]) for depth in rng.integers(1, frames + 1, 8)]
    now = 1_700_000_000_000_000_000
    for _ in range(samples):
        now += int(rng.integers(9_000_000, 11_000_000))
        state = State(int(rng.integers(0, len(State))))
        profile.append_sample(now, threads[int(rng.integers(0, 2))], stacks[int(rng.integers(0, 8))],
                              int(rng.integers(1, 20_000_000)), state, "socket recv" if state == State.WAITING else None)
    return profile


def pyinstrument_profile() -> Profile:
    """A real pyinstrument session over a few ms of nested calls, converted as the WSGI middleware does."""
    def leaf():
        return sum(abs(i) for i in range(20_000))

    def middle():
        return leaf() + leaf()

    profiler = DeepProfiler(0.001)
    profiler.begin()
    middle()
    session = profiler.stop()
    return session_to_profile(session, profiler.cpu_ns_at_sample, profiler.start_cpu_ns, pid=1, tid=2,
                              thread_name="MainThread", meta={"kind": "request", "labels": {"capture": "deep"}})


def assert_same_profile(loaded: Profile, original: Profile) -> None:
    assert loaded.strings == original.strings
    assert loaded.threads == original.threads
    for name in ("frame_function", "frame_file", "frame_line", "stack_prefix", "stack_frame"):
        assert list(getattr(loaded, name)) == list(getattr(original, name)), name
    for name, column in original.columns().items():
        assert loaded.columns()[name].tolist() == column.tolist(), name


@pytest.mark.parametrize("make", [lambda: small_profile(0), lambda: small_profile(1), lambda: small_profile(3),
                                  lambda: small_profile(40, frames=100), lambda: small_profile(5000, frames=400),
                                  pyinstrument_profile],
                         ids=["empty", "1 sample", "3 samples", "40 samples", "5000 samples", "pyinstrument"])
def test_profiles_round_trip_through_the_store_with_the_same_summary_either_path(tmp_path, monkeypatch, make):
    original = make()
    store = open_store(tmp_path / "s.db")
    ids = store.save_profiles([original])
    assert_same_profile(store.load_profile(ids[0]), original)
    fast_row, fast_tables, fast_samples = encode_profile(original)
    monkeypatch.setattr(summary, "SMALL_COLUMN_LIMIT", 0)
    monkeypatch.setattr(encoding, "SMALL_COLUMN_LIMIT", 0)
    numpy_row, numpy_tables, numpy_samples = encode_profile(original)
    assert fast_row[:-1] == numpy_row[:-1]  # the last value is the creation time
    assert (fast_tables, fast_samples) == (numpy_tables, numpy_samples)
    meta = store.profile_meta(ids[0])
    cols = original.columns()
    for state, key in ((State.ON_CPU, "cpu_ns"), (State.WAITING, "wait_ns"), (State.RUNNABLE, "runnable_ns")):
        assert meta[key] == int(cols["weight_ns"][cols["state"] == state].sum())
    if original.sample_count and "duration_ns" not in original.meta:
        first, end = original.time_range_ns
        assert (meta["start_ns"], meta["duration_ns"]) == (first, end - first)


def test_a_stored_blob_is_a_plain_zlib_stream_of_the_format_body():
    profile = small_profile(3)
    samples = encoding.encode_samples(profile.columns())
    assert split_blob(samples) == reference_body(profile.columns(), encoding.SAMPLE_COLUMNS, ("time_ns",))
    tables = encoding.encode_tables(profile)
    head, frames, stacks = encoding._split_parts(tables, 3)
    assert json.loads(zlib.decompress(head))["strings"] == profile.strings
    frame_columns = {"function": profile.frame_function, "file": profile.frame_file, "line": profile.frame_line}
    assert split_blob(frames) == reference_body(frame_columns, encoding.FRAME_COLUMNS)
    assert_same_profile(encoding.decode_profile({}, tables, samples), profile)


@pytest.mark.parametrize("damage", ["truncated", "flipped body byte", "bad magic", "wrong column names", "trailing table bytes"])
def test_damaged_small_blobs_raise_encoding_error(damage):
    profile = small_profile(3)
    tables, samples = encoding.encode_tables(profile), encoding.encode_samples(profile.columns())
    if damage == "truncated":
        samples = samples[:-3]
    elif damage == "flipped body byte":
        samples = samples[:-6] + bytes([samples[-6] ^ 0xFF]) + samples[-5:]
    elif damage == "bad magic":
        samples = b"XXXX" + samples[4:]
    elif damage == "wrong column names":
        samples = encoding.encode_columns(profile.columns(), ("time_ns", "thread"))
    else:
        tables = tables + b"\0"
    with pytest.raises(encoding.EncodingError):
        encoding.decode_profile({}, tables, samples)


def test_small_profiles_encode_without_numpy_calls_per_column(monkeypatch):
    """The small path must not fall back to numpy's per-column work (the cost it exists to avoid)."""
    profile = small_profile(3)
    profile.columns()

    def forbidden(*args, **kwargs):
        raise AssertionError("numpy column path used for a small profile")

    monkeypatch.setattr(encoding, "_column_numpy", forbidden)
    row, tables, samples = encode_profile(profile)
    assert_same_profile(encoding.decode_profile({}, tables, samples), profile)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 1000, encoding.STORE_UNCOMPRESSED_BELOW - 1])
def test_small_parts_are_written_as_one_stored_zlib_block(size):
    body = bytes((i * 7 + 3) % 256 for i in range(size))
    stream = encoding._compress(body)
    assert zlib.decompress(stream) == body
    assert len(stream) == size + 11 and stream[2:3] == b"\x01"  # zlib header, one final stored block, Adler-32
    if size < 256:  # where zlib's own level 0 writes one block too: the very same bytes
        level0 = zlib.compressobj(0, zlib.DEFLATED, zlib.MAX_WBITS, 2)
        assert stream == level0.compress(body) + level0.flush()


def test_large_parts_are_compressed():
    body = b"profviz " * encoding.STORE_UNCOMPRESSED_BELOW
    assert len(encoding._compress(body)) < len(body) // 10 and zlib.decompress(encoding._compress(body)) == body


def test_profiles_stored_with_compressed_small_parts_still_load(tmp_path, monkeypatch):
    """Stores written before small parts were stored uncompressed (level 1, memLevel 2) load the same profiles."""
    profile = small_profile(5)
    with open_store(tmp_path / "new.db") as store:
        new_id = store.save_profile(profile)
        new_blobs = store.read("SELECT tables, samples FROM profile_data WHERE profile_id = ?", (new_id,))[0]

    def compressed_as_before(body: bytes) -> bytes:
        compressor = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS, 2)
        return compressor.compress(body) + compressor.flush()

    monkeypatch.setattr(encoding, "_compress", compressed_as_before)
    with open_store(tmp_path / "old.db") as store:
        old_id = store.save_profile(small_profile(5))
        old_blobs = store.read("SELECT tables, samples FROM profile_data WHERE profile_id = ?", (old_id,))[0]
        assert old_blobs["tables"] != new_blobs["tables"] and old_blobs["samples"] != new_blobs["samples"]
        monkeypatch.undo()
        assert_same_profile(store.load_profile(old_id), profile)
