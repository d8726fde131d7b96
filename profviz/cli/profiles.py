"""``profviz list``, ``profviz show``, ``profviz delete`` and ``profviz retain``."""

from __future__ import annotations

import datetime as dt
import time

import click

from ..analysis.summary import profile_summary
from ..shapes.profiles import profile_entry, summary_json
from .common import json_option, open_cli_store, print_json, printed_json_or_nothing, store_option


def _when(start_ns: int) -> str:
    return dt.datetime.fromtimestamp(start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


@click.command("list")
@store_option
@json_option
@click.option("--kind", default=None, help="Only profiles of this kind (attach, record, request, ...).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many profiles.")
def list_command(store_path: str | None, as_json: bool, kind: str | None, limit: int | None) -> None:
    """List stored profiles, newest first."""
    store = open_cli_store(store_path)
    entries = [profile_entry(m) for m in store.list_profiles(kind=kind, limit=limit)]
    if printed_json_or_nothing(entries, as_json, f"no profiles in {store.location}; record one with 'profviz attach PID'"):
        return
    click.echo(f"{'id':>5}  {'kind':<8} {'pid':>7}  {'start':<19} {'dur s':>7} {'samples':>8} {'err':>4} {'cpu%':>5} {'wait%':>5}  command")
    for e in entries:
        wall = e["cpu_ns"] + e["wait_ns"] + e["runnable_ns"] + e["gil_ns"]
        cpu = 100 * e["cpu_ns"] / wall if wall else 0
        wait = 100 * e["wait_ns"] / wall if wall else 0
        command = " ".join(e["cmdline"].split())[:60]
        click.echo(
            f"{e['id']:>5}  {e['kind']:<8} {e['pid'] or '-':>7}  {_when(e['start_ms'] * 1e6):<19} {e['duration_ns'] / 1e9:>7.1f}"
            f" {e['sample_count']:>8} {e['errors']:>4} {cpu:>5.1f} {wait:>5.1f}  {command}"
        )


def _fmt_s(value: float) -> str:
    return f"{value:8.3f}s"


SHOWN_THREADS = 15
IDLE_CPU_SHARE = 0.01  # a thread that ran less than this share of its time is idle (a pool thread waiting for work)
OWN_THREAD_PREFIX = "profviz-"


def threads_to_show(threads: list[dict], all_threads: bool) -> tuple[list[dict], dict[str, list[dict]]]:
    """The threads ``show`` lists (the busiest first, at most SHOWN_THREADS unless ``all_threads``)
    and those it folds into a line each: profviz's own threads, idle threads, the rest."""
    busy = sorted(threads, key=lambda t: -(t["cpu_s"] + t["runnable_s"] + t["gil_s"] + t["wait_s"] * IDLE_CPU_SHARE))
    if all_threads:
        return busy, {}
    own = [t for t in busy if t["name"].startswith(OWN_THREAD_PREFIX)]
    idle = [t for t in busy if t not in own and t["cpu_s"] + t["runnable_s"] + t["gil_s"] < IDLE_CPU_SHARE * t["wall_s"]]
    rest = [t for t in busy if t not in own and t not in idle]
    return rest[:SHOWN_THREADS], {"more threads": rest[SHOWN_THREADS:], "idle threads (under 1% CPU)": idle,
                                  "of profviz's own threads": own}


def thread_label(thread: dict, width: int) -> str:
    """``name (tid)`` in at most ``width`` characters, shortening the name but never its "(stale name?)" mark."""
    name, tail = thread["name"], f" ({thread['tid']})"
    mark = " (stale name?)" if name.endswith(" (stale name?)") else ""
    base = name.removesuffix(mark) if mark else name
    if not name:
        return str(thread["tid"])[:width]
    room = width - len(tail) - len(mark)
    if len(base) > room:
        base = base[: max(room - 1, 1)] + "~"
    return f"{base}{mark}{tail}"


def render_summary_text(summary: dict, top: int, all_threads: bool = False) -> str:
    """The human-readable form of ``profviz show --json`` (:func:`profviz.shapes.profiles.summary_json`)."""
    lines = [
        f"profile {summary['id']} ({summary['kind']}) pid {summary['pid']}  started {_when(summary['start'] * 1e9)}"
        f"  duration {summary['duration_s']:.2f}s  {summary['sample_count']} samples at {summary['rate_hz'] or '?'} Hz"
        f"  errors {summary['errors']}",
    ]
    for note in summary.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("")
    shown, folded = threads_to_show(summary["threads"], all_threads)
    lines.append(f"{'thread':<40} {'wall':>9} {'cpu':>9} {'waiting':>9} {'runnable':>9} {'gil':>9}  waits")
    for t in shown:
        waits = ", ".join(f"{reason} {sec:.2f}s" for reason, sec in list(t["waits"].items())[:4])
        lines.append(
            f"{thread_label(t, 40):<40} {_fmt_s(t['wall_s'])} {_fmt_s(t['cpu_s'])} {_fmt_s(t['wait_s'])} {_fmt_s(t['runnable_s'])} {_fmt_s(t['gil_s'])}  {waits}"
        )
    for what, threads in folded.items():
        if threads:
            lines.append(f"(+ {len(threads)} {what}, {sum(t['wall_s'] for t in threads):.2f}s of wall time: --all lists them)")
    functions = summary["functions"]
    for title, key in (("by self time", "self_s"), ("by total time", "total_s")):
        lines.append("")
        lines.append(f"top functions {title}:")
        lines.append(f"{'total':>9} {'self':>9} {'cpu':>9} {'wait':>9} {'gil':>9}  function (file:line)")
        for f in sorted(functions, key=lambda f: -f[key])[:top]:
            lines.append(
                f"{_fmt_s(f['total_s'])} {_fmt_s(f['self_s'])} {_fmt_s(f['cpu_s'])} {_fmt_s(f['wait_s'])} {_fmt_s(f['gil_s'])}"
                f"  {f['function']} ({f['file']}:{f['line']})"
            )
    return "\n".join(lines)


@click.command("show")
@click.argument("profile_id", type=int)
@store_option
@json_option
@click.option("--thread", "thread", default=None, help="Only this thread (native tid or name).")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="Functions to list in text output.")
@click.option("--all", "all_threads", is_flag=True, help="List every thread (by default the busiest; idle and profviz's own threads are folded).")
@click.option("--serve", "serve_ui", is_flag=True, help="Then serve the UI for this profile on 127.0.0.1 until Ctrl-C.")
@click.option("--open", "open_ui", is_flag=True, help="Then serve the UI and open this profile in a browser (implies --serve).")
def show_command(profile_id: int, store_path: str | None, as_json: bool, thread: str | None, top: int,
                 all_threads: bool, serve_ui: bool, open_ui: bool) -> None:
    """Summarise a profile: per-thread CPU/waiting/runnable/GIL split and the top functions."""
    store = open_cli_store(store_path)
    profile = store.load_profile(profile_id)
    summary = summary_json(profile_summary(profile, thread=thread))
    if as_json:
        print_json(summary)
    else:
        click.echo(render_summary_text(summary, top, all_threads))
    if serve_ui or open_ui:
        from .serve import serve_profile

        serve_profile(store, profile_id, open_browser=open_ui)


@click.command("delete")
@click.argument("profile_id", type=int)
@store_option
def delete_command(profile_id: int, store_path: str | None) -> None:
    """Delete a stored profile."""
    store = open_cli_store(store_path)
    store.delete_profile(profile_id)
    click.echo(f"deleted profile {profile_id}")


@click.command("retain")
@click.argument("duration")
@store_option
@json_option
def retain_command(duration: str, store_path: str | None, as_json: bool) -> None:
    """Keep the last DURATION of data (7d, 12h...) and delete what is older: requests, spans, profiles
    and minute sketches. Hour sketches stay, so 'routes --from sketches' still covers older windows.
    A PostgreSQL store drops whole days (the day holding the cutoff is kept)."""
    from .routes import parse_duration

    seconds_kept = parse_duration(duration)
    store = open_cli_store(store_path)
    since_ns = time.time_ns() - int(seconds_kept * 1e9)
    gone = store.retain(since_ns)
    if as_json:
        print_json({"since_ns": since_ns, "deleted": gone})
    else:
        click.echo(f"deleted {gone['requests']} requests, {gone['spans']} spans and {gone['profiles']} profiles "
                   f"older than {duration} from {store.location}")


COMMANDS = (list_command, show_command, delete_command, retain_command)
