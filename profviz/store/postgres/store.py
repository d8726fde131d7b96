"""The PostgreSQL store: the shared store of a fleet, for many processes and hosts at once.

Profiles as in SQLite (a summary row and two blobs); requests and spans in day partitions;
latency sketches per minute and hour, merged under row locks as batches arrive.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Sequence

import psycopg

from ...model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, SpanFacts
from ...model.latency_sketch import RouteSketch
from ..base import Store
from ..profile_reads import ProfileReads
from ..queries import origins_of, select_origins
from ..sketch_rows import MINUTE_NS
from ..summary import encode_profile
from . import requests, spans
from .database import Database
from .schema import DAY_NS, drop_partition, partitions

_NODES_REACHING = """
WITH RECURSIVE need(node) AS (
    SELECT unnest(%(ids)s::bigint[])
    UNION
    SELECT n.prefix FROM stack_nodes AS n JOIN need ON n.source = %(source)s AND n.node = need.node WHERE n.prefix >= 0
)
SELECT n.node, n.prefix, n.function, n.file, n.line
FROM stack_nodes AS n JOIN need ON n.source = %(source)s AND n.node = need.node ORDER BY n.node
"""


class PostgresStore(ProfileReads, Database, Store):
    """A store in the PostgreSQL database at ``url`` (``postgresql://user:password@host:port/db``),
    its schema created if the database is empty. Raises StoreError with a fix when the server
    cannot be reached, refuses the user, or the database holds something else."""

    # -- profiles -------------------------------------------------------------------------

    def save_profiles(self, profiles: Sequence[Profile | SharedStackProfile]) -> list[int]:
        encoded = [encode_profile(profile) for profile in profiles]
        ids = self.transaction("write to", lambda c: requests.insert_profiles(c, encoded))
        for profile, profile_id in zip(profiles, ids):
            profile.meta["id"] = profile_id
        return ids

    def _nodes_reaching(self, source: str, node_ids: list[int]) -> list[tuple[int, int, str, str, int]]:
        return [tuple(row) for row in self.fetch(_NODES_REACHING, {"ids": [int(n) for n in node_ids], "source": source})]

    def delete_profile(self, profile_id: int) -> None:
        self.profile_meta(profile_id)

        def work(c: psycopg.Connection) -> None:
            c.execute("UPDATE requests SET profile_id = NULL WHERE profile_id = %s", (int(profile_id),))
            c.execute("DELETE FROM profiles WHERE id = %s", (int(profile_id),))

        self.transaction("delete from", work)

    def set_labels(self, profile_id: int, labels: dict[str, Any]) -> None:
        self.profile_meta(profile_id)
        text = json.dumps(labels).replace("\\u0000", "\\ufffd")
        self.transaction("write to", lambda c: c.execute("UPDATE profiles SET labels = %s WHERE id = %s", (text, int(profile_id))))

    def profile_bytes(self, profile_id: int) -> int:
        rows = self.fetch("SELECT octet_length(tables) + octet_length(samples) FROM profile_data WHERE profile_id = %s", (int(profile_id),))
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
        return requests.route_sketches(self, since_ns=since_ns, until_ns=until_ns, labels=labels)

    def origin_values(self, *, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[str]]:
        return origins_of(self.read(*select_origins(since_ns, until_ns, requests.label_sql)))

    def latest_request_ns(self) -> int | None:
        return requests.latest_request_ns(self)

    def newest_request_id(self) -> int | None:
        return self.fetch("SELECT max(id) FROM requests")[0][0]

    def request_for_profile(self, profile_id: int) -> int | None:
        return requests.request_for_profile(self, profile_id)

    # -- spans ----------------------------------------------------------------------------

    def insert_spans(self, items: Iterable[Span], *, checked: bool = False) -> int:
        return spans.insert_spans(self, items, checked=checked)

    def query_spans(self, **where: Any) -> list[Span]:
        return spans.query_spans(self, **where)

    def span_facts(self, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
        return spans.span_facts(self, pids=pids, start_ns=start_ns, end_ns=end_ns)

    def count_spans(self) -> int:
        return int(self.fetch("SELECT count(*) FROM spans")[0][0])

    def newest_span_id(self) -> int | None:
        return self.fetch("SELECT max(id) FROM spans")[0][0]

    # -- retention ------------------------------------------------------------------------

    def retain(self, since_ns: int) -> dict[str, int]:
        """Drop the day partitions of requests and spans that end by ``since_ns`` (so data is kept
        from the start of the day holding it), and the profiles, span facts and minute sketches
        from before that day; hour sketches stay. Each partition goes in a transaction of its own
        (dropping one locks its table for a moment), counted before. How many requests, spans and
        profiles went. The ids of pushed batches are kept a day at least (a sender may retry one)."""
        cutoff = since_ns // DAY_NS * DAY_NS
        gone = {"requests": 0, "spans": 0, "profiles": 0}
        for table in ("requests", "spans"):
            for name, _, high in self.transaction("read the partitions of", lambda c: partitions(c, table)):
                if high <= cutoff:
                    gone[table] += int(self.fetch(f'SELECT count(*) FROM "{name}"')[0][0])
                    self.transaction("drop old data from", lambda c: drop_partition(c, name))
        self.forget_days()
        while True:  # profiles in chunks: each a short transaction
            deleted = self.transaction("drop old data from", lambda c: c.execute(
                "DELETE FROM profiles WHERE id IN (SELECT id FROM profiles WHERE start_ns < %s LIMIT 1000)", (cutoff,)).rowcount)
            gone["profiles"] += deleted
            if deleted < 1000:
                break
        batches_before = min(cutoff, time.time_ns() - DAY_NS)

        def facts(c: psycopg.Connection) -> None:
            c.execute("DELETE FROM span_log WHERE last_ns < %s", (cutoff,))
            c.execute("DELETE FROM latency_sketches WHERE grain_ns = %s AND start_ns < %s", (MINUTE_NS, cutoff))
            c.execute("DELETE FROM ingested_batches WHERE received_ns < %s", (batches_before,))

        self.transaction("drop old data from", facts)
        return gone
