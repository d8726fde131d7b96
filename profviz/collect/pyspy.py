"""Running py-spy as a subprocess: finding it, checking its version, launching ``py-spy record``
with chrometrace output, watching its console lines, stopping it cleanly, and turning its
failures into one-line errors that say what to do.

Which py-spy: ``$PROFVIZ_PYSPY`` if set, else the ``py-spy`` installed next to the running Python
(profviz depends on it, so pip puts it there), else ``py-spy`` on ``PATH``. The interpreter's own
copy comes before ``PATH`` because a wrapper on ``PATH`` (a pyenv shim, for instance) adds a few
ms of start-up that would shift the time alignment below.

Time alignment: py-spy's ``ts`` counts µs from the moment it creates its trace writer, which it
does first thing in ``record`` (before attaching). :attr:`PySpyRun.origin_ns` is the epoch time
right after ``Popen`` returns, i.e. right after the ``exec`` of py-spy succeeded; py-spy's own
start-up up to its trace writer (argument parsing) comes on top. Measured on a 2-core box with
py-spy 0.4.3 against a target that logs its own stack changes: detected changes lag the true ones
by the expected sampling delay, with the earliest ones 0-1.5 ms early, so the origin is accurate to
about 1-2 ms (through a pyenv shim, about 4 ms). The time py-spy prints "Sampling process" bounds
the origin from above; :attr:`PySpyRun.sampling_ns` keeps it.

Stopping: py-spy runs in its own session (so a terminal's Ctrl-C does not reach it behind our
back) with a parent-death signal of SIGINT (so it stops if profviz is killed). :meth:`PySpyRun.stop`
sends SIGINT, on which py-spy stops sampling and writes its file.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field

from ..errors import ProfvizError

MIN_VERSION = (0, 3, 14)
PYSPY_ENV = "PROFVIZ_PYSPY"
MAX_KEPT_MESSAGES = 5
PYSPY_NICE = -10

_PR_SET_PDEATHSIG = 1
_VERSION = re.compile(r"py-spy (\d+)\.(\d+)\.(\d+)")
_SAMPLING = "Sampling process"
_FINAL = re.compile(r"Wrote chrome trace to '.*'\. Samples: (\d+) Errors: (\d+)")
_BEHIND = re.compile(r"([\d.]+\s*\w+) behind in sampling")
_SAMPLE_ERROR = re.compile(r"Failed to get stack trace from (\d+): (.*)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class PySpyError(ProfvizError):
    """py-spy could not be run or could not profile the target; the message says what to do."""


class PySpyMissing(PySpyError):
    """py-spy is not installed (or not where it was said to be) or is too old."""


class TargetNotFound(PySpyError):
    """The target pid does not exist (or exited before sampling began)."""


class NotPython(PySpyError):
    """The target is not a Python process py-spy can read."""


class TargetPermissionDenied(PySpyError):
    """The kernel refused to let us read the target's memory or /proc entries."""


class UnsupportedPython(PySpyError):
    """py-spy found Python but does not support its version."""


def permission_message(pid: int, detail: str) -> str:
    return (
        f"not allowed to profile process {pid} ({detail}): run profviz as the target's user or as root; "
        "in a container add --cap-add SYS_PTRACE; check that /proc/sys/kernel/yama/ptrace_scope is 0 (or run as root)"
    )


@dataclass(frozen=True)
class PySpyInfo:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def find_pyspy() -> str:
    """Path of the py-spy to run (see the module docstring). Raises PySpyMissing."""
    explicit = os.environ.get(PYSPY_ENV)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise PySpyMissing(f"${PYSPY_ENV} is {explicit!r}, which is not an executable file: fix it or unset it")
    beside = os.path.join(sysconfig.get_path("scripts"), "py-spy")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("py-spy")
    if found:
        return found
    raise PySpyMissing(
        "py-spy was not found (not beside this Python and not on PATH): install it with "
        f"'{sys.executable} -m pip install \"py-spy>={'.'.join(map(str, MIN_VERSION))}\"', or set ${PYSPY_ENV} to its path"
    )


def check_pyspy(path: str | None = None) -> PySpyInfo:
    """Find py-spy and check ``py-spy --version`` >= MIN_VERSION. Raises PySpyMissing."""
    path = path or find_pyspy()
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PySpyMissing(f"cannot run {path} --version ({exc}): reinstall py-spy or set ${PYSPY_ENV}") from None
    match = _VERSION.search(result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise PySpyMissing(
            f"{path} --version did not print a py-spy version (exit {result.returncode}): reinstall py-spy"
            f" (>= {'.'.join(map(str, MIN_VERSION))}) or set ${PYSPY_ENV}"
        )
    version = tuple(int(part) for part in match.groups())
    if version < MIN_VERSION:
        raise PySpyMissing(
            f"py-spy {'.'.join(map(str, version))} at {path} is too old; profviz needs >= {'.'.join(map(str, MIN_VERSION))}"
            f" (chrometrace output with native thread ids): upgrade with '{sys.executable} -m pip install -U py-spy'"
        )
    return PySpyInfo(path, version)  # type: ignore[arg-type]


@dataclass
class PySpyOptions:
    rate_hz: int = 100
    native: bool = False
    subprocesses: bool = False
    nonblocking: bool = False


def record_command(exe: str, pid: int, output: str, options: PySpyOptions) -> list[str]:
    """The py-spy command line: wall clock (--idle), every thread (--threads), chrometrace, no duration."""
    command = [
        exe, "record", "--pid", str(pid), "--idle", "--threads", "--format", "chrometrace",
        "--output", output, "--rate", str(int(options.rate_hz)),
    ]
    if options.native:
        command.append("--native")
    if options.subprocesses:
        command.append("--subprocesses")
    if options.nonblocking:
        command.append("--nonblocking")
    return command


def _prepare_child() -> None:
    """In the forked child before exec: SIGINT when profviz dies; a higher priority when permitted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PYSPY_NICE)
    except OSError:
        pass


@dataclass
class PySpyResult:
    """What py-spy reported. ``samples``/``errors`` come from its final line (None if it never wrote one)."""

    returncode: int | None
    samples: int | None
    errors: int | None
    sample_errors: list[str]
    behind: list[str]
    target_exited: bool
    wrote_output: bool
    console: list[str] = field(default_factory=list)


class PySpyRun:
    """One ``py-spy record`` subprocess. Use :meth:`start`, :meth:`wait_until_sampling`, :meth:`stop`, :meth:`wait`."""

    def __init__(self, info: PySpyInfo, pid: int, output: str, options: PySpyOptions):
        self.info = info
        self.pid = pid
        self.output = output
        self.options = options
        self.command = record_command(info.path, pid, output, options)
        self.process: subprocess.Popen | None = None
        self.launched_before_ns = 0
        self.origin_ns = 0
        self.sampling_ns: int | None = None
        self._sampling = threading.Event()
        self._lock = threading.Lock()
        self._console: list[str] = []
        self._sample_errors: list[str] = []
        self._sample_error_count = 0
        self._behind: list[str] = []
        self._final: tuple[int, int] | None = None
        self._target_exited = False
        self._readers: list[threading.Thread] = []

    def start(self) -> None:
        env = dict(os.environ)
        env["RUST_LOG"] = "py_spy=warn"
        env.pop("RUST_BACKTRACE", None)
        self.launched_before_ns = time.time_ns()
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                preexec_fn=_prepare_child,
            )
        except OSError as exc:
            raise PySpyMissing(f"cannot start {self.info.path} ({exc.strerror}): reinstall py-spy or set ${PYSPY_ENV}") from None
        self.origin_ns = time.time_ns()
        for stream in (self.process.stdout, self.process.stderr):
            reader = threading.Thread(target=self._read_lines, args=(stream,), name="profviz-pyspy-output", daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read_lines(self, stream) -> None:
        for raw in stream:
            line = _ANSI.sub("", raw.decode("utf-8", "replace")).strip()
            if line.startswith("py-spy> "):
                line = line[len("py-spy> "):]
            if not line:
                continue
            with self._lock:
                self._note_line(line)

    def _note_line(self, line: str) -> None:
        if _SAMPLING in line and self.sampling_ns is None:
            self.sampling_ns = time.time_ns()
            self._sampling.set()
            return
        final = _FINAL.search(line)
        if final:
            self._final = (int(final.group(1)), int(final.group(2)))
            return
        if "Stopped sampling because process exited" in line or "process ended" in line:
            self._target_exited = True
            return
        behind = _BEHIND.search(line)
        if behind:
            if len(self._behind) < MAX_KEPT_MESSAGES:
                self._behind.append(f"py-spy fell {behind.group(1)} behind in sampling; try a lower --rate")
            return
        sample_error = _SAMPLE_ERROR.search(line)
        if sample_error:
            self._sample_error_count += 1
            message = sample_error.group(2)
            if len(self._sample_errors) < MAX_KEPT_MESSAGES and message not in self._sample_errors:
                self._sample_errors.append(message)
            return
        if line.startswith(("Visit ", "Stopped sampling because Control-C")):
            return
        if len(self._console) < 200:
            self._console.append(line)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def sample_error_count(self) -> int:
        with self._lock:
            return self._sample_error_count

    def wait_until_sampling(self, timeout_s: float = 30.0, stop: threading.Event | None = None) -> None:
        """Block until py-spy says it is sampling. Raises the matching PySpyError if it exits first,
        or a PySpyError (after killing py-spy) on timeout or when ``stop`` is set."""
        deadline = time.monotonic() + timeout_s
        while not self._sampling.wait(0.02):
            if not self.running:
                self._join_readers()
                if self._sampling.is_set():
                    return
                raise self.failure()
            if stop is not None and stop.is_set():
                self.kill()
                raise PySpyError("interrupted before py-spy began sampling; nothing was recorded")
            if time.monotonic() > deadline:
                self.kill()
                raise PySpyError(
                    f"py-spy did not start sampling process {self.pid} within {timeout_s:.0f} s: "
                    "check that it is a responsive Python process, or try --nonblocking"
                )

    def stop(self) -> None:
        """Ask py-spy to stop and write its output (SIGINT)."""
        if self.running:
            try:
                self.process.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.running:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
            self.process.wait()

    def wait(self, timeout_s: float = 60.0) -> PySpyResult:
        """Wait for py-spy to exit (killing it after ``timeout_s``) and report what it said."""
        assert self.process is not None
        try:
            returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = self.process.returncode
        self._join_readers()
        with self._lock:
            return PySpyResult(
                returncode=returncode,
                samples=self._final[0] if self._final else None,
                errors=self._final[1] if self._final else None,
                sample_errors=list(self._sample_errors),
                behind=list(self._behind),
                target_exited=self._target_exited,
                wrote_output=self._final is not None and os.path.exists(self.output),
                console=list(self._console),
            )

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)

    def failure(self) -> PySpyError:
        """The error for a py-spy that exited without sampling, from what it printed."""
        with self._lock:
            text = "\n".join(self._console)
        return classify_failure(self.pid, text, self.process.returncode if self.process else None, self.info.version_text)


def classify_failure(pid: int, text: str, returncode: int | None, pyspy_version: str = "") -> PySpyError:
    """Map py-spy's console output on failure to a one-line PySpyError (the strings are py-spy 0.4's)."""
    lowered = text.lower()
    if "permission denied" in lowered or "operation not permitted" in lowered or "os error 13" in lowered or "os error 1)" in lowered:
        return TargetPermissionDenied(permission_message(pid, "py-spy: permission denied"))
    if "unsupported version of python" in lowered:
        detail = re.search(r"Unsupported version of Python: ?([^\n]*)", text, re.I)
        version = detail.group(1).strip() if detail and detail.group(1).strip() else "?"
        return UnsupportedPython(
            f"process {pid} runs Python {version}, which this py-spy{pyspy_version and ' ' + pyspy_version} does not support:"
            f" upgrade py-spy ('{sys.executable} -m pip install -U py-spy')"
        )
    if "no such file or directory (os error 2)" in lowered or "no such process" in lowered or "os error 3)" in lowered:
        return TargetNotFound(f"no process with pid {pid} (it does not exist or exited): check the pid with 'ps'")
    if "failed to find python version" in lowered or "no python processes found" in lowered or "failed to find a python interpreter" in lowered:
        return NotPython(
            f"process {pid} is not a Python process py-spy can read: pass the pid of the python process itself"
            " (for a launcher or shell that starts python as a child, add --subprocesses)"
        )
    last = next((line for line in reversed(text.splitlines()) if line.startswith(("Error:", "Caused by", "0:", "1:"))), "")
    last = last or (text.strip().splitlines() or ["no output"])[0]
    return PySpyError(f"py-spy failed on process {pid} (exit {returncode}): {last.strip()[:200]}")
