"""Capture a real ddtrace (Datadog's Python profiler) pprof file, as the Datadog agent would get it.

Run in a virtualenv with ddtrace installed: ``python capture.py OUT.pprof``. A stand-in agent on
127.0.0.1 takes ddtrace's multipart uploads; the first upload's ``profile.pprof`` (zstd, as
ddtrace writes it) is saved. The workload: a thread hashing (on CPU), one sleeping, two taking
turns on a lock.
"""

from __future__ import annotations

import email.parser
import http.server
import os
import subprocess
import sys
import threading

WORKLOAD = """
import hashlib, threading, time
lock = threading.Lock()
def until(seconds, step):
    end = time.time() + seconds
    while time.time() < end:
        step()
def locked():
    with lock:
        time.sleep(0.02)
work = {"hasher": lambda: hashlib.sha256(b"x" * 100000).hexdigest(), "sleeper": lambda: time.sleep(0.05),
        "locker-1": locked, "locker-2": locked}
threads = [threading.Thread(target=until, args=(6, step), name=name) for name, step in work.items()]
for thread in threads: thread.start()
for thread in threads: thread.join()
"""

uploads: list[tuple[str, bytes]] = []


class Agent(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        uploads.append((self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main(out: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "DD_TRACE_AGENT_URL": f"http://127.0.0.1:{server.server_port}", "DD_PROFILING_ENABLED": "true",
           "DD_PROFILING_UPLOAD_INTERVAL": "2", "DD_SERVICE": "profviz-fixture", "DD_ENV": "test", "DD_VERSION": "1.0",
           "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false", "DD_REMOTE_CONFIGURATION_ENABLED": "false"}
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ddtrace-run"), sys.executable, "-c", WORKLOAD], env=env, check=True, timeout=60)
    server.shutdown()
    for content_type, body in uploads:
        message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.walk():
            if part.get_filename() == "profile.pprof":
                with open(out, "wb") as file:
                    file.write(part.get_payload(decode=True))
                return
    raise SystemExit(f"no profile.pprof among {len(uploads)} uploads")


if __name__ == "__main__":
    main(sys.argv[1])
