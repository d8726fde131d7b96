"""``profviz routes`` (per-route latency percentiles) and ``profviz requests`` (timed requests)."""

from __future__ import annotations

import datetime as dt
import json
import time

import click

from ..analysis.load import KNEE_FACTOR, load_curve
from ..analysis import routes as route_analysis
from ..analysis.routes import LATENCIES, pick_latency, route_table, route_table_from_sketches, sketch_latency
from ..shapes.routes import load_json, request_entry, route_json
from ..errors import ProfvizError
from ..routes import parse_duration as parse_duration_s
from ..store import Store
from .common import json_option, open_cli_store, origin_filter, origin_options, printed_json_or_nothing, store_option


class UsageError(ProfvizError):
    exit_code = 2




def parse_duration(text: str) -> float:
    """Seconds in a duration (see :func:`profviz.routes.parse_duration`); UsageError when unreadable."""
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _since_ns(since: str | None) -> int | None:
    return None if since is None else time.time_ns() - int(parse_duration(since) * 1e9)


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@click.command("routes")
@store_option
@json_option
@click.option("--since", default=None, metavar="DURATION", help="Only requests that started in the last DURATION (30s, 15m, 2h, 1d).")
@click.option("--latency", type=click.Choice(LATENCIES), default=None,
              help="total: time queued before the app (from a proxy's X-Request-Start) plus the app's; app: the app's alone."
                   "  [default: total when queue times were recorded]")
@click.option("--load", "by_load", is_flag=True,
              help="Latency against load instead: percentiles by utilisation at arrival and by throughput, the knee and the headroom.")
@click.option("--route", default=None, help="With --load: this route's latency (the load is the whole service's).")
@click.option("--method", default=None, help="With --load and --route: this HTTP method only.")
@click.option("--from", "source", type=click.Choice(("auto", "rows", "sketches")), default="auto", show_default=True,
              help="rows: exact percentiles from every request; sketches: merged latency sketches (within 1%, fast "
                   "over any number of requests, no queue percentiles); auto: sketches over more than "
                   f"{route_analysis.EXACT_LIMIT:,} requests.")
@origin_options
def routes_command(store_path: str | None, as_json: bool, since: str | None, latency: str | None, by_load: bool,
                   route: str | None, method: str | None, source: str, **origin: str | None) -> None:
    """Per route: count, requests/s, error rate, P50/P90/P95/P99 and max latency, and the P95 of
    the time queued before the app where a proxy stamped it.

    Percentiles interpolate linearly between closest ranks (numpy's default); from sketches
    (--from), they are within 1% of the value at the same rank. Requests/s is the count over the
    time the requests span (from the later of --since and the first request to the end of the
    last; from sketches, the minutes they fill). Errors are status >= 500 or an exception in the app.
    """
    store = open_cli_store(store_path)
    since_ns = _since_ns(since)
    labels = origin_filter(origin)
    if not by_load and (route is not None or method is not None):
        raise UsageError("--route and --method go with --load; 'profviz requests --route R' lists one route's requests")
    if not by_load and source != "rows":
        sketches = store.route_sketches(since_ns=since_ns, labels=labels)
        if source == "sketches" or sum(s.count for s in sketches) > route_analysis.EXACT_LIMIT:
            chosen = sketch_latency(sketches, latency)
            _print_routes([route_json(r) for r in route_table_from_sketches(sketches, None, chosen)], chosen, store, since,
                          as_json, " (from latency sketches: percentiles within 1%)")
            return
    columns = store.request_columns(since_ns=since_ns, labels=labels)
    latency = pick_latency(columns, latency)
    if by_load:
        _print_load(store, columns, latency, route, method.upper() if method else None, as_json, since)
        return
    window_s = None
    if columns["start_ns"]:
        first = max(min(columns["start_ns"]), since_ns or 0)
        last = max(s + d for s, d in zip(columns["start_ns"], columns["duration_ns"]))
        window_s = max(1.0, (last - first) / 1e9)
    _print_routes([route_json(r) for r in route_table(columns, window_s, latency)], latency, store, since, as_json, "")


def _print_routes(rows: list[dict], latency: str, store: Store, since: str | None, as_json: bool, source: str) -> None:
    where = f" in the last {since}" if since else ""
    empty = f"no requests{where} in {store.location}; wrap your app with profviz.wsgi.ProfilerMiddleware to record some"
    if printed_json_or_nothing(rows, as_json, empty):
        return
    width = min(60, max(5, *(len(r["route"]) for r in rows)))
    queued = any(r["queue_p95_ms"] is not None for r in rows)
    click.echo("latency: " + ("total (queued before the app + the app's time)" if latency == "total" else "the app's time alone")
               + ("" if queued or source else "; no queue times recorded (docs/queue-time.md)") + source)
    click.echo(
        f"{'method':<7} {'route':<{width}} {'count':>7} {'rps':>8} {'err%':>6} {'p50 ms':>9} {'p90 ms':>9}"
        f" {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}" + (f" {'queue p95':>9}" if queued else "")
    )
    for r in rows:
        queue = "" if not queued else f" {'-':>9}" if r["queue_p95_ms"] is None else f" {r['queue_p95_ms']:>9.2f}"
        click.echo(
            f"{r['method']:<7} {r['route'][:width]:<{width}} {r['count']:>7} {r['rps']:>8.2f} {100 * r['error_rate']:>6.1f}"
            f" {r['p50_ms']:>9.2f} {r['p90_ms']:>9.2f} {r['p95_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['max_ms']:>9.2f}{queue}"
        )


def _print_load(store: Store, columns: dict, latency: str, route: str | None, method: str | None, as_json: bool,
                since: str | None) -> None:
    if route is not None and route not in set(columns["route"]):
        _check_route_known(store, route)
    curve = load_curve(columns, latency, route=route, method=method)
    if as_json:
        click.echo(json.dumps(load_json(curve), indent=2))
        return
    if not curve.requests:
        where = f" in the last {since}" if since else ""
        click.echo(f"no requests{where} in {store.location}")
        return
    who = f"{method or 'any method'} {route}" if route else "all routes"
    source = {"configured": "configured worker threads", "observed": "threads seen serving requests"}.get(curve.capacity_source, curve.capacity_source)
    click.echo(f"latency against load: {who}, {curve.requests} requests, {'total latency (queued + app)' if latency == 'total' else 'the app time'};"
               f" capacity {curve.capacity} ({source})")
    click.echo(f"{'utilisation at arrival':<24} {'requests':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for level in curve.levels:
        band = f"{100 * level.low:.0f}-{100 * level.high:.0f}%" if level.high is not None else f">= {100 * level.low:.0f}%"
        mark = "  <- knee" if curve.knee is not None and level.low == curve.knee else ""
        click.echo(f"{band:<24} {level.requests:>9} {level.p50_ms:>9.2f} {level.p95_ms:>9.2f} {level.p99_ms:>9.2f}{mark}")
    click.echo(f"{'throughput (req/s)':<24} {'requests':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for level in curve.throughput:
        click.echo(f"{f'{level.low_rps:.1f}-{level.high_rps:.1f}':<24} {level.requests:>9} {level.p50_ms:>9.2f} {level.p95_ms:>9.2f} {level.p99_ms:>9.2f}")
    click.echo("")
    if curve.baseline_p99_ms is None:
        click.echo("knee: too few requests to know the low-load P99")
    elif curve.knee is None:
        click.echo(f"knee: not reached; P99 stayed under {KNEE_FACTOR:g}x its low-load {curve.baseline_p99_ms:.2f} ms"
                   f" up to {100 * curve.levels[-1].low:.0f}% utilisation")
    else:
        click.echo(f"knee: at {100 * curve.knee:.0f}% utilisation P99 is {curve.knee_p99_ms:.2f} ms,"
                   f" {curve.knee_p99_ms / curve.baseline_p99_ms:.1f}x its low-load {curve.baseline_p99_ms:.2f} ms"
                   f" (at {100 * curve.baseline_utilisation:.0f}%)")
    headroom = f"peak: {100 * curve.peak_utilisation:.0f}% of the workers busy (busiest second), {curve.peak_rps:.1f} req/s; headroom {100 * curve.headroom:.0f}%"
    if curve.traffic_to_knee is not None:
        headroom += (": at the knee already" if curve.traffic_to_knee <= 1.05
                     else f": about {curve.traffic_to_knee:.1f}x that traffic before the knee")
    click.echo(headroom)


@click.command("requests")
@store_option
@json_option
@click.option("--route", default=None, help="Only requests of this route (as shown by 'profviz routes').")
@click.option("--method", default=None, help="Only requests with this HTTP method.")
@click.option("--since", default=None, metavar="DURATION", help="Only requests that started in the last DURATION.")
@click.option("--slowest", type=click.IntRange(min=1), default=None, metavar="N",
              help="The N slowest requests (by total latency: queue + app), slowest first.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Without --slowest: the latest N requests.")
@origin_options
def requests_command(
    store_path: str | None, as_json: bool, route: str | None, method: str | None, since: str | None,
    slowest: int | None, limit: int, **origin: str | None,
) -> None:
    """List timed requests (oldest first, or the slowest first with --slowest); profile ids open with 'profviz show'."""
    store = open_cli_store(store_path)
    rows = store.query_requests(since_ns=_since_ns(since), route=route, method=method, slowest=slowest, limit=limit,
                                labels=origin_filter(origin))
    if not rows and route is not None:
        _check_route_known(store, route)
    entries = [request_entry(r) for r in rows]
    if printed_json_or_nothing(entries, as_json, f"no matching requests in {store.location}"):
        return
    click.echo(f"{'id':>7}  {'start':<23} {'method':<7} {'status':>6} {'total ms':>9} {'queue ms':>9} {'app ms':>9}"
               f" {'cpu ms':>9} {'profile':>7}  path (route)")
    for e in entries:
        queue = "-" if e["queue_ms"] is None else f"{e['queue_ms']:.2f}"
        click.echo(
            f"{e['id']:>7}  {_when(int(e['start'] * 1e9)):<23} {e['method']:<7} {e['status']:>6} {e['total_ms']:>9.2f}"
            f" {queue:>9} {e['duration_ms']:>9.2f} {e['cpu_ms']:>9.2f} {e['profile_id'] or '-':>7}  {e['path'][:80]} ({e['route'][:60]})"
        )


def _check_route_known(store: Store, route: str) -> None:
    """Raise UnknownRoute naming the store's routes when ``route`` has no request at all."""
    if store.request_columns(route=route)["id"]:
        return
    known = sorted(set(store.request_columns()["route"]))
    shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
    raise UnknownRoute(f"no requests of route {route!r} in {store.location}; its routes: {shown or 'none yet'}"
                       " (as 'profviz routes' lists them)")


class UnknownRoute(ProfvizError):
    """A --route that no stored request has."""


COMMANDS = (routes_command, requests_command)
