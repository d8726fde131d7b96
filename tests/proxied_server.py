"""A real gunicorn serving a WSGI app with a real nginx in front, on free 127.0.0.1 ports, for the
tests that need what a proxy adds (the X-Request-Start stamp) and what it logs (``$request_time``).

nginx runs from a config in a temporary directory (Debian's ``nginx``, which ``bash .ci/run``
installs); both are stopped, and the directory removed, on exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ACCESS_LOG_FORMAT = "$msec $request_time $status $uri"

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    log_format timed '{log_format}';
    server {{
        listen 127.0.0.1:{port};
        access_log {base}/access.log timed;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header X-Request-Start "t=${{msec}}";
        }}
    }}
}}
"""


@dataclass
class Proxied:
    url: str  # nginx's
    access_log: Path
    logged: str | None = None  # the access log, kept once nginx has stopped

    def request_times_ms(self, uri: str) -> list[float]:
        """``$request_time`` (ms) of every logged request of ``uri`` answered 200."""
        times = []
        text = self.logged if self.logged is not None else self.access_log.read_text()
        for line in text.splitlines():
            _, request_time, status, logged_uri = line.split(" ", 3)
            if logged_uri == uri and status == "200":
                times.append(float(request_time) * 1000)
        return times


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


@contextlib.contextmanager
def nginx_and_gunicorn(app: str, *, workers: int, threads: int, env: dict[str, str], cwd: Path) -> Iterator[Proxied]:
    """gunicorn (``gthread``, ``workers`` x ``threads``) serving ``app`` ("module:attribute"), nginx in
    front; yields nginx's URL and access log. gunicorn stops gracefully (SIGTERM) so profviz flushes."""
    if not os.path.exists(NGINX):
        raise RuntimeError("nginx is not installed: apt-get install nginx, or run the suite with bash .ci/run")
    base = Path(tempfile.mkdtemp(prefix="profviz-nginx-"))
    os.chmod(base, 0o755)  # nginx's workers run as nobody when the suite runs as root
    upstream, port = free_port(), free_port()
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
         "--bind", f"127.0.0.1:{upstream}", "--backlog", "256", "--graceful-timeout", "20", app],
        cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    nginx = proxied = None
    try:
        _wait_for_port(upstream, gunicorn, "gunicorn")
        (base / "nginx.conf").write_text(NGINX_CONF.format(base=base, port=port, upstream=upstream, log_format=ACCESS_LOG_FORMAT))
        nginx = subprocess.Popen([NGINX, "-e", str(base / "error.log"), "-p", str(base), "-c", str(base / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_for_port(port, nginx, "nginx")
        proxied = Proxied(f"http://127.0.0.1:{port}", base / "access.log")
        yield proxied
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)  # graceful: the access log is complete
            _stop(nginx)
            if proxied is not None and proxied.access_log.exists():
                proxied.logged = proxied.access_log.read_text()
        gunicorn.send_signal(signal.SIGTERM)
        _stop(gunicorn)
        shutil.rmtree(base, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
