"""``profviz attach PID`` and ``profviz record -- command ...``: wall-clock profiles of every thread
with CPU / waiting / runnable states (see :mod:`profviz.collect.attach`).

``record`` starts the program itself (stdin/stdout/stderr stay the terminal's, it stays in our
process group so a terminal Ctrl-C reaches it as it would without profviz) and then attaches py-spy
to its pid exactly as ``attach`` does, so the /proc state reading works the same way, its exit code
comes straight from ``wait()`` and profviz exits with it (128 + N when a signal N killed it). The
first few milliseconds of the program, before py-spy has attached, are not sampled.

Ctrl-C (SIGINT) or SIGTERM stop the recording and keep everything collected. The store is opened
and checked writable before recording starts, so a bad store never costs a recording.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time

import click

from ..collect.attach import AttachOptions, AttachResult, Progress, collect
from ..collect.pyspy import PySpyError, check_pyspy
from ..errors import ProfvizError
from ..model.origin import origin_labels
from ..store import Store, open_store
from .common import isatty_stderr, json_option, notice, store_option


class RecordError(ProfvizError):
    """The program given to ``profviz record`` could not be started or profiled."""


def parse_labels(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE; write e.g. --label env=staging")
        labels[key.strip()] = text
    return labels


def collector_options(command):
    """Options shared by attach and record."""
    decorators = [
        click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Seconds to record (default: until Ctrl-C or the target exits)."),
        click.option("--rate", type=click.IntRange(1, 10_000), default=100, show_default=True,
                     help="Samples per second per thread (py-spy and the /proc state reader)."),
        click.option("--native", is_flag=True, help="Include native (C/C++/Cython) frames (py-spy --native)."),
        click.option("--subprocesses", is_flag=True, help="Also profile child processes (py-spy --subprocesses)."),
        click.option("--nonblocking", is_flag=True,
                     help="Do not pause the target while reading its stacks (lower overhead, less exact stacks)."),
        click.option("--label", "labels", multiple=True, callback=parse_labels, metavar="KEY=VALUE",
                     help="Label stored with the profile (repeatable)."),
        store_option,
        json_option,
        click.option("--serve", "serve_ui", is_flag=True,
                     help="After saving, serve the UI for this profile on 127.0.0.1 until Ctrl-C."),
        click.option("--open", "open_ui", is_flag=True,
                     help="After saving, serve the UI and open this profile in a browser (implies --serve)."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def open_store_for_recording(store_path: str | None) -> Store:
    """Open the store and prove it accepts writes, before anything is recorded."""
    store = open_store(store_path)
    store.check_writable()
    return store


class _StopSignals:
    """While active, SIGINT and SIGTERM set ``event`` (and remember the signal) instead of killing us."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum
        self.event.set()

    def __enter__(self) -> "_StopSignals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _ProgressLine:
    """One updating stderr line while recording, only on a terminal."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.enabled = isatty_stderr()
        self.shown = False

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        text = (
            f"profviz: recording {self.what}: {progress.elapsed_s:5.1f} s, ~{progress.estimated_samples} samples"
            f" (state readings x {progress.live_threads} threads), {progress.pyspy_errors} py-spy errors; Ctrl-C to stop"
        )
        sys.stderr.write("\r\x1b[2K" + text)
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self.shown = False


def _save_and_report(store: Store, result: AttachResult, what: str, as_json: bool) -> int:
    profile_id = store.save_profile(result.profile)
    if result.stopped_by == "target-exit":
        notice(f"{what} exited after {result.target_exited_after_s:.1f} s; kept the partial profile")
    elif result.stopped_by == "interrupt":
        notice(f"stopped after {result.duration_s:.1f} s; kept everything recorded")
    if result.errors:
        notice(f"py-spy could not read a stack {result.errors} times (see 'profviz show {profile_id}' notes)")
    for note in result.notes:
        if "behind in sampling" in note:
            notice(note)
    if result.unknown_samples:
        notice(f"{result.unknown_samples} of {result.samples} samples have no thread state (UNKNOWN)")
    summary = {
        "profile_id": profile_id,
        "samples": result.samples,
        "errors": result.errors,
        "duration_s": round(result.duration_s, 3),
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"profile {profile_id}: {result.samples} samples over {result.duration_s:.1f} s, {result.errors} py-spy errors"
            f" (profviz show {profile_id})"
        )
    return profile_id


def _options(duration, rate, native, subprocesses, nonblocking, labels, kind) -> AttachOptions:
    return AttachOptions(rate_hz=rate, duration_s=duration, native=native, subprocesses=subprocesses,
                         nonblocking=nonblocking, labels={**origin_labels(), **dict(labels)}, kind=kind)


@click.command("attach")
@click.argument("pid", type=click.IntRange(min=1))
@collector_options
def attach_command(pid, duration, rate, native, subprocesses, nonblocking, labels, store_path, as_json, serve_ui, open_ui) -> None:
    """Profile a running Python process: every thread, wall clock, CPU / waiting / runnable.

    Runs py-spy on PID and reads each thread's state from /proc at the same rate. Stops after
    --duration, on Ctrl-C / SIGTERM, or when the process exits; what was recorded is kept.
    With --serve / --open the saved profile is then served in the browser UI until Ctrl-C.
    """
    store = open_store_for_recording(store_path)
    info = check_pyspy()
    progress = _ProgressLine(f"pid {pid}")
    with _StopSignals() as signals:
        try:
            result = collect(pid, _options(duration, rate, native, subprocesses, nonblocking, labels, "attach"),
                             stop=signals.event, on_progress=progress, pyspy=info)
        finally:
            progress.clear()
    profile_id = _save_and_report(store, result, "the target", as_json)
    _serve_if_asked(store, profile_id, serve_ui, open_ui)


@click.command("record", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@collector_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def record_command(duration, rate, native, subprocesses, nonblocking, labels, store_path, as_json, serve_ui, open_ui,
                   command) -> None:
    """Start a Python program and profile it like 'attach':  profviz record [OPTIONS] -- python app.py ARGS

    profviz exits with the program's exit code. With --duration the recording stops early and
    profviz then waits for the program to finish. With --serve / --open the saved profile is
    served in the browser UI as soon as the recording is saved, until Ctrl-C (which a program
    still running in the same terminal receives too); profviz then waits for the program.
    """
    store = open_store_for_recording(store_path)
    info = check_pyspy()
    what = f"'{' '.join(command)[:60]}'"
    try:
        child = subprocess.Popen(list(command))
    except OSError as exc:
        raise RecordError(f"cannot start {command[0]!r}: {exc.strerror}; check the command after '--'") from None
    progress = _ProgressLine(what)
    with _StopSignals() as signals:
        try:
            try:
                result = collect(child.pid, _options(duration, rate, native, subprocesses, nonblocking, labels, "record"),
                                 stop=signals.event, on_progress=progress, pyspy=info,
                                 target_alive=lambda: child.poll() is None)
            finally:
                progress.clear()
        except PySpyError as exc:
            code = child.poll()
            if code is not None and not signals.event.is_set():
                raise RecordError(
                    f"the program exited (code {code}) before py-spy could start sampling it; nothing was recorded"
                ) from None
            _end_child(child, signals.received or signal.SIGTERM)
            raise exc
        if signals.received == signal.SIGTERM and child.poll() is None:
            _end_child(child, signal.SIGTERM)
    profile_id = _save_and_report(store, result, "the program", as_json)
    _serve_if_asked(store, profile_id, serve_ui, open_ui)
    if child.poll() is None:
        notice(f"recording done; waiting for the program (pid {child.pid}) to exit")
    code = _wait_child(child)
    notice(f"the program exited with code {code}")
    sys.exit(code)


def _serve_if_asked(store: Store, profile_id: int, serve_ui: bool, open_ui: bool) -> None:
    """--serve / --open: serve the UI for the saved profile until Ctrl-C, as ``show`` does."""
    if serve_ui or open_ui:
        from .serve import serve_profile

        sys.stdout.flush()
        serve_profile(store, profile_id, open_browser=open_ui)


def _end_child(child: subprocess.Popen, signum: int) -> None:
    """Forward ``signum`` to the program and give it 5 s before killing it."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _wait_child(child: subprocess.Popen) -> int:
    """The program's exit code (128 + N for signal N), waiting for it; Ctrl-C is passed on to it."""
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:
            time.sleep(0.05)
    return code if code >= 0 else 128 - code


COMMANDS = (attach_command, record_command)
