"""Latency sketches as every backend stores them: a row per (route, method), origin (the requests'
service, host, version and env labels, "" where absent), grain (a minute, an hour) and bucket
start, with the error count and the encoded sketches of app and total latency
(:mod:`profviz.model.latency_sketch`). Backends keep the rows; this module makes, merges and reads
them."""

from __future__ import annotations

import json
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from ..model.latency_sketch import LatencySketch, RouteSketch, SketchError
from ..model.origin import ORIGIN_KEYS

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
GRAINS_NS = (MINUTE_NS, HOUR_NS)
KEY_COLUMNS = ("route", "method", "service", "host", "version", "env", "grain_ns", "start_ns")
KEY_SIZE = len(KEY_COLUMNS)
SKETCH_COLUMNS = ", ".join(KEY_COLUMNS) + ", errors, app, total"
NO_ORIGIN = ("", "", "", "")


class SketchRow(NamedTuple):
    """One bucket's sketches, before encoding (``total`` None when no request in it had a queue time);
    its first :data:`KEY_SIZE` fields are its key."""

    route: str
    method: str
    service: str
    host: str
    version: str
    env: str
    grain_ns: int
    start_ns: int
    errors: int
    app: LatencySketch
    total: LatencySketch | None


def origin_of(labels_json: str | None) -> tuple[str, str, str, str]:
    """(service, host, version, env) of a request's labels (JSON text; "" for each one absent)."""
    if not labels_json or '"' not in labels_json:
        return NO_ORIGIN
    try:
        labels = json.loads(labels_json)
    except ValueError:
        return NO_ORIGIN
    if not isinstance(labels, dict):
        return NO_ORIGIN
    return tuple(str(labels.get(key) or "") for key in ORIGIN_KEYS)  # type: ignore[return-value]


def sketch_rows(routes: Sequence[str], methods: Sequence[str], starts: Sequence[int], durations: Sequence[int],
                queues: Sequence[int | None], statuses: Sequence[int | None], errors: Sequence[Any],
                origins: Sequence[tuple[str, str, str, str]] | None = None) -> list[SketchRow]:
    """The sketches of these requests (columns of equal length; ``origins`` their (service, host,
    version, env), default none), per (route, method, origin), grain and bucket."""
    count = len(routes)
    if not count:
        return []
    keys: dict[tuple, int] = {}
    key_of = np.fromiter((keys.setdefault(key, len(keys)) for key in zip(routes, methods, origins or [NO_ORIGIN] * count)),
                         dtype=np.int64, count=count)
    names = list(keys)
    starts_arr = np.asarray(starts, dtype=np.int64)
    apps = np.asarray(durations, dtype=np.int64)
    known = np.fromiter((q is not None for q in queues), dtype=bool, count=count)
    totals = apps + np.fromiter((q or 0 for q in queues), dtype=np.int64, count=count)
    failed = np.fromiter((bool(e) or (s is not None and s >= 500) for s, e in zip(statuses, errors)), dtype=bool, count=count)
    out = []
    for grain in GRAINS_NS:
        buckets = starts_arr // grain * grain
        order = np.lexsort((buckets, key_of))
        ordered_keys, ordered_buckets = key_of[order], buckets[order]
        edges = np.flatnonzero((np.diff(ordered_keys) != 0) | (np.diff(ordered_buckets) != 0)) + 1
        starts_at = np.concatenate(([0], edges))
        app_sketches = LatencySketch.of_groups(apps, order, starts_at)
        any_known = np.add.reduceat(known[order], starts_at, dtype=np.int64) > 0
        total_sketches = LatencySketch.of_groups(totals, order, starts_at) if any_known.any() else None
        errors_by_group = np.add.reduceat(failed[order], starts_at, dtype=np.int64)
        for index, at in enumerate(starts_at.tolist()):
            route, method, origin = names[int(ordered_keys[at])]
            total = total_sketches[index] if total_sketches is not None and any_known[index] else None
            out.append(SketchRow(route, method, *origin, grain, int(ordered_buckets[at]), int(errors_by_group[index]),
                                 app_sketches[index], total))
    return out


def merged(row: SketchRow, stored: tuple | None) -> tuple:
    """The values of :data:`SKETCH_COLUMNS` to write: ``row`` merged with the stored (errors, app,
    total) of its bucket, if any, and encoded."""
    app, total, errors = row.app, row.total, row.errors
    if stored is not None:
        try:
            old_app = LatencySketch.decode(stored[1])
            old_total = LatencySketch.decode(stored[2]) if stored[2] is not None else None
        except SketchError:  # a damaged sketch: counted again from what comes next, not kept failing
            old_app, old_total = LatencySketch.empty(), None
        if total is not None or old_total is not None:  # queue times now known in part of the bucket: unknown ones count 0
            total = LatencySketch.merge_all([old_total or old_app, total or app])
        app = LatencySketch.merge_all([old_app, app])
        errors += int(stored[0])
    return (*row[:KEY_SIZE], errors, app.encode(), None if total is None else total.encode())


def window_where(since_ns: int | None, until_ns: int | None, labels: dict[str, str] | None = None) -> tuple[str, list]:
    """The condition (``?`` placeholders) and parameters selecting a window's sketch rows: its whole
    hours, and the minutes at its edges (the minutes holding ``since_ns`` and ``until_ns`` count whole);
    of requests with these origin ``labels``."""
    where, params = _window_where(since_ns, until_ns)
    for key, value in sorted((labels or {}).items()):
        if key not in ORIGIN_KEYS:
            raise ValueError(f"sketches are kept per {', '.join(ORIGIN_KEYS)}, not {key!r}")
        where = f"({where}) AND {key} = ?"
        params.append(str(value))
    return where, params


def _window_where(since_ns: int | None, until_ns: int | None) -> tuple[str, list]:
    low = -(1 << 62) if since_ns is None else since_ns // MINUTE_NS * MINUTE_NS
    high = (1 << 62) if until_ns is None else -(-until_ns // MINUTE_NS) * MINUTE_NS
    hours_from = -(-low // HOUR_NS) * HOUR_NS
    hours_to = high // HOUR_NS * HOUR_NS
    if hours_from < hours_to:
        return ("(grain_ns = ? AND start_ns >= ? AND start_ns < ?) OR (grain_ns = ? AND ((start_ns >= ? AND start_ns < ?)"
                " OR (start_ns >= ? AND start_ns < ?)))", [HOUR_NS, hours_from, hours_to, MINUTE_NS, low, hours_from, hours_to, high])
    return "grain_ns = ? AND start_ns >= ? AND start_ns < ?", [MINUTE_NS, low, high]


def route_sketches_of(rows: Iterable[Sequence]) -> list[RouteSketch]:
    """Stored rows (:data:`SKETCH_COLUMNS`) merged per (route, method), over every origin; damaged rows are left out."""
    found: dict[tuple[str, str], list] = {}
    for route, method, _service, _host, _version, _env, grain, start, errors, app, total in rows:
        try:
            sketches = (LatencySketch.decode(bytes(app)), LatencySketch.decode(bytes(total)) if total is not None else None)
        except SketchError:
            continue  # a damaged row: that bucket's requests are missing from the sketches, not from the rows
        entry = found.setdefault((route, method), [0, [], [], False, start, start + grain])
        entry[0] += int(errors)
        entry[1].append(sketches[0])
        entry[2].append(sketches[1] if sketches[1] is not None else sketches[0])
        entry[3] = entry[3] or sketches[1] is not None
        entry[4], entry[5] = min(entry[4], start), max(entry[5], start + grain)
    return [RouteSketch(route, method, errors, LatencySketch.merge_all(apps), LatencySketch.merge_all(totals) if any_total else None,
                        first, end)
            for (route, method), (errors, apps, totals, any_total, first, end) in sorted(found.items())]
