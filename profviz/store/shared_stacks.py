"""Profiles stored as samples over a shared stack table, rebuilt into a Profile when loaded.

The in-process sampler interns every stack it sees in one table per process: node ids, each a
(prefix node, function, file, line). A request profile it keeps is a handful of samples on those
nodes. Building and encoding a whole :class:`~profviz.model.Profile` for each (strings, frames,
stacks, checks, compression) cost ~0.67M instructions, several times the rest of a kept request;
stored this way it costs the ``profiles`` row and a few bytes.

* ``stack_nodes`` holds the nodes, keyed by ``source`` (one random id per sampling process, so
  nodes of two processes never mix); a writer adds the nodes its profiles use, in the same
  transaction as the profiles (:func:`insert_stack_nodes`; nodes are never changed or deleted).
* A profile's ``profile_data`` row holds ``MAGIC`` + JSON head (format version, source, its one
  thread) as ``tables``, and its samples as little-endian int64 columns (time, node, weight,
  state) as ``samples``.
* :func:`decode_shared` rebuilds the Profile from the nodes its samples reach; a profile loaded
  this way is the profile the sampler's samples make through the builder (same frames, stacks
  and samples; ids may be numbered in another order).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from array import array
from typing import Sequence

from ..model import FORMAT_VERSION, Profile, ProfileError, TableLists
from .encoding import EncodingError

MAGIC = b"PVZS"
STACK_NODES_SCHEMA = """
CREATE TABLE IF NOT EXISTS stack_nodes (
    source TEXT NOT NULL,
    node INTEGER NOT NULL,
    prefix INTEGER NOT NULL,
    function TEXT NOT NULL,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    PRIMARY KEY (source, node)
) WITHOUT ROWID
"""
_LITTLE = sys.byteorder == "little"
_NODES_NEEDED = """
WITH RECURSIVE need(node) AS (
    SELECT value FROM json_each(?2)
    UNION
    SELECT n.prefix FROM stack_nodes AS n JOIN need ON n.source = ?1 AND n.node = need.node WHERE n.prefix >= 0
)
SELECT n.node, n.prefix, n.function, n.file, n.line
FROM stack_nodes AS n JOIN need ON n.source = ?1 AND n.node = need.node ORDER BY n.node
"""


class SharedStackProfile:
    """A profile to store: ``meta`` (as a Profile's), the ``source`` whose stack nodes its samples
    use, its one thread ``(pid, tid, name)``, and its samples as four lists (epoch ns, node id,
    weight ns, state). Saved by :meth:`Store.save_profiles` like a Profile."""

    __slots__ = ("meta", "source", "thread", "times", "stacks", "weights", "states")

    def __init__(self, meta: dict, source: str, thread: tuple[int, int, str], times: list[int], stacks: list[int],
                 weights: list[int], states: list[int]):
        if not (len(times) == len(stacks) == len(weights) == len(states)):
            raise ProfileError(f"sample lists differ in length: {len(times)}/{len(stacks)}/{len(weights)}/{len(states)}")
        self.meta, self.source, self.thread = meta, source, thread
        self.times, self.stacks, self.weights, self.states = times, stacks, weights, states

    @property
    def sample_count(self) -> int:
        return len(self.times)


def insert_stack_nodes(conn: sqlite3.Connection, source: str, nodes: Sequence[tuple[int, int, str, str, int]]) -> None:
    """Add ``(node, prefix, function, file, line)`` rows of ``source`` (rows already there are kept)."""
    conn.executemany(
        "INSERT OR IGNORE INTO stack_nodes VALUES (?, ?, ?, ?, ?, ?)",
        [(source, node, prefix, function, file, line) for node, prefix, function, file, line in nodes],
    )


def encode_shared(profile: SharedStackProfile) -> tuple[bytes, bytes]:
    """The ``profile_data`` blobs (tables, samples) of a shared-stack profile."""
    pid, tid, name = profile.thread
    head = json.dumps({"version": FORMAT_VERSION, "source": profile.source, "thread": [pid, tid, name]})
    columns = array("q", profile.times)
    columns.extend(profile.stacks)
    columns.extend(profile.weights)
    columns.extend(profile.states)
    if not _LITTLE:
        columns.byteswap()
    return MAGIC + head.encode(), columns.tobytes()


def is_shared(tables_blob: bytes) -> bool:
    return bytes(tables_blob[:4]) == MAGIC


def decode_shared(meta: dict, tables_blob: bytes, samples_blob: bytes, conn: sqlite3.Connection) -> Profile:
    """Rebuild a shared-stack profile, reading the nodes it uses through ``conn``. Raises
    EncodingError naming what is wrong (damaged blobs, nodes missing from the store)."""
    try:
        head = json.loads(bytes(tables_blob[len(MAGIC):]))
        version, source, (pid, tid, name) = head["version"], str(head["source"]), head["thread"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EncodingError(f"shared-stack profile head is damaged: {exc}") from None
    if version != FORMAT_VERSION:
        raise EncodingError(f"profile format version {version!r} is not supported (this profviz reads {FORMAT_VERSION})")
    if len(samples_blob) % 32:
        raise EncodingError(f"shared-stack samples are {len(samples_blob)} bytes, not a whole number of 32-byte samples")
    columns = array("q")
    columns.frombytes(bytes(samples_blob))
    if not _LITTLE:
        columns.byteswap()
    count = len(columns) // 4
    times, stacks = columns[:count].tolist(), columns[count:2 * count].tolist()
    weights, states = columns[2 * count:3 * count].tolist(), columns[3 * count:].tolist()
    rows = conn.execute(_NODES_NEEDED, (source, json.dumps(sorted(set(stacks) - {-1})))).fetchall()
    tables = TableLists()
    converted = {-1: -1}
    for node, prefix, function, file, line in rows:  # by node id: a prefix always has a lower id
        if prefix not in converted:
            raise EncodingError(f"stack node {node} of {source} has prefix {prefix}, which is not a stored node before it")
        converted[node] = tables.stack(converted[prefix], tables.frame(str(function), str(file), int(line)))
    missing = set(stacks) - converted.keys()
    if missing:
        raise EncodingError(f"{len(missing)} stack nodes of {source} are missing from the store (e.g. {min(missing)})")
    profile = Profile(meta)
    thread = profile.add_thread(int(pid), int(tid), str(name))
    try:
        tables.fill(profile)
        profile.extend_samples(times, thread, [converted[stack] for stack in stacks], weights, states)
    except ProfileError as exc:
        raise EncodingError(f"shared-stack profile is inconsistent: {exc}") from None
    return profile
