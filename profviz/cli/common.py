"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import click

from ..model.origin import ORIGIN_KEYS
from ..store import Store, open_store

store_option = click.option(
    "--store",
    "store_path",
    envvar="PROFVIZ_STORE",
    default=None,
    help="Store file or URL (default: $PROFVIZ_STORE or the per-user data directory).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def origin_options(command):
    """``--service``, ``--host``, ``--version``, ``--env``: only requests with these labels (see :func:`origin_filter`)."""
    for key in reversed(ORIGIN_KEYS):
        command = click.option(f"--{key}", f"origin_{key}", default=None, metavar=key.upper(),
                               help=f"Only requests whose {key} label is {key.upper()} (a fleet's instances label theirs).")(command)
    return command


def origin_filter(given: dict[str, Any]) -> dict[str, str] | None:
    """The labels a command's origin options ask for (None when none)."""
    chosen = {key: given[f"origin_{key}"] for key in ORIGIN_KEYS if given.get(f"origin_{key}") is not None}
    return chosen or None


def open_cli_store(store_path: str | None) -> Store:
    return open_store(store_path)


def notice(message: str) -> None:
    """A one-line notice on stderr, prefixed ``profviz:``."""
    click.echo(f"profviz: {message}", err=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def printed_json_or_nothing(entries: list, as_json: bool, empty_message: str) -> bool:
    """Print ``entries`` as JSON when asked, else ``empty_message`` when there are none; True when
    nothing is left to print (the caller's table is for the other cases)."""
    if as_json:
        print_json(entries)
        return True
    if not entries:
        click.echo(empty_message)
        return True
    return False


def seconds(ns: int | float) -> float:
    return round(float(ns) / 1e9, 6)


def isatty_stderr() -> bool:
    return sys.stderr.isatty()


def stop_on_signals() -> None:
    """Make SIGTERM (``kill``, a service manager, a container stop) stop a long-running command as
    Ctrl-C does, and Ctrl-C work even where SIGINT was inherited ignored (a background job)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
