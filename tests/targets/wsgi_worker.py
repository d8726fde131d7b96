"""One worker process of a multi-process server: waitress + ProfilerMiddleware on one shared store.

Usage: python wsgi_worker.py STORE. Prints its port on stdout, serves until a line arrives on
stdin, then exits normally, so the middleware's atexit flush writes what is still queued.
"""

import sys
import threading

import waitress

from profviz.wsgi import ProfilerMiddleware
from tests.targets.wsgi_apps import make_app


def main() -> None:
    app = ProfilerMiddleware(make_app(), store=sys.argv[1], tail_threshold_ms=5, worker_threads=4)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    print(server.effective_port, flush=True)
    sys.stdin.readline()
    server.close()
    server.task_dispatcher.shutdown()
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
