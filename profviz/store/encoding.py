"""Compact binary encoding of a profile's tables for the store.

Samples are stored as columns: time as deltas from the previous sample, every column in the
smallest integer type that holds it, bytes shuffled by significance (all low bytes, then the
next...), and the whole zlib-compressed. At a steady sampling rate most deltas, weights,
threads and states repeat, which is what makes a stored sample cost a few bytes.
"""

from __future__ import annotations

import json
import operator
import struct
import sys
import zlib
from array import array

import numpy as np

from ..model import FORMAT_VERSION, Profile, ProfileError, profile_from_tables

MAGIC = b"PVZ1"
SAMPLE_COLUMNS = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
_DTYPES = (np.int8, np.int16, np.int32, np.int64)
# (lowest, highest, dtype) for each stored width, narrowest first: np.iinfo costs ~1 us a call.
_NUMPY_RANGES = tuple((int(np.iinfo(d).min), int(np.iinfo(d).max), d) for d in _DTYPES)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# Columns shorter than this are encoded in pure Python (builtin min/max and the array module):
# below it numpy's fixed cost per column (~4 us: asarray, min, max, astype, shuffle) exceeds
# Python's per-value cost. Both paths write the same bytes; the store saves many small
# per-request profiles (1-50 samples, 5-200 frames).
SMALL_COLUMN_LIMIT = 64
# (lowest, highest, numpy dtype string as the header stores it, array typecode) narrowest first.
_ARRAY_RANGES = (
    (-(1 << 7), (1 << 7) - 1, np.dtype(np.int8).str, "b"),
    (-(1 << 15), (1 << 15) - 1, np.dtype(np.int16).str, "h"),
    (-(1 << 31), (1 << 31) - 1, np.dtype(np.int32).str, "i"),
    (_INT64_MIN, _INT64_MAX, np.dtype(np.int64).str, "q"),
)
# The array module writes native byte order and C widths; the stored format is little-endian
# with exact widths, so the Python path is only used where the two agree.
_ARRAY_PATH_OK = sys.byteorder == "little" and all(
    array(code).itemsize == np.dtype(dtype_str).itemsize for _, _, dtype_str, code in _ARRAY_RANGES
)

# Parts whose uncompressed body is shorter than this are written as stored (level 0) zlib
# streams: on a small per-request profile (strings of ~40 frames: 1-3 KB) deflate saves about half
# the bytes for ~140k instructions a part (callgrind, level 1, memLevel 2: mostly the stream's set-up),
# a tenth of the cost of building and storing the whole profile. Larger parts, such as a long
# recording's samples, are compressed at level 6.
STORE_UNCOMPRESSED_BELOW = 4096


class EncodingError(ValueError):
    """Stored profile bytes could not be decoded; the message says which part."""


def _compress(body: bytes) -> bytes:
    """A zlib stream of ``body`` (``zlib.decompress`` reads any level).

    Bodies under ``STORE_UNCOMPRESSED_BELOW`` become a stored (level 0) stream, written here byte
    for byte as zlib writes it: a compressor object costs ~30k instructions to set up and tear
    down, ~100x the copy."""
    size = len(body)
    if size < STORE_UNCOMPRESSED_BELOW:
        return b"".join((_STORED_PREFIX, _STORED_LENGTHS.pack(size, size ^ 0xFFFF), body, _ADLER32.pack(zlib.adler32(body))))
    return zlib.compress(body, 6)


# A stored zlib stream of one block (what level 0 writes for under 64 KB): the zlib header
# (deflate, 32 KB window, "fastest" level), a final stored block's header (type byte, LEN and its
# one's complement, little-endian), the body, and its Adler-32 (big-endian).
_STORED_PREFIX = b"\x78\x01\x01"
_STORED_LENGTHS = struct.Struct("<HH")
_ADLER32 = struct.Struct(">I")


def _narrow(values: np.ndarray) -> np.ndarray:
    if not len(values):
        return values.astype(np.int8)
    low, high = int(values.min()), int(values.max())
    for lowest, highest, dtype in _NUMPY_RANGES:
        if lowest <= low and high <= highest:
            return values.astype(dtype)
    raise EncodingError(f"column values {low}..{high} do not fit in 64 bits")


def _shuffle(values: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), values.dtype.itemsize)
    return raw.T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    if len(data) != itemsize * count:
        raise EncodingError(f"column has {len(data)} bytes, expected {itemsize * count}")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(itemsize, count).T
    return np.ascontiguousarray(raw).view(dtype).reshape(count).astype(np.int64)


def _column_numpy(values, is_delta: bool) -> tuple[str, bytes]:
    """(dtype string, shuffled bytes) of one column, with numpy (any length)."""
    values = np.asarray(values, dtype=np.int64)
    if is_delta and len(values):
        deltas = values.copy()  # np.diff(values, prepend=0) without its ~6 us of overhead; wraps alike
        deltas[1:] -= values[:-1]
        values = deltas
    narrow = _narrow(values)
    return narrow.dtype.str, _shuffle(narrow)


def _column_python(values, is_delta: bool) -> tuple[str, bytes]:
    """:func:`_column_numpy` in pure Python for short columns: the same bytes, no numpy call."""
    if type(values) is not list:  # a failed hasattr() on a list would build an exception
        values = values.tolist() if hasattr(values, "tolist") else list(values)
    if not values:
        return _ARRAY_RANGES[0][2], b""
    if is_delta:
        values = list(map(operator.sub, values, [0] + values[:-1]))
    low, high = min(values), max(values)
    if is_delta and (low < _INT64_MIN or high > _INT64_MAX):
        # numpy subtracts in int64, wrapping around (and cumsum wraps back when decoding): do the same.
        values = [(v - _INT64_MIN) % (1 << 64) + _INT64_MIN for v in values]
        low, high = min(values), max(values)
    for lowest, highest, dtype_str, code in _ARRAY_RANGES:
        if lowest <= low and high <= highest:
            count = len(values)
            packer = _PACKERS.get((code, count))
            if packer is None:
                packer = struct.Struct(f"<{count}{code}")
                if len(_PACKERS) < 4096:
                    _PACKERS[(code, count)] = packer
            raw = packer.pack(*values)  # array(code, values) parses each value with PyArg_Parse: ~5x the cost
            itemsize = packer.size // count
            return dtype_str, raw if itemsize == 1 else b"".join(map(raw.__getitem__, _BYTE_PLANES[itemsize]))
    raise EncodingError(f"column values {low}..{high} do not fit in 64 bits")


_PACKERS: dict[tuple[str, int], struct.Struct] = {}  # (typecode, count) -> little-endian packer of count values
# itemsize -> the slices that pick each byte plane (all low bytes, then the next...) of packed values
_BYTE_PLANES = {size: tuple(slice(i, None, size) for i in range(size)) for size in (2, 4, 8)}


_header_entries: dict[tuple[str, str, bool], str] = {}
# (is_delta, *values) -> (dtype string, bytes) of a short column: per-request profiles repeat many
# of theirs (a thread column of zeros, a chain's prefixes 0, 1, 2..., the same stack's frames),
# and the lookup costs a tenth of encoding a column in Python (~8k instructions, 25k with deltas)
_SMALL_COLUMNS: dict[tuple, tuple[str, bytes]] = {}
SMALL_COLUMNS_KEPT = 2048


def _column_header(name: str, dtype_str: str, is_delta: bool) -> str:
    """``json.dumps([name, dtype_str, is_delta])``, cached (few distinct combinations exist)."""
    key = (name, dtype_str, is_delta)
    entry = _header_entries.get(key)
    if entry is None:
        entry = _header_entries[key] = json.dumps([name, dtype_str, is_delta])
    return entry


def encode_columns(columns: dict[str, np.ndarray], names: tuple[str, ...], delta: tuple[str, ...] = ()) -> bytes:
    """Encode equal-length integer columns into one compressed blob; ``delta`` columns store differences.

    Columns may be numpy arrays, ``array.array`` or lists of ints. Short columns take a pure
    Python path (see :data:`SMALL_COLUMN_LIMIT`) that writes the same bytes as the numpy one.
    """
    count = len(columns[names[0]]) if names else 0
    small = _ARRAY_PATH_OK and count < SMALL_COLUMN_LIMIT
    entries, parts = [], []
    for name in names:
        values = columns[name]
        if len(values) != count:
            raise EncodingError(f"column {name} has {len(values)} values, expected {count}")
        is_delta = name in delta
        if small:
            if type(values) is not list:  # a failed hasattr() on a list would build an exception
                values = values.tolist() if hasattr(values, "tolist") else list(values)
            key = (is_delta, *values)
            found = _SMALL_COLUMNS.get(key)
            if found is None:
                found = _column_python(values, is_delta and count > 0)
                if len(_SMALL_COLUMNS) >= SMALL_COLUMNS_KEPT:
                    _SMALL_COLUMNS.clear()
                _SMALL_COLUMNS[key] = found
            dtype_str, data = found
        else:
            dtype_str, data = _column_numpy(values, is_delta and count > 0)
        entries.append(_header_entries.get((name, dtype_str, is_delta)) or _column_header(name, dtype_str, is_delta))
        parts.append(data)
    # Byte for byte json.dumps({"count": count, "columns": [...]}), at a fraction of its cost.
    head = ('{"count": %d, "columns": [%s]}' % (count, ", ".join(entries))).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + _compress(b"".join(parts))


def decode_columns(blob: bytes, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_columns`. Raises EncodingError on damaged input."""
    try:
        if blob[:4] != MAGIC:
            raise EncodingError("column blob does not start with the profviz magic bytes")
        (head_len,) = struct.unpack("<I", blob[4:8])
        header = json.loads(blob[8 : 8 + head_len])
        body = zlib.decompress(blob[8 + head_len :])
        count = int(header["count"])
        out: dict[str, np.ndarray] = {}
        offset = 0
        for name, dtype, is_delta in header["columns"]:
            size = np.dtype(dtype).itemsize * count
            values = _unshuffle(body[offset : offset + size], np.dtype(dtype), count)
            out[name] = np.cumsum(values) if is_delta else values
            offset += size
    except EncodingError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, zlib.error) as exc:
        raise EncodingError(f"column blob is damaged: {exc}") from None
    if set(out) != set(names):
        raise EncodingError(f"column blob has columns {sorted(out)}, expected {list(names)}")
    return out


def encode_samples(columns: dict[str, np.ndarray]) -> bytes:
    """Encode sample columns into one compressed blob (time stored as deltas)."""
    return encode_columns(columns, SAMPLE_COLUMNS, delta=("time_ns",))


def decode_samples(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_samples`."""
    return decode_columns(blob, SAMPLE_COLUMNS)


FRAME_COLUMNS = ("function", "file", "line")
# json.dumps(..., ensure_ascii=False) builds a new encoder at every call; this one writes the same text
_TABLES_JSON = json.JSONEncoder(ensure_ascii=False)
STACK_COLUMNS = ("prefix", "frame")


def encode_tables(profile: Profile) -> bytes:
    """Encode strings, frames, stacks and threads (everything but samples and spans)."""
    head = {
        "version": FORMAT_VERSION,
        "strings": profile.strings,
        "threads": [[t.pid, t.tid, t.name] for t in profile.threads],
    }
    head_bytes = _compress(_TABLES_JSON.encode(head).encode())
    frames = encode_columns(
        {"function": profile.frame_function, "file": profile.frame_file, "line": profile.frame_line}, FRAME_COLUMNS
    )
    stacks = encode_columns({"prefix": profile.stack_prefix, "frame": profile.stack_frame}, STACK_COLUMNS)
    return b"".join(struct.pack("<I", len(part)) + part for part in (head_bytes, frames, stacks))


def _split_parts(blob: bytes, count: int) -> list[bytes]:
    parts, offset = [], 0
    for _ in range(count):
        (size,) = struct.unpack("<I", blob[offset : offset + 4])
        parts.append(blob[offset + 4 : offset + 4 + size])
        offset += 4 + size
    if offset != len(blob):
        raise EncodingError(f"profile tables have {len(blob) - offset} trailing bytes")
    return parts


def decode_profile(meta: dict, tables_blob: bytes, samples_blob: bytes) -> Profile:
    """Rebuild a profile from its two stored blobs. Raises EncodingError naming what is wrong."""
    try:
        head_bytes, frames_blob, stacks_blob = _split_parts(tables_blob, 3)
        head = json.loads(zlib.decompress(head_bytes))
    except (zlib.error, ValueError, struct.error) as exc:
        raise EncodingError(f"profile tables are damaged: {exc}") from None
    version = head.get("version") if isinstance(head, dict) else None
    if version != FORMAT_VERSION:
        raise EncodingError(f"profile format version {version!r} is not supported (this profviz reads {FORMAT_VERSION})")
    frames = decode_columns(frames_blob, FRAME_COLUMNS)
    stacks = decode_columns(stacks_blob, STACK_COLUMNS)
    samples = decode_samples(samples_blob)
    try:
        return profile_from_tables(
            meta, head["strings"], (frames["function"], frames["file"], frames["line"]),
            (stacks["prefix"], stacks["frame"]), head["threads"], samples,
        )
    except (ProfileError, KeyError, TypeError, ValueError) as exc:
        raise EncodingError(f"profile tables are inconsistent: {exc}") from None
