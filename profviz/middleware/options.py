"""Every option of the request engine, with its default and meaning, written once.

Every adapter takes them as keyword arguments (``ProfilerMiddleware(app, store=..., sample_hz=50)``,
Django's ``PROFVIZ`` setting); :func:`options_from` checks them into an :class:`Options`. The
adapters' docstrings list them from here (:func:`describe`), and a test checks the README's table
against this class.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Mapping

from ..model.origin import bounded_origin, origin_labels
from ..store import Store


def _option(default: Any, doc: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"doc": doc}, **kwargs)


@dataclass(frozen=True)
class Options:
    """The request engine's options (see each field's ``doc``; :func:`describe` prints them)."""

    store: Store | str | os.PathLike | None = _option(
        None, "a Store, a path or a store URL; default: $PROFVIZ_STORE, else the per-user store the CLI reads")
    route_fn: Callable[[Any], str | None] | None = _option(
        None, "names a request's route from the framework's request (a WSGI environ), called as it ends; "
              "None, or no route_fn: the path with ids collapsed to placeholders")
    sampler: bool = _option(True, "the always-on in-process sampler, with tail capture")
    sample_hz: float = _option(100.0, "the sampler's rate, per thread serving a request")
    tail_threshold_ms: float | None = _option(
        None, "keep the profile of every request slower than this (also over the route's running percentile)")
    tail_percentile: float | None = _option(
        95.0, "keep the profile of requests slower than their route's running percentile; None: threshold only")
    tail_min_requests: int = _option(20, "requests a route must have seen before its percentile decides")
    tail_max_per_minute: float = _option(60.0, "tail profiles kept per route and minute at most")
    baseline_per_minute: float = _option(
        6.0, "typical requests (between the route's running P40 and P60) kept per route and minute, to compare with")
    task_sampler_budget: float | None = _option(
        0.02, "ASGI: the share of one core the sampler may spend on requests on event loops; past it, a request "
              "whose await chain moved on keeps its last sample until a later tick reads the chain again, and when "
              "a tick alone costs more, ticks come less often (samples weigh more). None: no limit")
    loop_block_ms: float = _option(
        100.0, "ASGI: an event loop that runs this long without returning to its selector is recorded as a stall "
               "(what ran, the requests it delayed: the event_loop_blocked finding)")
    aggregate_interval_s: float = _option(60.0, "how often each route's summed samples are stored as one profile")
    deep_fraction: float = _option(0.0, "fraction of requests profiled with pyinstrument")
    deep_interval_s: float = _option(0.001, "pyinstrument's sampling interval")
    deep_trigger_secret: str | None = _option(
        None, "a request carrying it in the X-Profviz-Deep header or the profviz_deep query parameter is "
              "profiled with pyinstrument (at least 8 characters)")
    queue_size: int = _option(10_000, "finished requests waiting for the writer at most; more are dropped and counted")
    writer_interval_s: float = _option(
        1.0, "how often the writer commits a batch (larger, rarer transactions cost less per request)")
    worker_threads: int | None = _option(None, "the server's capacity, for utilisation; default: the threads observed")
    queue_headers: tuple[str, ...] = _option(
        ("X-Request-Start", "X-Queue-Start"), "headers a proxy stamps with the time it received the request (nginx: "
        'proxy_set_header X-Request-Start "t=${msec}"), for the time queued before the app; () to ignore them')
    labels: Mapping[str, Any] | None = _option(None, "stored with every request and profile")
    service: str | None = _option(None, "the service's name, a label of every request and profile (default: OTEL_SERVICE_NAME, "
                                        "or service.name in OTEL_RESOURCE_ATTRIBUTES)")
    version: str | None = _option(None, "the app's version, a label to compare deploys by (default: service.version in "
                                        "OTEL_RESOURCE_ATTRIBUTES)")
    env: str | None = _option(None, "the environment (default: deployment.environment in OTEL_RESOURCE_ATTRIBUTES)")
    host: str | None = _option(None, "the host's name (default: host.name in OTEL_RESOURCE_ATTRIBUTES, else this machine's)")
    enabled: bool = _option(True, "False: requests pass through untouched")
    drain_on_sigterm: bool = _option(
        True, "on SIGTERM, let requests in flight finish and store everything queued, then do what SIGTERM did "
              "(the server's own handler, or end the process); installed from the main thread only")
    log_interval_s: float = _option(60.0, "each kind of internal failure is logged at most once per this interval")
    otel: str | None = _option(
        None, '"auto": record the app\'s OpenTelemetry spans in the same store, each request with its server span, '
              "setting OpenTelemetry up when the app has not (profviz.otel.setup_otel)")

    def __post_init__(self) -> None:
        if self.otel not in (None, "auto"):
            raise ValueError(f"otel must be None or 'auto', got {self.otel!r}")
        if not 0 < self.sample_hz <= 1000:
            raise ValueError(f"sample_hz must be in (0, 1000], got {self.sample_hz}")
        if not 0.0 <= self.deep_fraction <= 1.0:
            raise ValueError(f"deep_fraction must be between 0 and 1, got {self.deep_fraction}")
        if self.tail_percentile is not None and not 0 < self.tail_percentile < 100:
            raise ValueError(f"tail_percentile must be in (0, 100) or None, got {self.tail_percentile}")
        if self.deep_trigger_secret is not None and len(self.deep_trigger_secret) < 8:
            raise ValueError("deep_trigger_secret must be at least 8 characters (anyone who knows it can trigger deep profiles)")
        if self.task_sampler_budget is not None and not 0.001 <= self.task_sampler_budget <= 1:
            raise ValueError(f"task_sampler_budget must be in [0.001, 1] or None, got {self.task_sampler_budget}")
        if not self.loop_block_ms > 0:
            raise ValueError(f"loop_block_ms must be above 0, got {self.loop_block_ms}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size}")
        origin = origin_labels(service=self.service, host=self.host, version=self.version, env=self.env)
        object.__setattr__(self, "labels", bounded_origin({**origin, **dict(self.labels or {})}))
        if isinstance(self.queue_headers, str) or not all(isinstance(h, str) and h for h in self.queue_headers):
            raise ValueError(f"queue_headers must be a tuple of header names, got {self.queue_headers!r}")
        object.__setattr__(self, "queue_headers", tuple(self.queue_headers))


def options_from(store: Store | str | os.PathLike | None = None, **given: Any) -> Options:
    """An :class:`Options` from keyword arguments; TypeError naming the known options for an unknown one."""
    known = {f.name for f in fields(Options)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"unknown profviz option {', '.join(map(repr, unknown))}; the options are: {', '.join(sorted(known))}")
    return Options(store=store, **given)


def defaults() -> dict[str, Any]:
    """Each option's default."""
    return {f.name: f.default for f in fields(Options) if f.default is not MISSING}


def describe() -> str:
    """Every option, its default and what it does, one per line (for docstrings and help)."""
    return "\n".join(f"* ``{f.name}={f.default!r}``: {f.metadata['doc']}" for f in fields(Options))
