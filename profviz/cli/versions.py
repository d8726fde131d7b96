"""``profviz versions A B``: what a deploy changed, per route, and why its slowest requests got slower."""

from __future__ import annotations

import click

from ..analysis.routes import pick_latency, tail_diff
from ..analysis.versions import TAIL_PERCENTILE, compare_versions, slow_profiled
from ..errors import ProfvizError
from ..shapes.routes import tail_diff_json, version_row_json
from ..store import Store
from ..store.window import loaded_profiles
from .common import json_option, open_cli_store, origin_filter, origin_options, print_json, store_option
from .routes import _since_ns

MIN_PROFILES = 2
MAX_PROFILES = 50
FRAMES_SHOWN = 8


class NoRequestsOfVersion(ProfvizError):
    """A version with no stored request."""


@click.command("versions")
@click.argument("version_a")
@click.argument("version_b")
@store_option
@json_option
@click.option("--since", default=None, metavar="DURATION", help="Only requests that started in the last DURATION (30s, 15m, 2h, 1d).")
@click.option("--route", default=None, help="Explain this route (default: the one whose P95 grew most).")
@click.option("--method", default="GET", show_default=True, help="With --route: its HTTP method.")
@origin_options
def versions_command(version_a: str, version_b: str, store_path: str | None, as_json: bool, since: str | None, route: str | None,
                     method: str, **origin: str | None) -> None:
    """Compare two versions of a service (their 'version' label): per route, P50/P95/P99 of A
    against B, largest P95 increase first; then, for the route that grew most (or --route), the
    functions that take more time per request in B's slowest requests (above their P90) than in
    A's: what the deploy made slower."""
    store = open_cli_store(store_path)
    since_ns = _since_ns(since)
    base = {key: value for key, value in (origin_filter(origin) or {}).items() if key != "version"}
    columns = {}
    for version in (version_a, version_b):
        columns[version] = store.request_columns(since_ns=since_ns, labels={**base, "version": version})
        if not columns[version]["id"]:
            raise NoRequestsOfVersion(f"no requests of version {version!r} in {store.location}: the versions are the 'version' "
                                      "label of the middleware (its version option, or service.version in OTEL_RESOURCE_ATTRIBUTES)")
    latency = pick_latency({name: columns[version_a][name] + columns[version_b][name] for name in columns[version_a]}, None)
    rows = compare_versions(columns[version_a], columns[version_b], latency)
    wanted = None if route is None else (route, method.upper())
    explained = next((r for r in rows if r.a and r.b and wanted in (None, (r.route, r.method))), None)
    diff = None if explained is None else _diff(store, columns[version_a], columns[version_b], explained.route, explained.method, latency)
    if as_json:
        print_json({"a": version_a, "b": version_b, "latency": latency,
                    "routes": [version_row_json(r) for r in rows],
                    "explained": explained and {"route": explained.route, "method": explained.method},
                    "diff": diff and tail_diff_json(diff)})
        return
    width = min(50, max(5, *(len(r.route) for r in rows)))
    click.echo(f"latency ({latency}) of version {version_a} -> {version_b}, ms")
    click.echo(f"{'method':<7} {'route':<{width}} {'count':>13} {'p50':>17} {'p95':>17} {'p99':>17} {'p95 change':>10}")
    for r in rows:
        def pair(name: str) -> str:
            return f"{_ms(r.a, name)} -> {_ms(r.b, name)}"
        count = f"{r.a.count if r.a else 0} / {r.b.count if r.b else 0}"
        change = "-" if r.p95_change is None else f"{100 * r.p95_change:+.0f}%"
        click.echo(f"{r.method:<7} {r.route[:width]:<{width}} {count:>13} {pair('p50_ms'):>17} {pair('p95_ms'):>17} {pair('p99_ms'):>17} {change:>10}")
    if explained is None:
        return
    click.echo("")
    if diff is None:
        click.echo(f"{explained.method} {explained.route}: not enough profiled slow requests in both versions to compare "
                   f"(each needs {MIN_PROFILES}); profviz keeps the profiles of slow requests as they happen")
        return
    click.echo(f"{explained.method} {explained.route}: its slowest requests (above P{TAIL_PERCENTILE:g}) take {diff.extra_ms:+.1f} ms "
               f"each in {version_b} against {version_a} ({diff.tail_profiles} and {diff.typical_profiles} profiles); where:")
    for frame in [f for f in diff.frames if f.extra_self_ms > 0][:FRAMES_SHOWN]:
        click.echo(f"  {frame.extra_self_ms:+9.2f} ms  (cpu {frame.extra_cpu_ms:+.2f}, waiting {frame.extra_wait_ms:+.2f})  "
                   f"{frame.function[:80]} ({frame.file[-60:]})")


def _ms(stats, name: str) -> str:
    return "-" if stats is None else f"{getattr(stats, name):.1f}"


def _diff(store: Store, columns_a: dict, columns_b: dict, route: str, method: str, latency: str):
    profiles = [loaded_profiles(store.load_profile, slow_profiled(columns, route, method, latency, limit=MAX_PROFILES))
                for columns in (columns_b, columns_a)]
    if min(len(p) for p in profiles) < MIN_PROFILES:
        return None
    return tail_diff(profiles[0], profiles[1])


COMMANDS = (versions_command,)
