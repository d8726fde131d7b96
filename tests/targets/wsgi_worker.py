"""One worker process of a multi-process server: waitress + ProfilerMiddleware on one shared store.

Usage: python wsgi_worker.py STORE. Prints its port on stdout, serves until a line arrives on
stdin, then exits normally, so the middleware's atexit flush writes what is still queued.
"""

import sys

from profviz.wsgi import ProfilerMiddleware
from profviz_shop.serving import waitress_in_thread
from tests.targets.wsgi_apps import make_app


def main() -> None:
    app = ProfilerMiddleware(make_app(), store=sys.argv[1], tail_threshold_ms=5, worker_threads=4)
    with waitress_in_thread(app, threads=4) as server:
        print(server.effective_port, flush=True)
        sys.stdin.readline()


if __name__ == "__main__":
    main()
