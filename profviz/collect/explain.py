"""Query plans for the findings detectors: ``EXPLAIN QUERY PLAN`` on the SQLite file a span names,
read-only (never a write statement, never a database no span named, never for a span that came
from elsewhere over OTLP), with a time limit."""

from __future__ import annotations

import os
import sqlite3
import time
from urllib.parse import quote

from ..model import Span

PLAN_TIME_LIMIT_S = 1.0


def sqlite_explainer():
    """``explain(span, statement)`` for :class:`~profviz.model.window.Window`: the plan of a
    read-only statement an SQLite span ran on a database file that exists here, else None.
    Plans are cached per (file, statement)."""
    cache: dict[tuple[str, str], str | None] = {}

    def explain(span: Span, statement: str) -> str | None:
        if span.source != "processor" or str(span.attributes.get("db.system", "")).lower() != "sqlite":
            return None  # only spans the app recorded here: an OTLP sender must not make profviz open local files
        path = span.attributes.get("db.name")
        if not isinstance(path, str) or not os.path.isfile(path):
            return None
        key = (os.path.realpath(path), statement)
        if key not in cache:
            cache[key] = _sqlite_plan(key[0], statement)
        return cache[key]

    return explain


def _sqlite_plan(path: str, statement: str) -> str | None:
    from ..model.statements import is_read_only

    if not is_read_only(statement):
        return None
    try:
        connection = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return None
    deadline = time.monotonic() + PLAN_TIME_LIMIT_S
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    try:
        connection.execute("PRAGMA query_only = ON")
        parameters = [None] * statement.count("?")
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return "\n".join(str(row[-1]) for row in rows)
