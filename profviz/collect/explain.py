"""Query plans for the findings detectors: ``EXPLAIN QUERY PLAN`` on the SQLite file a span names,
read-only (never a write statement, never a database no span named, never for a span that came
from elsewhere over OTLP), with a time limit; and PostgreSQL's ``EXPLAIN`` (never ``ANALYZE``)
through the DSN the user gives, in a read-only transaction."""

from __future__ import annotations

import os
import sqlite3
import time
from urllib.parse import quote

from ..model import Span
from ..model.redact import redact_text
from ..model.statements import is_read_only, numbered_placeholders

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


class ExplainUnavailable(Exception):
    """The database given for plans cannot be reached; the message names it without its password."""


def postgres_explainer(dsn: str):
    """``explain(span, statement)`` for PostgreSQL spans through ``dsn`` (the database the user
    pointed to; a span naming another database, ``db.name``, is not explained): the generic plan
    of a read-only statement (``PREPARE`` with its placeholders, ``EXPLAIN EXECUTE`` under
    ``plan_cache_mode = force_generic_plan``), in a read-only transaction with a 1 s statement
    timeout, rolled back. Raises ExplainUnavailable when the database cannot be reached."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        wanted = conninfo_to_dict(dsn).get("dbname")
        connection = psycopg.connect(dsn, connect_timeout=5)
    except (psycopg.Error, ValueError) as exc:
        reason = " ".join(redact_text(str(exc)).split())  # one line: psycopg's messages span several
        raise ExplainUnavailable(f"cannot connect to {redact_text(dsn)} for query plans: {reason}") from None
    connection.read_only = True
    cache: dict[str, str | None] = {}

    def explain(span: Span, statement: str) -> str | None:
        system = str(span.attributes.get("db.system", "")).lower()
        if system not in ("postgresql", "postgres") or not is_read_only(statement):
            return None
        name = span.attributes.get("db.name")
        if wanted and isinstance(name, str) and name and name != wanted:
            return None
        if statement not in cache:
            cache[statement] = _postgres_plan(connection, statement)
        return cache[statement]

    explain.close = connection.close  # type: ignore[attr-defined]
    return explain


def _postgres_plan(connection, statement: str) -> str | None:
    import psycopg

    text, count = numbered_placeholders(statement)
    try:
        with connection.transaction(force_rollback=True):
            connection.execute("SET LOCAL statement_timeout = 1000")
            connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            connection.execute(f"PREPARE profviz_plan AS {text}")
            arguments = f"({', '.join(['NULL'] * count)})" if count else ""
            rows = connection.execute(f"EXPLAIN EXECUTE profviz_plan{arguments}").fetchall()
            connection.execute("DEALLOCATE profviz_plan")
    except psycopg.Error:
        return None
    return "\n".join(str(row[0]) for row in rows)


def explainers(*explain):
    """One ``explain`` that asks each given explainer in turn (None entries skipped)."""
    chosen = [e for e in explain if e is not None]

    def first(span: Span, statement: str) -> str | None:
        for one in chosen:
            plan = one(span, statement)
            if plan is not None:
                return plan
        return None

    return first
