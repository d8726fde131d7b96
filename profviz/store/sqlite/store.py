"""The SQLite store: one file (stdlib sqlite3, WAL) holding profiles, requests and spans.

Profile metadata lives in queryable columns; a profile's tables and samples in two compressed
blobs (:mod:`profviz.store.encoding`). Connections are per thread; several processes may write at
once (WAL, busy timeout, retry on "database is locked").
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable, Sequence

from ...model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, SpanFacts
from ...model.latency_sketch import RouteSketch
from ..base import Store
from ..profile_reads import ProfileReads
from ..queries import origins_of, select_origins
from ..sketch_rows import MINUTE_NS

DAY_NS = 86_400 * 10**9
from ..summary import encode_profile
from . import requests, sketches, span_facts, spans, stack_nodes
from .database import Database
from .profiles import insert_encoded



class SQLiteStore(ProfileReads, Database, Store):
    """A store in the SQLite file at ``path``, created with its schema if needed.

    Raises StoreError with a fix when the location is not writable or the file is not a profviz store.
    """

    # -- profiles -------------------------------------------------------------------------

    def save_profiles(self, profiles: Sequence[Profile | SharedStackProfile]) -> list[int]:
        encoded = [encode_profile(profile) for profile in profiles]  # before the transaction: the lock is held briefly
        ids = self.transaction("write to", lambda c: insert_encoded(c, encoded))
        for profile, profile_id in zip(profiles, ids):
            profile.meta["id"] = profile_id
        return ids

    def _nodes_reaching(self, source: str, node_ids: list[int]) -> list[tuple[int, int, str, str, int]]:
        return stack_nodes.reaching(self, source, node_ids)

    def delete_profile(self, profile_id: int) -> None:
        self.profile_meta(profile_id)

        def work(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM profile_data WHERE profile_id = ?", (int(profile_id),))
            c.execute("DELETE FROM profiles WHERE id = ?", (int(profile_id),))

        self.transaction("delete from", work)

    def set_labels(self, profile_id: int, labels: dict[str, Any]) -> None:
        self.profile_meta(profile_id)
        self.transaction("write to", lambda c: c.execute("UPDATE profiles SET labels = ? WHERE id = ?", (json.dumps(labels), int(profile_id))))

    def profile_bytes(self, profile_id: int) -> int:
        rows = self.read("SELECT length(tables) + length(samples) FROM profile_data WHERE profile_id = ?", (int(profile_id),))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    # -- requests -------------------------------------------------------------------------

    def write_batch(self, batch: RequestBatch, *, batch_id: str | None = None) -> list[int]:
        return requests.write_batch(self, batch, batch_id)

    def query_requests(self, **window: Any) -> list[RequestRow]:
        return requests.query_requests(self, **window)

    def request_by_id(self, request_id: int) -> RequestRow:
        return requests.request_by_id(self, request_id)

    def request_columns(self, **window: Any) -> dict[str, list[Any]]:
        return requests.request_columns(self, **window)

    def route_sketches(self, *, since_ns: int | None = None, until_ns: int | None = None,
                       labels: dict[str, str] | None = None) -> list[RouteSketch]:
        return sketches.route_sketches(self, since_ns=since_ns, until_ns=until_ns, labels=labels)

    def origin_values(self, *, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[str]]:
        requests.materialize_requests(self)
        return origins_of(self.read(*select_origins(since_ns, until_ns)))

    def latest_request_ns(self) -> int | None:
        return requests.latest_request_ns(self)

    def newest_request_id(self) -> int | None:
        requests.materialize_requests(self)
        return self.read("SELECT max(id) FROM requests")[0][0]

    def request_for_profile(self, profile_id: int) -> int | None:
        return requests.request_for_profile(self, profile_id)

    # -- spans ----------------------------------------------------------------------------

    def insert_spans(self, items: Iterable[Span], *, checked: bool = False) -> int:
        return spans.insert_spans(self, items, checked=checked)

    def query_spans(self, **where: Any) -> list[Span]:
        return spans.query_spans(self, **where)

    def span_facts(self, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
        return span_facts.span_facts(self, pids=pids, start_ns=start_ns, end_ns=end_ns)

    def count_spans(self) -> int:
        return int(self.read("SELECT count(*) FROM spans")[0][0])

    def newest_span_id(self) -> int | None:
        return self.read("SELECT max(id) FROM spans")[0][0]

    # -- retention ------------------------------------------------------------------------

    def retain(self, since_ns: int) -> dict[str, int]:
        requests.materialize_requests(self)
        cutoff = int(since_ns)

        def work(c: sqlite3.Connection) -> dict[str, int]:
            gone = {"requests": c.execute("DELETE FROM requests WHERE start_ns < ?", (cutoff,)).rowcount,
                    "spans": c.execute("DELETE FROM spans WHERE start_ns < ?", (cutoff,)).rowcount}
            c.execute("DELETE FROM profile_data WHERE profile_id IN (SELECT id FROM profiles WHERE start_ns < ?)", (cutoff,))
            gone["profiles"] = c.execute("DELETE FROM profiles WHERE start_ns < ?", (cutoff,)).rowcount
            c.execute("DELETE FROM span_log WHERE last_ns < ?", (cutoff,))
            c.execute("DELETE FROM latency_sketches WHERE grain_ns = ? AND start_ns < ?", (MINUTE_NS, cutoff // MINUTE_NS * MINUTE_NS))
            c.execute("DELETE FROM ingested_batches WHERE received_ns < ?", (min(cutoff, time.time_ns() - DAY_NS),))  # a sender may retry one a day
            return gone

        return self.transaction("delete old data from", work)
