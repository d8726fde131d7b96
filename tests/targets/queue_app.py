"""A Flask app for the queue-time tests (tests/test_queue_time.py), served by gunicorn behind nginx.

``/slow`` sleeps 40 ms and ``/fast`` 5 ms, each with a little CPU. Stores into $QUEUE_APP_STORE
with ``worker_threads`` from $QUEUE_APP_THREADS, so utilisation has the server's real capacity.
"""

from __future__ import annotations

import hashlib
import os
import time

from flask import Flask

import profviz.flask

app = Flask(__name__)


def _work(sleep_s: float) -> str:
    time.sleep(sleep_s)
    return hashlib.sha256(b"x" * 20_000).hexdigest()


@app.get("/slow")
def slow() -> str:
    return _work(0.040)


@app.get("/fast")
def fast() -> str:
    return _work(0.005)


profviz.flask.init_app(app, store=os.environ["QUEUE_APP_STORE"], writer_interval_s=0.2,
                       worker_threads=int(os.environ.get("QUEUE_APP_THREADS", "2")))
