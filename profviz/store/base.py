"""The store interface: what every backend (SQLite today) provides to collectors, analysis, server and CLI.

Contracts shared by every backend (tests/test_store_contract.py checks them on each):

* Every write is one transaction: a failed write leaves nothing half-written.
* Failures raise :class:`StoreError` (or a subclass) whose message says what to do; a backend
  never lets its driver's exceptions out.
* Profiles are immutable once stored, except for their labels; ids are positive ints given by
  the store, increasing in the order of writes.
* Times are epoch nanoseconds throughout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Sequence

from ..errors import ProfvizError
from ..model import Profile, RequestBatch, RequestRow, SharedStackProfile, Span, SpanFacts
from ..model.latency_sketch import RouteSketch

REQUEST_COLUMN_NAMES = (
    "id", "pid", "tid", "route", "method", "status", "error", "start_ns", "duration_ns", "cpu_ns", "profile_id",
    "response_bytes", "queue_ns", "capacity",
)
PROFILE_META_KEYS = (
    "id", "kind", "pid", "cmdline", "start_ns", "duration_ns", "rate_hz", "sample_count", "error_count",
    "thread_count", "cpu_ns", "wait_ns", "runnable_ns", "gil_ns", "labels", "notes", "format_version", "created_ns",
)


class StoreError(ProfvizError):
    """The store could not be opened, read or written. The message says what to do."""


class StoreValueError(StoreError):
    """The store refused a value written to it (an int beyond 64 bits, text it cannot hold): writing
    the same again fails the same way, so it is not worth retrying."""


class ProfileNotFound(StoreError):
    """No profile with the requested id exists."""


class RequestNotFound(StoreError):
    """No request with the requested id exists."""


class Store(ABC):
    """A profviz store: profiles, timed requests and trace spans. Open one with :func:`profviz.store.open_store`.

    ``location`` names it in messages (a file path, or a URL without its password). Usable as a
    context manager (closed at the end). Thread safe.
    """

    location: str

    def __new__(cls, *args: Any, **kwargs: Any) -> "Store":
        if cls is Store:
            raise TypeError("Store is the interface of every backend: open a store with profviz.open_store(path or URL)")
        return super().__new__(cls)

    # -- life -----------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store may be used again afterwards (it reconnects)."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def check_writable(self) -> None:
        """Raise StoreError (saying what to do) unless a write would succeed now."""

    def moved_away(self) -> bool:
        """Whether the store's file was deleted or replaced since it was opened (writes would go
        where no reader finds them); False for a store that is not a file."""
        return False

    def flush(self, timeout_s: float) -> bool:
        """Wait until writes made so far are stored (a store that sends them elsewhere); False when
        ``timeout_s`` passed first. Writes to a database are stored when their call returns."""
        return True

    def stats(self) -> dict[str, Any]:
        """Counters of a store that sends its writes elsewhere (sent, queued, dropped); empty otherwise."""
        return {}

    @abstractmethod
    def relax_durability(self) -> None:
        """Let the calling thread's commits skip waiting for the disk: a power cut (SQLite) or a
        crash of the database server (PostgreSQL) may lose the last second of them. For writers
        that commit often (a middleware's writer)."""

    # -- profiles -------------------------------------------------------------------------

    @abstractmethod
    def save_profiles(self, profiles: Sequence[Profile | SharedStackProfile]) -> list[int]:
        """Store profiles in one transaction; their new ids in order, also set as each ``meta['id']``.

        Summary columns (sample and thread counts, CPU/wait/runnable/GIL ns) come from the samples;
        the rest from ``meta``: kind, pid, cmdline, start_ns, duration_ns, rate_hz, error_count,
        labels, notes. A :class:`SharedStackProfile` needs its source's stack nodes stored (by
        :meth:`write_batch`) and loads as a Profile.
        """

    def save_profile(self, profile: Profile) -> int:
        """:meth:`save_profiles` of one profile; its new id."""
        return self.save_profiles([profile])[0]

    @abstractmethod
    def profile_meta(self, profile_id: int) -> dict[str, Any]:
        """The profile's metadata (:data:`PROFILE_META_KEYS`, labels and notes decoded); raises ProfileNotFound."""

    @abstractmethod
    def load_profile(self, profile_id: int) -> Profile:
        """The whole profile; raises ProfileNotFound, or StoreError when its data is damaged."""

    @abstractmethod
    def list_profiles(self, *, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Profile metadata, newest first."""

    @abstractmethod
    def delete_profile(self, profile_id: int) -> None:
        """Delete a profile (requests pointing at it keep no profile); raises ProfileNotFound."""

    @abstractmethod
    def set_labels(self, profile_id: int, labels: dict[str, Any]) -> None:
        """Replace a profile's labels; raises ProfileNotFound."""

    @abstractmethod
    def profile_bytes(self, profile_id: int) -> int:
        """Stored size of a profile's data in bytes (0 when it has none)."""

    # -- requests -------------------------------------------------------------------------

    @abstractmethod
    def write_batch(self, batch: RequestBatch, *, batch_id: str | None = None) -> list[int]:
        """Store a middleware's batch in one transaction: its stack nodes, its profiles (their ids
        returned, in order, and linked into their requests' ``profile_id``) and its requests.
        Requests are readable by the next query. A request the backend refuses as a value (a
        string that is not valid Unicode, an int over 64 bits) is dropped with a notice; the
        batch's other requests are kept. A ``batch_id`` (a sender's, at most 64 characters) is
        recorded in the same transaction: a batch sent again with the same id stores nothing and
        returns the profile ids of the first time."""

    def insert_requests(self, rows: Iterable[RequestRow]) -> int:
        """Store request rows in one transaction; how many."""
        batch = RequestBatch()
        for row in rows:
            batch.add_row(row)
        self.write_batch(batch)
        return len(batch)

    @abstractmethod
    def query_requests(
        self, *, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
        method: str | None = None, slowest: int | None = None, limit: int | None = None, with_profile: bool = False,
        latency: str = "total", labels: dict[str, str] | None = None,
    ) -> list[RequestRow]:
        """Requests started in [since_ns, until_ns), oldest first (at most the newest ``limit``);
        or the ``slowest`` N by ``latency`` (``total``: queue + app, or ``app``), slowest first.
        ``labels``: only requests with these origin labels (:data:`profviz.model.origin.ORIGIN_KEYS`)."""

    @abstractmethod
    def request_by_id(self, request_id: int) -> RequestRow:
        """One request; raises RequestNotFound."""

    @abstractmethod
    def request_columns(
        self, *, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
        method: str | None = None, labels: dict[str, str] | None = None,
    ) -> dict[str, list[Any]]:
        """Columns :data:`REQUEST_COLUMN_NAMES` of the requests in a window, oldest first
        (``capacity``: the request's ``capacity`` label, else None); ``labels`` as :meth:`query_requests`."""

    @abstractmethod
    def route_sketches(self, *, since_ns: int | None = None, until_ns: int | None = None,
                       labels: dict[str, str] | None = None) -> list[RouteSketch]:
        """Each (route, method)'s latency sketches over the requests that started in [since_ns,
        until_ns), to the minute (the minutes that hold ``since_ns`` and ``until_ns`` count whole),
        with the origin ``labels`` given (:meth:`query_requests`):
        kept beside the rows as they are stored, so that percentiles over any window come from
        merging them (:mod:`profviz.model.latency_sketch`), not from reading every request."""

    @abstractmethod
    def origin_values(self, *, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[str]]:
        """Per origin label (:data:`profviz.model.origin.ORIGIN_KEYS`), its distinct values among the
        requests started in [since_ns, until_ns), sorted (labels no request has are left out)."""

    @abstractmethod
    def latest_request_ns(self) -> int | None:
        """When the last stored request ended, or None when there is none."""

    @abstractmethod
    def newest_request_id(self) -> int | None:
        """The id of the last request stored (it changes whenever requests are added, also ones
        that started long ago, such as a collector's late batches), or None."""

    @abstractmethod
    def request_for_profile(self, profile_id: int) -> int | None:
        """The id of the request whose profile this is, if any."""

    # -- spans ----------------------------------------------------------------------------

    @abstractmethod
    def insert_spans(self, spans: Iterable[Span], *, checked: bool = False) -> int:
        """Check, bound (:mod:`profviz.store.spans`: names, thread names, attributes) and store spans in one
        transaction; how many were new (a span already stored, same trace and span id, is kept as
        it is). Raises SpanError for the first span that breaks a rule, before anything is
        written (``checked``: the caller already ran :meth:`Span.check` on every span)."""

    @abstractmethod
    def query_spans(
        self, *, pid: int | None = None, pids: Iterable[int] | None = None, include_unknown_pid: bool = False,
        start_ns: int | None = None, end_ns: int | None = None, trace_id: str | None = None,
        tids: Iterable[int] | None = None, limit: int = 100_000,
    ) -> list[Span]:
        """Spans overlapping [start_ns, end_ns), oldest first, at most ``limit``: of processes
        ``pid``/``pids`` (and with ``include_unknown_pid`` those whose process is unknown), run
        on native threads ``tids``, of one ``trace_id``."""

    @abstractmethod
    def span_facts(self, *, pids: Iterable[int], start_ns: int, end_ns: int) -> SpanFacts:
        """The database statements and HTTP client calls of processes ``pids`` overlapping
        [start_ns, end_ns), as columns ordered by start (:class:`~profviz.model.SpanFacts`): what the
        findings detectors read of spans. Spans stored before the store kept these are included
        (filled in when the store was migrated)."""

    @abstractmethod
    def count_spans(self) -> int:
        """How many spans are stored."""

    @abstractmethod
    def newest_span_id(self) -> int | None:
        """The id of the last span stored (it changes whenever spans are added), or None."""

    # -- retention ------------------------------------------------------------------------

    @abstractmethod
    def retain(self, since_ns: int) -> dict[str, int]:
        """Delete the requests, spans and profiles that started before ``since_ns`` (a backend that
        keeps them in day partitions keeps the whole day holding ``since_ns``), and the minute
        sketches before it; the hour sketches stay, so percentiles over longer windows remain.
        How many requests, spans and profiles were deleted."""
