"""``profviz findings``: each route's bottlenecks, named, with their evidence and the fix."""

from __future__ import annotations

import os

import click

from ..analysis.findings import Finding, Window, run_detectors
from ..collect.explain import ExplainUnavailable, explainers, postgres_explainer, sqlite_explainer
from ..errors import ProfvizError
from ..shapes.findings import findings_json
from ..store.window import load_window
from .common import json_option, open_cli_store, origin_filter, origin_options, print_json, store_option
from .routes import _check_route_known, _since_ns


@click.command("findings")
@store_option
@json_option
@click.option("--route", default=None, help="Only this route (as 'profviz routes' lists it).")
@click.option("--since", default=None, metavar="DURATION", help="Only requests that started in the last DURATION (30s, 15m, 2h, 1d).")
@click.option("--profile", "profile_id", type=int, default=None, help="Look at one stored profile (an attach profile) instead of requests.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Print at most N findings.")
@click.option("--explain-dsn", default=None, metavar="DSN",
              help="A PostgreSQL database to read query plans from (EXPLAIN, never ANALYZE, read-only); default: $PROFVIZ_EXPLAIN_DSN.")
@origin_options
def findings_command(store_path: str | None, as_json: bool, route: str | None, since: str | None, profile_id: int | None,
                     limit: int, explain_dsn: str | None, **origin: str | None) -> None:
    """What to fix first: each route's bottlenecks (N+1 queries, full scans, slow queries, new
    connections per request, synchronous logging, serialization, large payloads...), largest
    impact first, each with its evidence and the fix. Query plans are read from SQLite files the
    spans name, read-only, and from PostgreSQL only through --explain-dsn."""
    store = open_cli_store(store_path)
    if profile_id is not None:
        window = Window(profile=store.load_profile(profile_id))
    else:
        window = load_window(store, since_ns=_since_ns(since), route=route, explain=explainer(explain_dsn),
                             labels=origin_filter(origin))
        if route is not None and not window.requests:
            _check_route_known(store, route)
    findings = run_detectors(window)[:limit]
    if as_json:
        print_json(findings_json(findings))
        return
    if not findings:
        looked = f"profile {profile_id}" if profile_id is not None else f"{len(window.requests)} requests"
        click.echo(f"no findings in {looked} of {store.location}: no detector saw a bottleneck over its threshold")
        return
    for number, finding in enumerate(findings, 1):
        click.echo(describe(number, finding))


class ExplainDatabaseUnreachable(ProfvizError):
    """The --explain-dsn database cannot be reached."""


def explainer(explain_dsn: str | None):
    """Plans from SQLite files the spans name, and from ``explain_dsn`` (or $PROFVIZ_EXPLAIN_DSN) when given."""
    dsn = explain_dsn or os.environ.get("PROFVIZ_EXPLAIN_DSN")
    if not dsn:
        return sqlite_explainer()
    try:
        return explainers(postgres_explainer(dsn), sqlite_explainer())
    except ExplainUnavailable as exc:
        raise ExplainDatabaseUnreachable(f"{exc}; check the DSN, or leave --explain-dsn out to go without PostgreSQL plans") from None


def top_per_route(findings: list[Finding]) -> list[Finding]:
    """The first (largest impact) finding of each route, in the order given."""
    seen, top = set(), []
    for finding in findings:
        if finding.route not in seen:
            seen.add(finding.route)
            top.append(finding)
    return top


def print_top_findings(store, limit: int = 8) -> list[Finding]:
    """``profviz demo``'s summary: the top finding of each route, largest impact first; returns them."""
    top = top_per_route(run_detectors(load_window(store, explain=sqlite_explainer())))[:limit]
    if top:
        click.echo("\nWhat to fix first (the top finding of each route; all of them: profviz findings):")
        for number, finding in enumerate(top, 1):
            click.echo(describe(number, finding))
    return top


def describe(number: int, finding: Finding) -> str:
    """A finding as a few lines for a terminal."""
    evidence = finding.evidence
    lines = [f"{number}. [{finding.kind}] {finding.title}",
             f"   {finding.impact_ms:.1f} ms a request in {finding.requests} requests; {100 * finding.share:.0f}% of the route's time,"
             f" {100 * finding.tail_share:.0f}% of its tail's extra time"]
    for key in ("statement", "url", "handler", "connect_call"):
        if evidence.get(key):
            lines.append(f"   {key.replace('_', ' ')}: {evidence[key]}")
    site = evidence.get("call_site")
    if site:
        lines.append(f"   call site: {site['function']} ({site['file']}:{site['line']})")
    example = (evidence.get("examples") or [None])[0]
    if example:
        profile = f", its profile: profviz show {example['profile']}" if example.get("profile") else ""
        lines.append(f"   e.g. request {example['request']}{profile}")
    if evidence.get("plan"):
        lines.append("   plan: " + " | ".join(evidence["plan"].splitlines()))
    lines.append(f"   fix: {finding.fix}")
    return "\n".join(lines)


COMMANDS = (findings_command,)
