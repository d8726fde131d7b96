"""``profviz import`` and ``profviz export``: profiles from and to speedscope, folded stacks,
pyinstrument and profviz's own JSON (see :mod:`profviz.formats`)."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import click

from .. import formats
from ..formats import FormatError
from .common import json_option, notice, open_cli_store, print_json, store_option


def _parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--label")
        labels[key.strip()] = text
    return labels


def _read_input(path: str) -> tuple[bytes, str, int | None]:
    """(bytes, display name, mtime ns or None) of a file, or of stdin for "-"."""
    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>", None
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
    except IsADirectoryError:
        raise FormatError(f"cannot read {path!r}: it is a directory; pass a profile file") from None
    except OSError as exc:
        raise FormatError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    return data, os.path.basename(path), mtime_ns


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--format", "format_name", type=click.Choice(formats.names()), default=None, help="The file's format (default: detect it).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label the stored profile (repeatable).")
@click.option("--rate", "rate_hz", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sampling rate in Hz for formats that count samples (folded stacks, unit-less speedscope; default 100).")
@store_option
@json_option
def import_command(file: str, format_name: str | None, labels: tuple[str, ...], rate_hz: float | None, store_path: str | None, as_json: bool) -> None:
    """Import a profile FILE (speedscope, folded stacks, pyinstrument, py-spy chrometrace, profviz JSON) into the store."""
    label_values = _parse_labels(labels)
    data, name, mtime_ns = _read_input(file)
    fmt = formats.format_named(format_name) if format_name else formats.detect_format(data, name)
    profile = formats.load_any(data, name, format_name=fmt.name, rate_hz=rate_hz, file_mtime_ns=mtime_ns)
    if profile.sample_count == 0:
        raise FormatError(f"cannot import {name!r}: it holds no samples")
    profile.meta["labels"] = {**(profile.meta.get("labels") or {}), "imported_from": fmt.name, **label_values}
    notes = list(profile.meta.get("notes") or [])
    notes.insert(0, f"imported from {name!r} ({fmt.name})")
    profile.meta["notes"] = notes
    store = open_cli_store(store_path)
    profile_id = store.save_profile(profile)
    if as_json:
        print_json({
            "profile_id": profile_id,
            "format": fmt.name,
            "samples": profile.sample_count,
            "threads": len(profile.threads),
            "wall_s": round(int(profile.columns()["weight_ns"].sum()) / 1e9, 6),
        })
    else:
        click.echo(f"imported {name} ({fmt.name}) as profile {profile_id}: {profile.sample_count} samples, {len(profile.threads)} threads")


def _write_atomically(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".profviz-export-", dir=directory)
    except OSError as exc:
        raise FormatError(f"cannot write {path!r}: {exc.strerror or exc}; choose another -o path") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FormatError(f"cannot write {path!r}: {exc.strerror or exc}; choose another -o path") from None


def readable(data: bytes) -> bytes:
    """JSON indented for a person at a terminal (a pipe or a file gets the compact bytes); other data as is."""
    if not data.lstrip()[:1] in (b"{", b"["):
        return data
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False).encode() + b"\n"
    except ValueError:
        return data


@click.command("export")
@click.argument("profile_id", type=int)
@click.option("--format", "format_name", type=click.Choice(formats.names(dumpable=True)), required=True, help="Output format.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True, help="Output file ('-' for stdout).")
@store_option
def export_command(profile_id: int, format_name: str, output: str, store_path: str | None) -> None:
    """Export a stored profile as speedscope, folded stacks, pyinstrument session or profviz JSON."""
    store = open_cli_store(store_path)
    profile = store.load_profile(profile_id)
    data = formats.dump(profile, format_name)
    if output == "-":
        if sys.stdout.isatty():
            data = readable(data)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _write_atomically(output, data)
    dropped = getattr(formats.format_named(format_name).module, "DROPS", None)
    notice(f"wrote profile {profile_id} as {format_name} to {output} ({len(data)} bytes)" + (f"; the format drops {dropped}" if dropped else ""))


COMMANDS = (import_command, export_command)
