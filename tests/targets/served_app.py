"""A WSGI app for the shutdown and store-fault tests (tests/test_shutdown.py, tests/test_batches.py),
profiled into $SERVED_APP_STORE (writer interval $SERVED_APP_WRITER_S, default 1 s; queue size
$SERVED_APP_QUEUE, default 10000).

``/work/<anything>`` sleeps 5 ms and answers its own path; ``/slow/<anything>`` likewise after 1 s. Run as ``served_app.py waitress`` or
``served_app.py wsgiref`` (``python app.py``: Python's own single-threaded server) it serves on a
free 127.0.0.1 port from the main thread and prints ``{"url": ...}``; gunicorn imports ``app``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from profviz.wsgi import ProfilerMiddleware


def work(environ, start_response):
    path = environ.get("PATH_INFO", "")
    time.sleep(1.0 if path.startswith("/slow/") else 0.005)
    body = path.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = ProfilerMiddleware(work, store=os.environ["SERVED_APP_STORE"],
                         writer_interval_s=float(os.environ.get("SERVED_APP_WRITER_S", "1.0")),
                         queue_size=int(os.environ.get("SERVED_APP_QUEUE", "10000")))

if __name__ == "__main__":
    if sys.argv[1] == "waitress":
        from waitress import create_server

        server = create_server(app, host="127.0.0.1", port=0, threads=4)
        print(json.dumps({"url": f"http://127.0.0.1:{server.effective_port}"}), flush=True)
        server.run()
    else:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
        print(json.dumps({"url": f"http://127.0.0.1:{server.server_port}"}), flush=True)
        server.serve_forever()
