"""``profviz spans`` (trace spans lined up against a profile's samples) and ``profviz import-traces``."""

from __future__ import annotations

import datetime as dt

import click

from ..analysis.correlate import join_spans, unspanned
from ..analysis.span_views import gap_summary, span_summaries
from ..formats.otlp import load_file
from ..store import Store
from ..store.spans import load_span_context
from ..shapes.spans import cli_listing_json, listing_rows
from .common import json_option, notice, open_cli_store, print_json, store_option


def span_listing(store: Store, profile_id: int | None = None, *, request_id: int | None = None,
                 offset_ns: int = 0, top: int = 5) -> dict:
    """The spans of a profile (or of one request) with per-span sample statistics.

    Keys: profile_id, request (id, route, method, path, tid, start, duration_s, or None),
    offset_ns, skipped_spans (spans on threads the profile did not sample) and spans (rows of
    :func:`profviz.shapes.spans.span_row`, plus, for a request, a last ``(no span)`` row for
    request time outside every child span).
    """
    context = load_span_context(store, profile_id, request_id=request_id, offset_ns=offset_ns)
    join = join_spans(context.profile, context.spans, offset_ns=offset_ns)
    gap = gap_summary(join, unspanned(join, *context.window), top=top) if context.window else None
    rows = listing_rows(span_summaries(join, top=top), gap, context.profile)
    return cli_listing_json(context.profile_id, context.request, offset_ns, context.skipped, rows)


def _clock(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s).strftime("%H:%M:%S.%f")[:-3]


def render_listing(listing: dict) -> str:
    """The text table of ``profviz spans``."""
    lines = []
    request = listing["request"]
    if request:
        lines.append(
            f"request {request['id']}: {request['method']} {request['route']} ({request['path'][:80]})"
            f"  {request['duration_s'] * 1000:.1f} ms on thread {request['tid']}  profile {listing['profile_id']}"
        )
    else:
        lines.append(f"profile {listing['profile_id']}")
    rows = listing["spans"]
    if not any(r["span_id"] for r in rows):
        lines.append("no spans overlap this profile's samples: record them with profviz.otel.SpanProcessor, "
                     "or export OTLP to 'profviz serve' (POST /v1/traces)")
    lines.append(
        f"{'span':<16} {'parent':<16} {'name':<32} {'kind':<8} {'tid':>7} {'start':<12} {'dur s':>8} {'samples':>7}"
        f" {'cpu s':>7} {'wait s':>7} {'self s':>7} {'uncov s':>7}"
    )
    for row in rows:
        name = " ".join(str(row["name"]).split())[:31] + ("~" if row["approximate"] else "")
        lines.append(
            f"{row['span_id'] or '-':<16} {row['parent_id'] or '-':<16} {name:<32} {row['kind']:<8} {row['tid'] or '-':>7}"
            f" {_clock(row['start']):<12} {row['duration_s']:>8.3f} {row['samples']:>7} {row['cpu_s']:>7.3f}"
            f" {row['wait_s']:>7.3f} {row['self_s']:>7.3f} {row['uncovered_s']:>7.3f}"
        )
        for fn in row["top_functions"]:
            lines.append(f"{'':<34}{fn['self_s']:>8.3f}s self  {fn['function'][:60]} ({fn['file'][-60:]}:{fn['line']})")
    if any(r["approximate"] for r in rows):
        lines.append("~ approximate: the span has no thread.id, so it is joined by time over all threads")
    if listing["skipped_spans"]:
        lines.append(f"{listing['skipped_spans']} spans ran on threads this profile did not sample and are not shown")
    return "\n".join(lines)


@click.command("spans")
@click.argument("profile_id", type=int, required=False)
@click.option("--request", "request_id", type=int, default=None, help="The spans of this request (id from 'profviz requests').")
@click.option("--offset-ms", type=float, default=0.0, show_default=True,
              help="Add this to span times to bring them onto the samples' clock (0 on one host).")
@click.option("--top", type=click.IntRange(min=0, max=50), default=5, show_default=True, help="Functions per span by self time.")
@store_option
@json_option
def spans_command(profile_id: int | None, request_id: int | None, offset_ms: float, top: int, store_path: str | None,
                  as_json: bool) -> None:
    """List the trace spans joined to a profile's samples (or a request's, with --request).

    Each span shows its thread, duration, the samples inside it (CPU / waiting), the time the
    span owns itself (outside child spans), time no sample covered, and its top functions by
    self time. A request also gets a "(no span)" entry: its time outside every child span.
    """
    store = open_cli_store(store_path)
    listing = span_listing(store, profile_id, request_id=request_id, offset_ns=int(round(offset_ms * 1e6)), top=top)
    if as_json:
        print_json(listing)
    else:
        click.echo(render_listing(listing))


@click.command("import-traces")
@click.argument("path", type=click.Path(dir_okay=False))
@store_option
def import_traces_command(path: str, store_path: str | None) -> None:
    """Store the spans of an OTLP/JSON traces file (one request object, or one per line; gzip ok)."""
    records = load_file(path)
    store = open_cli_store(store_path)
    added = store.insert_spans(records)
    if added < len(records):
        notice(f"{len(records) - added} of {len(records)} spans were already in the store")
    approximate = sum(1 for r in records if r.tid is None)
    if approximate:
        notice(f"{approximate} spans have no thread.id attribute: they join samples by time only (approximate)")
    click.echo(f"imported {added} spans from {path} into {store.location}")


COMMANDS = (spans_command, import_traces_command)
