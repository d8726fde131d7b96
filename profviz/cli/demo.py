"""``profviz demo``: the sample shop under bounded load, profiled every way profviz can, then the UI
(``--asgi``: the asyncio shop under uvicorn).

Steps: start ``python -m profviz_shop`` on 127.0.0.1 with profviz's middleware and OpenTelemetry
spans recording into the store; attach to it with ``profviz attach`` while a bounded mix of
requests (fast endpoints and the real bottlenecks: N+1 queries, an unindexed search, synchronous
remote logging, a big JSON export, a connection per query, one remote call per item) runs against
it; stop it so everything is flushed; print the route table; serve the UI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from ..errors import ProfvizError
from ..store import Store, default_store_path, open_store
from .common import notice, stop_on_signals

DEMO_MIX = {
    "/health": 14,
    "/posts": 10,
    "/posts/fast": 10,
    "/posts/4242": 6,
    "/search/slow?q=amber": 6,
    "/search/fast?q=amber": 6,
    "/checkout": 8,
    "/export": 4,
    "/report": 8,
    "/report/fast": 8,
    "/enrich": 8,
}
ASGI_MIX = {
    "/health": 10,
    "/posts": 10,
    "/posts/fast": 10,
    "/posts/4242": 6,
    "/enrich": 8,
    "/enrich/fast": 8,
    "/enrich/sync": 6,
    "/export": 4,
    "/export/fast": 4,
}
START_TIMEOUT_S = 180.0
WARMUP_REQUESTS = 20
LOAD_SECONDS = 120
DEMO_STORE_NAME = "demo.db"


class DemoError(ProfvizError):
    """The demo could not run; the message says which step failed."""


def _shop_available() -> None:
    try:
        import profviz_shop  # noqa: F401
    except ImportError:
        raise DemoError(
            "the sample shop (package 'profviz_shop') is not importable: reinstall profviz with pip install -e '.[dev]'"
        ) from None


def _asgi_available() -> None:
    missing = [name for name in ("uvicorn", "starlette", "httpx") if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoError(f"the asyncio shop needs {', '.join(missing)}: pip install 'profviz[asgi]'")


def _read_lines(stream, lines: "queue.Queue[str | None]") -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def start_shop(store: Store, *, rows: int | None = None, asgi: bool = False) -> tuple[subprocess.Popen, str]:
    """Start the profiled shop; return the process and its base URL (waits for the database build).

    The shop runs in its own session, so a Ctrl-C at the terminal reaches the demo only, which then
    stops the shop with :func:`stop_shop` after it has flushed what it recorded.
    """
    command = [sys.executable, "-m", "profviz_shop", "--port", "0", "--profviz-store", store.location]
    if asgi:
        command.append("--asgi")
    if rows is not None:
        command += ["--rows", str(rows)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        return process, _wait_until_serving(process)
    except BaseException:  # a failed start, or Ctrl-C while it builds: no shop is left behind
        process.kill()
        process.wait()
        process.stdout.close()
        raise


def _wait_until_serving(process: subprocess.Popen) -> str:
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line.startswith("database ready"):
            notice(line)
        if "shop serving on " in line:
            return line.split("shop serving on ", 1)[1].strip()
    tail = " | ".join(seen[-3:]) or "no output"
    raise DemoError(f"the sample shop did not start within {START_TIMEOUT_S:.0f} s ({tail}); run 'python -m profviz_shop' to see why")


def stop_shop(process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Stop the shop with SIGTERM (which it handles whatever the demo's own signal dispositions
    are) so its middleware flushes everything to the store."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            notice("the sample shop did not stop in time and was killed; some requests may be missing")
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, the shop too
            process.kill()
            process.wait()
            raise


def start_attach(store: Store, pid: int, duration_s: float) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "profviz", "attach", str(pid), "--duration", f"{duration_s:g}", "--json",
        "--store", store.location, "--label", "demo=shop",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_attach(process: subprocess.Popen, timeout_s: float) -> int | None:
    """The attach profile's id, or None with a notice when attaching failed (the demo goes on)."""
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # attach saves what it has on SIGINT
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    if process.returncode != 0:
        reason = (err.strip().splitlines() or ["no message"])[-1]
        notice(f"attaching to the shop failed, the demo goes on without an attach profile: {reason}")
        return None
    return json.loads(out.strip().splitlines()[-1])["profile_id"]


def demo_paths(count: int, asgi: bool = False) -> list[str]:
    from profviz_shop.loadgen import weighted_paths

    return weighted_paths(ASGI_MIX if asgi else DEMO_MIX, count, seed=1)


class Progress:
    """Prints ``sent N/total requests`` every tenth of the load, and at most every two seconds."""

    def __init__(self, total: int):
        self.total = total
        self.step = max(1, total // 10)
        self.last_print = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if done == self.total or done % self.step == 0 and now - self.last_print >= 2.0:
            self.last_print = now
            notice(f"sent {done}/{self.total} requests")


def run_demo(store: Store, *, requests: int, concurrency: int, attach: bool, rows: int | None = None,
             asgi: bool = False) -> dict:
    """Run the shop (the asyncio one with ``asgi``) under load with profviz watching. Returns what
    was recorded (ids and counts)."""
    from profviz_shop.loadgen import run_load

    _shop_available()
    if asgi:
        _asgi_available()
    shop, base_url = start_shop(store, rows=rows, asgi=asgi)
    attach_id = None
    try:
        notice(f"sample shop on {base_url} (pid {shop.pid}); sending {requests} requests, {concurrency} at a time"
               f" (at most {LOAD_SECONDS} s)")
        run_load(base_url, ["/health", "/posts/fast"], requests=WARMUP_REQUESTS, concurrency=2, max_seconds=30)
        attach_process = start_attach(store, shop.pid, duration_s=10.0) if attach else None
        result = run_load(base_url, demo_paths(requests, asgi), requests=requests, concurrency=concurrency,
                          max_seconds=LOAD_SECONDS, progress=Progress(requests))
        if attach_process is not None:
            attach_id = finish_attach(attach_process, timeout_s=60)
    finally:
        stop_shop(shop)
    failed = sum(1 for r in result.records if r.status is None or r.status >= 500)
    notice(f"sent {result.sent} requests in {result.elapsed_s:.1f} s ({failed} failed)")
    return {"base_url": base_url, "sent": result.sent, "failed": failed, "attach_profile_id": attach_id}


def demo_store_path() -> Path:
    """The demo's own store: ``demo.db`` in profviz's data directory (``$XDG_DATA_HOME/profviz``,
    ``~/.local/share/profviz``), whatever ``$PROFVIZ_STORE`` says; never the default store."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    path = Path(base) / "profviz" / DEMO_STORE_NAME
    default = default_store_path()
    if path.resolve() == default.resolve():
        return path.with_name("profviz-demo.db")
    return path


def fresh_demo_store(store_path: str | None) -> Store:
    """``store_path`` when given (added to, never emptied); else the demo's own store, emptied first
    so that what it shows is this run."""
    if store_path:
        return open_store(store_path)
    path = demo_store_path()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return open_store(path)


@click.command("demo")
@click.option("--store", "store_path", default=None,
              help="Store to record into (default: the demo's own store, emptied at each run, beside the default store).")
@click.option("--requests", "request_count", type=click.IntRange(50, 5000), default=600, show_default=True,
              help="Requests to send to the sample shop.")
@click.option("--concurrency", type=click.IntRange(1, 16), default=4, show_default=True, help="Concurrent clients.")
@click.option("--attach/--no-attach", default=True, show_default=True, help="Also attach py-spy to the shop during the load.")
@click.option("--serve/--no-serve", "serve_ui", default=True, show_default=True, help="Serve the UI afterwards.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="UI port (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print what was recorded as JSON (last stdout line).")
@click.option("--asgi", is_flag=True, help="The asyncio shop (Starlette under uvicorn, profviz's ASGI middleware) instead of the Flask one.")
@click.pass_context
def demo_command(ctx, store_path, request_count, concurrency, attach, serve_ui, port, open_browser, as_json, asgi) -> None:
    """Run the sample shop under bounded load with profviz watching, then serve the UI."""
    from .findings import print_top_findings
    from .routes import routes_command
    from .serve import serve

    stop_on_signals()  # Ctrl-C or SIGTERM stops the demo and its shop, even where SIGINT was inherited ignored
    store = fresh_demo_store(store_path)
    notice(f"recording into {store.location}; to look again later: profviz serve --store {store.location}")
    summary = run_demo(store, requests=request_count, concurrency=concurrency, attach=attach,
                       rows=int(os.environ["PROFVIZ_DEMO_ROWS"]) if os.environ.get("PROFVIZ_DEMO_ROWS") else None, asgi=asgi)
    ctx.invoke(routes_command, store_path=store.location, as_json=False, since=None)
    summary["findings"] = [{"route": f.route, "kind": f.kind, "title": f.title} for f in print_top_findings(store)]
    if as_json:
        click.echo(json.dumps(summary))
    if serve_ui:
        serve(store, port=port, open_path="/routes", open_browser=open_browser)


COMMANDS = (demo_command,)
