"""Compact binary encoding of a profile's tables for the store.

Samples are stored as columns: time as deltas from the previous sample, every column in the
smallest integer type that holds it, bytes shuffled by significance (all low bytes, then the
next...), and the whole zlib-compressed. At a steady sampling rate most deltas, weights,
threads and states repeat, which is what makes a stored sample cost a few bytes.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from ..model import FORMAT_VERSION, Profile, ProfileError, profile_from_tables

MAGIC = b"PVZ1"
SAMPLE_COLUMNS = ("time_ns", "thread", "stack", "weight_ns", "state", "reason")
_DTYPES = (np.int8, np.int16, np.int32, np.int64)


class EncodingError(ValueError):
    """Stored profile bytes could not be decoded; the message says which part."""


def _narrow(values: np.ndarray) -> np.ndarray:
    if not len(values):
        return values.astype(np.int8)
    low, high = int(values.min()), int(values.max())
    for dtype in _DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
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


def encode_columns(columns: dict[str, np.ndarray], names: tuple[str, ...], delta: tuple[str, ...] = ()) -> bytes:
    """Encode equal-length integer columns into one compressed blob; ``delta`` columns store differences."""
    count = len(columns[names[0]]) if names else 0
    header = {"count": count, "columns": []}
    parts = []
    for name in names:
        values = np.asarray(columns[name], dtype=np.int64)
        if len(values) != count:
            raise EncodingError(f"column {name} has {len(values)} values, expected {count}")
        if name in delta and count:
            values = np.diff(values, prepend=np.int64(0))
        narrow = _narrow(values)
        header["columns"].append([name, narrow.dtype.str, name in delta])
        parts.append(_shuffle(narrow))
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + zlib.compress(b"".join(parts), 6)


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
STACK_COLUMNS = ("prefix", "frame")


def encode_tables(profile: Profile) -> bytes:
    """Encode strings, frames, stacks and threads (everything but samples and spans)."""
    head = {
        "version": FORMAT_VERSION,
        "strings": profile.strings,
        "threads": [[t.pid, t.tid, t.name] for t in profile.threads],
    }
    head_bytes = zlib.compress(json.dumps(head, ensure_ascii=False).encode(), 6)
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
