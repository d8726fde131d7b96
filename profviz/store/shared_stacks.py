"""Stored form of a :class:`~profviz.model.SharedStackProfile`, and its rebuilding into a Profile.

A profile's data is ``MAGIC`` + a JSON head (format version, source, its one thread) as its
``tables`` blob, and its samples as little-endian int64 columns (time, node, weight, state, and
when the head lists wait reasons an index into them or -1) as its ``samples`` blob. The nodes live in the backend's stack node table, keyed by source, written
with the batch whose profiles first use them and never changed or deleted. Loaded, it is the
profile the sampler's samples make through the builder (same frames, stacks and samples; ids may
be numbered in another order). Why it exists: docs/middleware.md.
"""

from __future__ import annotations

import json
import sys
from array import array
from typing import Callable, Iterable

from ..model import FORMAT_VERSION, Profile, ProfileError, SharedStackProfile, TableLists
from .encoding import EncodingError

MAGIC = b"PVZS"
_LITTLE = sys.byteorder == "little"

NodeRows = Iterable[tuple[int, int, str, str, int]]
"""``(node, prefix, function, file, line)`` rows, by node id."""


def encode_shared(profile: SharedStackProfile) -> tuple[bytes, bytes]:
    """The (tables, samples) blobs of a shared-stack profile."""
    pid, tid, name = profile.thread
    head_fields = {"version": FORMAT_VERSION, "source": profile.source, "thread": [pid, tid, name]}
    columns = array("q", profile.times)
    columns.extend(profile.stacks)
    columns.extend(profile.weights)
    columns.extend(profile.states)
    if profile.reasons is not None:
        names = sorted(set(profile.reasons) - {None})
        index = {reason: i for i, reason in enumerate(names)}
        index[None] = -1
        columns.extend(map(index.__getitem__, profile.reasons))
        head_fields["reasons"] = names
    head = json.dumps(head_fields)
    if not _LITTLE:
        columns.byteswap()
    return MAGIC + head.encode(), columns.tobytes()


def is_shared(tables_blob: bytes) -> bool:
    return bytes(tables_blob[:4]) == MAGIC


def decode_shared(meta: dict, tables_blob: bytes, samples_blob: bytes,
                  nodes_reaching: Callable[[str, list[int]], NodeRows]) -> Profile:
    """Rebuild a shared-stack profile. ``nodes_reaching(source, node ids)`` returns the stored
    nodes of ``source`` those ids reach through their prefixes, by node id. Raises EncodingError
    naming what is wrong (damaged blobs, nodes missing from the store)."""
    try:
        head = json.loads(bytes(tables_blob[len(MAGIC):]))
        version, source, (pid, tid, name) = head["version"], str(head["source"]), head["thread"]
        reason_names = [str(reason) for reason in head.get("reasons", ())]
        column_count = 5 if "reasons" in head else 4
    except (ValueError, KeyError, TypeError) as exc:
        raise EncodingError(f"shared-stack profile head is damaged: {exc}") from None
    if version != FORMAT_VERSION:
        raise EncodingError(f"profile format version {version!r} is not supported (this profviz reads {FORMAT_VERSION})")
    sample_size = 8 * column_count
    if len(samples_blob) % sample_size:
        raise EncodingError(f"shared-stack samples are {len(samples_blob)} bytes, not a whole number of {sample_size}-byte samples")
    columns = array("q")
    columns.frombytes(bytes(samples_blob))
    if not _LITTLE:
        columns.byteswap()
    count = len(columns) // column_count
    times, stacks = columns[:count].tolist(), columns[count:2 * count].tolist()
    weights, states = columns[2 * count:3 * count].tolist(), columns[3 * count:4 * count].tolist()
    reasons = None
    if column_count == 5:
        indices = columns[4 * count:].tolist()
        if indices and (min(indices) < -1 or max(indices) >= len(reason_names)):
            raise EncodingError(f"a shared-stack sample names wait reason {max(indices)}; the head lists {len(reason_names)}")
        reasons = [reason_names[i] if i >= 0 else None for i in indices]
    tables = TableLists()
    converted = {-1: -1}
    for node, prefix, function, file, line in nodes_reaching(source, sorted(set(stacks) - {-1})):
        if prefix not in converted:  # by node id: a prefix always has a lower id
            raise EncodingError(f"stack node {node} of {source} has prefix {prefix}, which is not a stored node before it")
        converted[node] = tables.stack(converted[prefix], tables.frame(str(function), str(file), int(line)))
    missing = set(stacks) - converted.keys()
    if missing:
        raise EncodingError(f"{len(missing)} stack nodes of {source} are missing from the store (e.g. {min(missing)})")
    profile = Profile(meta)
    thread = profile.add_thread(int(pid), int(tid), str(name))
    try:
        tables.fill(profile)
        profile.extend_samples(times, thread, [converted[stack] for stack in stacks], weights, states, reasons)
    except ProfileError as exc:
        raise EncodingError(f"shared-stack profile is inconsistent: {exc}") from None
    return profile
