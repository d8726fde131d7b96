"""Timed requests: one row per request, and the batches a middleware hands to the store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .profile import Profile
from .shared_stacks import SharedStackProfile

REQUEST_FIELDS = (
    "pid", "tid", "route", "method", "path", "status", "start_ns", "duration_ns", "cpu_ns", "response_bytes",
    "error", "profile_id", "labels", "queue_ns",
)
FIELD_COUNT = len(REQUEST_FIELDS)
OLD_FIELD_COUNT = FIELD_COUNT - 1  # batches logged before queue_ns (schema 4) lack its value
NO_QUEUE = -1  # a batch's queue_ns when the request carried no queue-start header
PROFILE_ID_FIELD = REQUEST_FIELDS.index("profile_id")


@dataclass
class RequestRow:
    """One timed request. ``start_ns`` is epoch ns, when the app began it; ``duration_ns`` the app's
    time; ``queue_ns`` the time it waited before that (from a proxy's X-Request-Start header), None
    when unknown; ``profile_id`` the kept profile, if any; ``id`` the store's."""

    pid: int
    tid: int
    route: str
    method: str
    path: str
    status: int
    start_ns: int
    duration_ns: int
    cpu_ns: int = 0
    response_bytes: int = 0
    error: str | None = None
    profile_id: int | None = None
    labels: dict = field(default_factory=dict)
    id: int | None = None
    queue_ns: int | None = None

    @property
    def total_ns(self) -> int:
        """Queue time (when known) plus the app's time: the latency a client saw."""
        return self.duration_ns + (self.queue_ns or 0)


@dataclass(frozen=True)
class StackNodes:
    """Shared stack nodes of one sampling ``source``: ``(node, prefix node, function, file, line)`` rows."""

    source: str
    nodes: Sequence[tuple[int, int, str, str, int]]


class RequestBatch:
    """Finished requests to store in one transaction, with the profiles kept for some of them.

    ``values`` holds the requests' fields laid end to end in :data:`REQUEST_FIELDS` order, as plain
    ``int`` and ``str`` (the cheapest form for the many small rows a server writes): an ``error`` of
    ``""``, a ``profile_id`` of 0 and a ``queue_ns`` of -1 mean none, and ``labels`` is a JSON object as text.
    ``profiles`` holds ``(profile, index of its request or None)``; a store gives each profile its
    id and sets its request's ``profile_id`` (:meth:`link`). ``stack_nodes`` are the shared
    stack nodes the batch's :class:`SharedStackProfile` samples use, when some are new. ``batch_id``:
    set by a store that records it, so that writing the same batch again stores it once.
    """

    __slots__ = ("values", "profiles", "stack_nodes", "batch_id")

    def __init__(self) -> None:
        self.values: list = []
        self.profiles: list[tuple[Profile | SharedStackProfile, int | None]] = []
        self.stack_nodes: StackNodes | None = None
        self.batch_id: str | None = None

    def __len__(self) -> int:
        return len(self.values) // FIELD_COUNT

    def add(self, pid: int, tid: int, route: str, method: str, path: str, status: int, start_ns: int, duration_ns: int,
            cpu_ns: int, response_bytes: int, error: str, labels_json: str, queue_ns: int = NO_QUEUE) -> int:
        """Append one request (``error`` "" for none); returns its index in the batch."""
        values = self.values
        index = len(values) // FIELD_COUNT
        values += (pid, tid, route, method, path, status, start_ns, duration_ns, cpu_ns, response_bytes, error, 0, labels_json,
                   queue_ns)
        return index

    def add_row(self, row: RequestRow) -> int:
        """Append a :class:`RequestRow` (its values made plain: an ``HTTPStatus`` becomes its int)."""
        index = self.add(
            int(row.pid), int(row.tid), str(row.route), str(row.method), str(row.path), int(row.status),
            int(row.start_ns), int(row.duration_ns), int(row.cpu_ns), int(row.response_bytes),
            "" if row.error is None else str(row.error), json.dumps(row.labels) if row.labels else "{}",
            NO_QUEUE if row.queue_ns is None else int(row.queue_ns),
        )
        if row.profile_id is not None:
            self.values[index * FIELD_COUNT + PROFILE_ID_FIELD] = int(row.profile_id)
        return index

    def keep(self, profile: Profile | SharedStackProfile, request: int | None = None) -> None:
        """Store ``profile`` with the batch, as the profile of request ``request`` when given."""
        self.profiles.append((profile, request))

    def link(self, profile_ids: Sequence[int]) -> None:
        """Set each kept profile's request's ``profile_id`` to the id the store gave it (in ``profiles`` order)."""
        values = self.values
        for (_, request), profile_id in zip(self.profiles, profile_ids):
            if request is not None:
                values[request * FIELD_COUNT + PROFILE_ID_FIELD] = profile_id

    def without_profiles(self) -> "RequestBatch":
        """The same requests with no profile (nor stack nodes), every ``profile_id`` none."""
        bare = RequestBatch()
        bare.values = list(self.values)
        bare.values[PROFILE_ID_FIELD::FIELD_COUNT] = [0] * len(self)
        return bare

    def rows(self) -> Iterator[RequestRow]:
        """The requests as :class:`RequestRow` objects (labels decoded; ``""`` and 0 back to None)."""
        values = self.values
        for start in range(0, len(values), FIELD_COUNT):
            fields: dict[str, Any] = dict(zip(REQUEST_FIELDS, values[start:start + FIELD_COUNT]))
            fields["error"] = fields["error"] or None
            fields["profile_id"] = fields["profile_id"] or None
            fields["labels"] = json.loads(fields["labels"])
            fields["queue_ns"] = None if fields["queue_ns"] == NO_QUEUE else fields["queue_ns"]
            yield RequestRow(**fields)
