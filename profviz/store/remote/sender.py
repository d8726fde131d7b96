"""A store that pushes to a collector (``profviz serve``) over HTTP(S): what the middleware,
``profviz attach`` and the OpenTelemetry processor write to when ``store`` is an ``https://`` URL.

Writes never wait for the network. Batches are encoded (:mod:`.wire`) on the writing thread into a
bounded buffer of bytes and sent, oldest first, by a sender thread that retries with exponential
backoff and jitter (honouring ``Retry-After``) while the collector is down or busy. Each batch
has an id, so a batch retried after a lost answer is stored once. When the buffer is full the
oldest batches are dropped and counted (:meth:`HTTPStore.stats`); stack nodes, which later
profiles need, are never dropped. Reads are refused: read from the collector's own store.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, NoReturn, Sequence
from urllib.parse import parse_qsl, urlsplit

from ...model import Profile, RequestBatch, SharedStackProfile, Span
from ..base import Store, StoreError
from . import wire

DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 10.0
SEND_TIMEOUT_S = 15.0
MAX_SERVER_ERRORS = 20  # a batch the collector fails on (500) this many times in a row is given up: it would block the rest
INGEST_PATH = "/v1/ingest"


@dataclass(eq=False)  # entries are compared by identity: two may carry the same batch
class _Entry:
    batch_id: str
    body: bytes
    requests: int
    keep: bool  # stack nodes: never dropped


class HTTPStore(Store):
    """A write-only store that pushes to the collector at ``url`` (``https://host:port``; the token from
    the URL's password, ``https://:TOKEN@host``, else ``$PROFVIZ_TOKEN``; the buffer's size from
    ``?buffer_mb=N``, else ``buffer_bytes``)."""

    def __init__(self, url: str, *, token: str | None = None, buffer_bytes: int = DEFAULT_BUFFER_BYTES):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError(f"collector URL {parts.scheme[:10]}://{(parts.hostname or '')[:60]} is not http(s)://host:port: "
                             "give the address 'profviz serve' prints")
        for key, value in parse_qsl(parts.query):
            if key != "buffer_mb":
                raise StoreError(f"collector URL parameter {key[:40]!r} is unknown: the one parameter is buffer_mb")
            try:
                buffer_bytes = int(float(value) * 1024 * 1024)
            except ValueError:
                buffer_bytes = -1
            if buffer_bytes <= 0:
                raise StoreError(f"collector URL's buffer_mb={value[:20]!r} is not a positive number of megabytes")
        self.token = token or parts.password or os.environ.get("PROFVIZ_TOKEN") or None
        if not self.token:
            raise StoreError(f"collector {parts.scheme}://{parts.hostname}:{parts.port or ''} needs its access token: set PROFVIZ_TOKEN "
                             "(the --token of 'profviz serve'), or write it into the URL as https://:TOKEN@host:port")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.location = f"{parts.scheme}://{self.host}:{self.port}"
        self.buffer_bytes = buffer_bytes
        self.counts = {"batches_sent": 0, "requests_sent": 0, "batches_dropped": 0, "requests_dropped": 0, "batches_refused": 0,
                       "retries": 0}
        self.last_error: str | None = None
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._inflight: _Entry | None = None  # being sent: not dropped meanwhile
        self._hurry = False  # a flush asks the sender to retry now rather than after its backoff
        self._connection: http.client.HTTPConnection | None = None
        self._http_lock = threading.Lock()  # one request at a time on the connection
        self._last_notice = 0.0

    # -- writes ---------------------------------------------------------------------------

    def write_batch(self, batch: RequestBatch, *, batch_id: str | None = None) -> list[int]:
        """Queue the batch (its stack nodes apart, never dropped); no profile ids: they are the collector's."""
        if batch.stack_nodes is not None:
            nodes_only = RequestBatch()
            nodes_only.stack_nodes = batch.stack_nodes
            self._enqueue(_Entry(str(uuid.uuid4()), wire.encode(nodes_only), 0, True))
        if batch.values or batch.profiles:
            rest = RequestBatch()
            rest.values, rest.profiles = batch.values, batch.profiles
            self._enqueue(_Entry(batch_id or str(uuid.uuid4()), wire.encode(rest), len(batch), False))
        return []

    def insert_spans(self, spans: Iterable[Span], *, checked: bool = False) -> int:
        items = list(spans)
        if not checked:
            for span in items:
                span.check()
        if items:
            self._enqueue(_Entry(str(uuid.uuid4()), wire.encode(spans=items), 0, False))
        return len(items)

    def save_profiles(self, profiles: Sequence[Profile | SharedStackProfile]) -> list[int]:
        """Sent at once, retried until ``SEND_TIMEOUT_S`` x 2 has passed: the caller (``attach``) waits for the ids."""
        self.flush(SEND_TIMEOUT_S)
        entry = _Entry(str(uuid.uuid4()), wire.encode(profiles=list(profiles)), 0, False)
        deadline = time.monotonic() + 2 * SEND_TIMEOUT_S
        delay = FIRST_RETRY_S
        while True:
            status, answer, retry_after = self._post(entry)
            if status == 200:
                ids = [int(i) for i in answer.get("profile_ids", [])]
                for profile, profile_id in zip(profiles, ids):
                    profile.meta["id"] = profile_id
                return ids
            if not _retryable(status) or time.monotonic() + delay > deadline:
                raise StoreError(f"collector {self.location} did not store the profiles: {self.last_error}")
            time.sleep(retry_after or delay)
            delay = min(delay * 2, MAX_RETRY_S)

    def check_writable(self) -> None:
        """An empty push: raises StoreError when the collector cannot be reached or refuses the token."""
        status, _, _ = self._post(_Entry(str(uuid.uuid4()), wire.encode(), 0, False))
        if status != 200:
            raise StoreError(f"collector {self.location} does not take pushes: {self.last_error}")

    def relax_durability(self) -> None:
        pass  # the collector's store decides

    # -- the buffer and the sender thread -------------------------------------------------

    def _enqueue(self, entry: _Entry) -> None:
        with self._cond:
            if not entry.keep and len(entry.body) > self.buffer_bytes:
                self._dropped(entry)
            else:
                self._queue.append(entry)
                self._queued_bytes += len(entry.body)
                while self._queued_bytes > self.buffer_bytes:
                    oldest = next((e for e in self._queue if not e.keep and e is not self._inflight), None)
                    if oldest is None:
                        break
                    self._queue.remove(oldest)
                    self._queued_bytes -= len(oldest.body)
                    self._dropped(oldest)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._send_loop, name="profviz-sender", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _dropped(self, entry: _Entry) -> None:
        self.counts["batches_dropped"] += 1
        self.counts["requests_dropped"] += entry.requests
        now = time.monotonic()
        if now - self._last_notice > 60:
            self._last_notice = now
            print(f"profviz: the buffer for collector {self.location} is full ({self.buffer_bytes} bytes): dropping the oldest "
                  f"batches ({self.counts['requests_dropped']} requests so far; last error: {self.last_error})", file=sys.stderr)

    def _send_loop(self) -> None:
        delay = FIRST_RETRY_S
        failures = 0  # answers of 500 and above in a row for the entry at the head
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                entry = self._inflight = self._queue[0]
            status, _, retry_after = self._post(entry)
            failures = failures + 1 if status == 500 else 0  # 502-504: a proxy with no collector behind it; retried
            with self._cond:
                self._inflight = None
                if status == 200 or not _retryable(status) or failures >= MAX_SERVER_ERRORS:
                    failures = 0
                    if self._queue and self._queue[0] is entry:
                        self._queue.popleft()
                        self._queued_bytes -= len(entry.body)
                    if status == 200:
                        self.counts["batches_sent"] += 1
                        self.counts["requests_sent"] += entry.requests
                    else:
                        self.counts["batches_refused"] += 1
                        print(f"profviz: collector {self.location} refused a batch of {entry.requests} requests: {self.last_error}",
                              file=sys.stderr)
                    delay = FIRST_RETRY_S
                    self._cond.notify_all()
                    continue
                self.counts["retries"] += 1
                if self._closing:
                    return
                retry_at = time.monotonic() + (retry_after or random.uniform(delay / 2, delay))
                while not self._hurry and not self._closing and time.monotonic() < retry_at:
                    self._cond.wait(retry_at - time.monotonic())  # new writes do not cut the wait short; a flush does
                delay = FIRST_RETRY_S if self._hurry else min(delay * 2, MAX_RETRY_S)
                self._hurry = False

    def _post(self, entry: _Entry) -> tuple[int, dict, float | None]:
        """(status, JSON answer, Retry-After seconds); status 0 when the collector could not be reached."""
        with self._http_lock:
            return self._post_now(entry)

    def _post_now(self, entry: _Entry) -> tuple[int, dict, float | None]:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Bearer {self.token}",
                   "X-Profviz-Batch": entry.batch_id}
        try:
            connection = self._connection or self._connect()
            self._connection = connection
            connection.request("POST", INGEST_PATH, body=entry.body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            retry_after = response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            self._close_connection()
            self.last_error = f"cannot reach it ({type(exc).__name__}: {exc})"
            return 0, {}, None
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {}
        if response.status != 200:
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) and isinstance(answer.get("error"), dict) else None
            self.last_error = f"HTTP {response.status}: {str(message or data[:200])[:300]}"
        try:
            wait = min(MAX_RETRY_S, max(0.0, float(retry_after))) if retry_after else None
        except ValueError:
            wait = None
        if wait is not None and wait != wait:
            wait = None
        return response.status, answer if isinstance(answer, dict) else {}, wait

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=SEND_TIMEOUT_S, context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=SEND_TIMEOUT_S)

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued batch is sent (or refused); False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
            while self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {**self.counts, "batches_queued": len(self._queue), "requests_queued": sum(e.requests for e in self._queue),
                    "bytes_queued": self._queued_bytes, "last_error": self.last_error}

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (for up to ``timeout_s``), then stop; what could not be sent is counted as dropped."""
        sent = self.flush(timeout_s)
        with self._cond:
            self._closing = True
            if not sent:
                for entry in list(self._queue):
                    if entry is not self._inflight:  # that one may still arrive: counted when answered
                        self._dropped(entry)
                        self._queue.remove(entry)
                        self._queued_bytes -= len(entry.body)
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=SEND_TIMEOUT_S + 1)
        self._closing = False
        if self._http_lock.acquire(timeout=SEND_TIMEOUT_S):
            try:
                self._close_connection()
            finally:
                self._http_lock.release()

    # -- reads: the collector's store answers them ----------------------------------------

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise StoreError(f"{self.location} is a collector: it takes pushes only; read with --store set to the collector's own store "
                         "(its PostgreSQL URL or file)")

    profile_meta = load_profile = list_profiles = delete_profile = set_labels = profile_bytes = _refuse
    query_requests = request_by_id = request_columns = route_sketches = latest_request_ns = request_for_profile = _refuse
    origin_values = _refuse
    query_spans = span_facts = count_spans = newest_span_id = newest_request_id = retain = _refuse


def _retryable(status: int) -> bool:
    return status in (0, 408, 429) or status >= 500

