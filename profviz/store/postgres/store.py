"""The PostgreSQL store: the shared store of a fleet, for many processes and hosts at once.

Profiles as in SQLite (a summary row and two blobs); requests and spans in day partitions;
latency sketches per minute and hour, merged under row locks as batches arrive.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import psycopg

from ...model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, SpanFacts
from ...model.latency_sketch import RouteSketch
from ..base import PROFILE_META_KEYS, ProfileNotFound, Store, StoreError
from ..encoding import EncodingError, decode_profile
from ..shared_stacks import decode_shared, is_shared
from ..queries import origins_of, select_origins
from ..sketch_rows import MINUTE_NS
from ..summary import decode_meta, encode_profile
from . import requests, spans
from .database import Database
from .schema import DAY_NS, drop_days_before

_SELECT_META = f"SELECT {', '.join(PROFILE_META_KEYS)} FROM profiles"
_NODES_REACHING = """
WITH RECURSIVE need(node) AS (
    SELECT unnest(%(ids)s::bigint[])
    UNION
    SELECT n.prefix FROM stack_nodes AS n JOIN need ON n.source = %(source)s AND n.node = need.node WHERE n.prefix >= 0
)
SELECT n.node, n.prefix, n.function, n.file, n.line
FROM stack_nodes AS n JOIN need ON n.source = %(source)s AND n.node = need.node ORDER BY n.node
"""


class PostgresStore(Database, Store):
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

    def profile_meta(self, profile_id: int) -> dict[str, Any]:
        rows = self.fetch(_SELECT_META + " WHERE id = %s", (int(profile_id),))
        if not rows:
            raise ProfileNotFound(f"no profile with id {profile_id} in {self.location}: run 'profviz list' to see the ids")
        return decode_meta(rows[0])

    def load_profile(self, profile_id: int) -> Profile:
        meta = self.profile_meta(profile_id)
        rows = self.fetch("SELECT tables, samples FROM profile_data WHERE profile_id = %s", (int(profile_id),))
        if not rows:
            raise StoreError(f"profile {profile_id} has no data in {self.location}: delete it with 'profviz delete {profile_id}'")
        tables, samples = bytes(rows[0]["tables"]), bytes(rows[0]["samples"])
        try:
            if is_shared(tables):
                return decode_shared(meta, tables, samples, self._nodes_reaching)
            return decode_profile(meta, tables, samples)
        except EncodingError as exc:
            raise StoreError(f"profile {profile_id} in {self.location} is damaged ({exc}): delete it with 'profviz delete {profile_id}'") from None

    def _nodes_reaching(self, source: str, node_ids: list[int]) -> list[tuple[int, int, str, str, int]]:
        return [tuple(row) for row in self.fetch(_NODES_REACHING, {"ids": [int(n) for n in node_ids], "source": source})]

    def list_profiles(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        sql, params = _SELECT_META, []
        if kind:
            sql += " WHERE kind = %s"
            params.append(kind)
        sql += " ORDER BY start_ns DESC, id DESC"
        if limit:
            sql += " LIMIT %s"
            params.append(int(limit))
        return [decode_meta(r) for r in self.fetch(sql, params)]

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
        from before that day; hour sketches stay. How many requests, spans and profiles went."""
        cutoff = since_ns // DAY_NS * DAY_NS

        def work(c: psycopg.Connection) -> dict[str, int]:
            gone = {"requests": drop_days_before(c, "requests", cutoff), "spans": drop_days_before(c, "spans", cutoff)}
            gone["profiles"] = c.execute("DELETE FROM profiles WHERE start_ns < %s", (cutoff,)).rowcount
            c.execute("DELETE FROM span_log WHERE last_ns < %s", (cutoff,))
            c.execute("DELETE FROM latency_sketches WHERE grain_ns = %s AND start_ns < %s", (MINUTE_NS, cutoff))
            return gone

        gone = self.transaction("drop old data from", work)
        self.forget_days()
        return gone
