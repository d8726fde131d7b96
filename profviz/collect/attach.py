"""``profviz attach``'s collector: py-spy and a /proc state reader run side by side on the target,
then their streams are joined into one profile (:mod:`.attach_profile`; the method: docs/attach.md).

A one-line progress callback reports while recording; a stop event (Ctrl-C, SIGTERM) ends it
cleanly and keeps everything; a target that exits mid-recording leaves a partial profile and a
note saying so.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

from ..formats.base import FormatError, parse_json
from ..formats.pyspy_chrometrace import parse_events
from ..model import Profile
from .attach_profile import build_profile, inference_note
from .procstate import ProcessGone, ProcStateReader
from .pyspy import (
    PySpyError,
    PySpyInfo,
    PySpyOptions,
    PySpyRun,
    TargetNotFound,
    TargetPermissionDenied,
    check_pyspy,
    permission_message,
)
from .states import StateLog

CHILD_SCAN_S = 0.5
PROGRESS_EVERY_S = 0.25
START_TIMEOUT_S = 30.0
READER_NICE = -10


class StateRecorder:
    """A daemon thread reading every thread of ``pid`` (and, optionally, of its child processes)
    ``rate_hz`` times a second into ``log`` (:class:`StateLog`)."""

    def __init__(self, reader: ProcStateReader, rate_hz: float, *, follow_children: bool = False):
        self.pid = reader.pid
        self.period_s = 1.0 / rate_hz
        self.follow_children = follow_children
        self.readers: dict[int, ProcStateReader] = {reader.pid: reader}
        self.log = StateLog()
        self.ticks = 0
        self.live_threads = 0
        self.gone = threading.Event()
        self.gone_after_ns: int | None = None
        self.cpu_ns = 0
        self.read_errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="profviz-state-reader", daemon=True)
        self._next_child_scan = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for reader in self.readers.values():
            reader.close()

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
        except OSError:
            pass
        cpu_started = time.thread_time_ns()
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self._tick()
                if self.gone.is_set():
                    break
                next_at += self.period_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -self.period_s:
                    next_at = time.monotonic()
        finally:
            self.cpu_ns = time.thread_time_ns() - cpu_started

    def _tick(self) -> None:
        self.log.tick_ns.append(time.time_ns())
        if self.follow_children and time.monotonic() >= self._next_child_scan:
            self._next_child_scan = time.monotonic() + CHILD_SCAN_S
            self._add_children()
        live = 0
        for pid, reader in list(self.readers.items()):
            try:
                readings = reader.read()
            except ProcessGone:
                reader.close()
                del self.readers[pid]
                if pid == self.pid:
                    self.gone_after_ns = self.log.last_ns
                    self.gone.set()
                continue
            except OSError as exc:
                if len(self.read_errors) < 5:
                    self.read_errors.append(f"reading /proc/{pid}: {exc}")
                continue
            with self._lock:
                self.log.add(pid, readings, reader.thread_names())
            live += len(readings)
        self.live_threads = live
        self.ticks += 1

    def _add_children(self) -> None:
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            if child.pid in self.readers:
                continue
            try:
                self.readers[child.pid] = ProcStateReader(child.pid)
            except (ProcessLookupError, PermissionError, OSError):
                continue


@dataclass
class AttachOptions:
    rate_hz: int = 100
    duration_s: float | None = None
    native: bool = False
    subprocesses: bool = False
    nonblocking: bool = False
    labels: dict = field(default_factory=dict)
    kind: str = "attach"


@dataclass
class Progress:
    elapsed_s: float
    estimated_samples: int
    live_threads: int
    pyspy_errors: int


@dataclass
class AttachResult:
    profile: Profile
    samples: int
    unknown_samples: int
    errors: int
    duration_s: float
    stopped_by: str  # "duration", "interrupt", "target-exit"
    target_exited_after_s: float | None
    notes: list[str]
    collector_cpu_s: float = 0.0
    pyspy_pid: int | None = None


def target_cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def open_target(pid: int) -> ProcStateReader:
    """A state reader on ``pid``; raises TargetNotFound / TargetPermissionDenied with a fix."""
    try:
        return ProcStateReader(pid)
    except ProcessLookupError:
        raise TargetNotFound(f"no process with pid {pid}: check the pid with 'ps'") from None
    except PermissionError as exc:
        raise TargetPermissionDenied(permission_message(pid, str(exc).split(";")[0])) from None


def collect(
    pid: int,
    options: AttachOptions,
    *,
    stop: threading.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    pyspy: PySpyInfo | None = None,
    target_alive: Callable[[], bool] | None = None,
) -> AttachResult:
    """Profile ``pid`` until ``options.duration_s`` passes, ``stop`` is set, or the target exits.

    Raises a PySpyError subclass (with a fix in its message) when py-spy cannot start; once
    sampling has begun everything collected is kept and returned.
    """
    stop = stop or threading.Event()
    info = pyspy or check_pyspy()
    reader = open_target(pid)
    cmdline = target_cmdline(pid)
    rate_hz = int(options.rate_hz)
    with tempfile.TemporaryDirectory(prefix="profviz-attach-") as scratch:
        output = os.path.join(scratch, "pyspy.json")
        run = PySpyRun(
            info, pid, output,
            PySpyOptions(rate_hz=rate_hz, native=options.native, subprocesses=options.subprocesses, nonblocking=options.nonblocking),
        )
        try:
            run.start()
            run.wait_until_sampling(START_TIMEOUT_S, stop)
        except BaseException:
            reader.close()
            run.kill()
            raise
        recorder = StateRecorder(reader, rate_hz, follow_children=options.subprocesses)
        recorder.start()
        started = time.monotonic()
        stopped_by = "duration"
        last_progress = 0.0
        try:
            while True:
                elapsed = time.monotonic() - started
                if stop.is_set():
                    stopped_by = "interrupt"
                    break
                if options.duration_s is not None and elapsed >= options.duration_s:
                    break
                if not run.running or recorder.gone.is_set() or (target_alive is not None and not target_alive()):
                    stopped_by = "target-exit"
                    break
                if on_progress is not None and elapsed - last_progress >= PROGRESS_EVERY_S:
                    last_progress = elapsed
                    on_progress(Progress(elapsed, recorder.ticks * max(recorder.live_threads, 1),
                                         recorder.live_threads, run.sample_error_count))
                stop.wait(0.02)
        finally:
            run.stop()
            result = run.wait()
            recorder.stop()
        if result.target_exited:
            stopped_by = "target-exit"
        if not result.wrote_output:
            tail = "; ".join(result.console[-3:]) or "no output"
            raise PySpyError(f"py-spy stopped without writing its samples (exit {result.returncode}: {tail}); nothing was saved")
        try:
            with open(output, "rb") as handle:
                trace = parse_events(parse_json(handle.read()))
        except FormatError as exc:
            raise PySpyError(f"py-spy wrote an unreadable trace ({exc}); nothing was saved") from None
    end_ns = None
    target_exited_after_s = None
    if stopped_by == "target-exit" and recorder.log.last_ns is not None:
        end_ns = recorder.log.last_ns + int(1e9 / rate_hz)
    errors = result.errors if result.errors is not None else run.sample_error_count
    meta = {
        "kind": options.kind,
        "pid": pid,
        "cmdline": cmdline,
        "rate_hz": float(rate_hz),
        "error_count": int(errors),
        "labels": dict(options.labels),
    }
    profile, stats = build_profile(trace, run.origin_ns, recorder.log, rate_hz, meta, end_ns=end_ns)
    first, end = profile.time_range_ns
    start_ns = run.sampling_ns or run.origin_ns
    if first:
        start_ns = min(start_ns, first)
    duration_ns = max(0, (end or start_ns) - start_ns)
    profile.meta["start_ns"] = start_ns
    profile.meta["duration_ns"] = duration_ns
    notes: list[str] = []
    if stopped_by == "target-exit":
        target_exited_after_s = duration_ns / 1e9
        notes.append(f"partial: the target exited after {target_exited_after_s:.1f} s")
    elif stopped_by == "interrupt":
        notes.append(f"stopped by a signal after {duration_ns / 1e9:.1f} s")
    if errors:
        detail = "; ".join(result.sample_errors[:3])
        notes.append(f"py-spy failed to read a stack {errors} times" + (f": {detail}" if detail else ""))
    notes.extend(result.behind)
    if stats.unknown_samples:
        share = 100.0 * stats.unknown_samples / max(stats.samples, 1)
        notes.append(f"{stats.unknown_samples} samples ({share:.1f}%) have no thread state reading (state UNKNOWN)")
    if stats.inferred_samples:
        notes.append(inference_note(stats))
    if stats.stale_names:
        notes.append(
            f"{stats.stale_names} threads reused the pthread id of a thread that had ended, and py-spy reported that"
            " thread's name for them (it caches names by pthread id); their names end in '(stale name?)'"
        )
    if stats.threads_without_states:
        notes.append("no /proc state for threads " + ", ".join(stats.threads_without_states[:5]))
    notes.extend(recorder.read_errors)
    profile.meta["notes"] = notes
    return AttachResult(
        profile=profile,
        samples=stats.samples,
        unknown_samples=stats.unknown_samples,
        errors=int(errors),
        duration_s=duration_ns / 1e9,
        stopped_by=stopped_by,
        target_exited_after_s=target_exited_after_s,
        notes=notes,
        collector_cpu_s=recorder.cpu_ns / 1e9,
        pyspy_pid=run.process.pid if run.process else None,
    )
