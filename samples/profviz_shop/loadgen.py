"""A bounded load generator for loopback HTTP servers.

``run_load`` sends exactly ``requests`` GET requests (fewer only if the
wall-clock cap ``max_seconds`` is reached) from ``concurrency`` worker
threads, and only ever to ``http://127.0.0.1``.  Each request yields a
client-side ``RequestRecord`` so callers can compute their own statistics.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import requests as http

MAX_REQUESTS = 100_000
MAX_CONCURRENCY = 64
MAX_SECONDS = 600.0
LOOPBACK_HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it.

    ``started_s`` is seconds since the run started (monotonic clock);
    ``status`` is ``None`` and ``error`` set when no HTTP response arrived.
    """

    index: int
    path: str
    status: int | None
    started_s: float
    latency_s: float
    bytes: int
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """Outcome of ``run_load``: every record, in request-index order."""

    base_url: str
    requested: int
    concurrency: int
    elapsed_s: float
    hit_time_limit: bool
    records: tuple[RequestRecord, ...]

    @property
    def sent(self) -> int:
        """How many requests were actually attempted."""
        return len(self.records)

    @property
    def errors(self) -> int:
        """Requests with no response or a non-2xx/3xx status."""
        return sum(1 for record in self.records if record.status is None or record.status >= 400)

    def latencies(self, path: str | None = None) -> list[float]:
        """Latencies in seconds of answered requests, optionally only for ``path``."""
        return [
            record.latency_s
            for record in self.records
            if record.status is not None and (path is None or record.path == path)
        ]

    def percentile(self, fraction: float, path: str | None = None) -> float:
        """Nearest-rank percentile (``fraction`` in (0, 1]) of ``latencies(path)``; NaN if none."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        values = sorted(self.latencies(path))
        if not values:
            return math.nan
        return values[max(0, math.ceil(fraction * len(values)) - 1)]


def weighted_paths(weights: dict[str, float], count: int, *, seed: int = 0) -> list[str]:
    """Return ``count`` paths mixed in proportion to ``weights``, shuffled deterministically.

    Counts are apportioned by largest remainder, so ``{"/health": 9, "/posts": 1}``
    with ``count=100`` yields exactly 90 and 10.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not weights or any(weight < 0 for weight in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    for path in weights:
        _check_path(path)
    total = sum(weights.values())
    exact = {path: count * weight / total for path, weight in weights.items()}
    counts = {path: math.floor(share) for path, share in exact.items()}
    by_remainder = sorted(weights, key=lambda path: exact[path] - counts[path], reverse=True)
    for path in by_remainder[: count - sum(counts.values())]:
        counts[path] += 1
    mix = [path for path, path_count in counts.items() for _ in range(path_count)]
    random.Random(seed).shuffle(mix)
    return mix


def run_load(
    base_url: str,
    paths: list[str] | tuple[str, ...],
    *,
    requests: int = 100,
    concurrency: int = 4,
    timeout_s: float = 10.0,
    max_seconds: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """GET ``base_url + paths[i % len(paths)]`` for ``i`` in ``range(requests)``.

    Raises ``ValueError`` unless ``base_url`` is ``http://127.0.0.1[:port]`` and
    every path starts with a single ``/``.  No new request starts after
    ``max_seconds``; redirects are never followed.  ``progress``, if given, is
    called with the number of requests answered so far after each one (from
    the worker threads, one call at a time).
    """
    base_url = _check_base_url(base_url)
    if not paths:
        raise ValueError("paths must not be empty")
    for path in paths:
        _check_path(path)
    if not 1 <= requests <= MAX_REQUESTS:
        raise ValueError(f"requests must be in 1..{MAX_REQUESTS}")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be in 1..{MAX_CONCURRENCY}")
    if not 0 < timeout_s <= MAX_SECONDS:
        raise ValueError(f"timeout_s must be in (0, {MAX_SECONDS}]")
    if not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max_seconds must be in (0, {MAX_SECONDS}]")

    paths = tuple(paths)
    records: list[RequestRecord | None] = [None] * requests
    next_index = iter(range(requests))
    index_lock = threading.Lock()
    progress_lock = threading.Lock()
    done = [0]
    hit_time_limit = threading.Event()
    run_started = time.perf_counter()
    deadline = run_started + max_seconds

    def claim_index() -> int | None:
        with index_lock:
            if time.perf_counter() >= deadline:
                hit_time_limit.set()
                return None
            return next(next_index, None)

    def worker() -> None:
        with http.Session() as session:
            while (index := claim_index()) is not None:
                path = paths[index % len(paths)]
                started = time.perf_counter()
                request_timeout = max(0.001, min(timeout_s, deadline - started))
                try:
                    response = session.get(base_url + path, timeout=request_timeout, allow_redirects=False)
                    status, size, error = response.status_code, len(response.content), None
                except http.RequestException as failure:
                    status, size, error = None, 0, f"{type(failure).__name__}: {failure}"
                finished = time.perf_counter()
                if progress is not None:
                    with progress_lock:  # not the index lock: a slow callback must not hold the other workers up
                        done[0] += 1
                        progress(done[0])
                records[index] = RequestRecord(
                    index=index,
                    path=path,
                    status=status,
                    started_s=started - run_started,
                    latency_s=finished - started,
                    bytes=size,
                    error=error,
                )

    workers = [
        threading.Thread(target=worker, name=f"loadgen-{number}", daemon=True)
        for number in range(min(concurrency, requests))
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()) + timeout_s + 1)
    return LoadResult(
        base_url=base_url,
        requested=requests,
        concurrency=concurrency,
        elapsed_s=time.perf_counter() - run_started,
        hit_time_limit=hit_time_limit.is_set(),
        records=tuple(record for record in records if record is not None),
    )


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"invalid port in {base_url!r}") from error
    if (
        parts.scheme != "http"
        or parts.hostname != LOOPBACK_HOST
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"only http://{LOOPBACK_HOST}[:port] base URLs are allowed, got {base_url!r}")
    return f"http://{LOOPBACK_HOST}" + (f":{port}" if port is not None else "")


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or any(c in path for c in "\r\n\t @\\"):
        raise ValueError(f"path must be an absolute path on the target server, got {path!r}")
