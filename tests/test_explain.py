"""Query plans from SQLite files spans name: real EXPLAIN QUERY PLAN, read-only, never for writes."""

from __future__ import annotations

import os
import sqlite3

import pytest

from profviz.collect.explain import sqlite_explainer
from profviz.model import Span


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, tag TEXT)")
        connection.execute("CREATE INDEX posts_tag ON posts (tag)")
        connection.executemany("INSERT INTO posts (title, tag) VALUES (?, ?)", [(f"t{i}", f"g{i % 5}") for i in range(100)])
    connection.close()
    return str(path)


def db_span(path, system="sqlite") -> Span:
    return Span("ab" * 16, "cd" * 8, None, "SELECT", "client", "ok", 1, 2, attributes={"db.system": system, "db.name": path})


def test_an_unindexed_filter_scans_and_an_indexed_one_searches(database):
    explain = sqlite_explainer()
    assert "SCAN posts" in explain(db_span(database), "SELECT id FROM posts WHERE title = ?")
    indexed = explain(db_span(database), "SELECT id FROM posts WHERE tag = ?")
    assert indexed.startswith("SEARCH posts USING") and "INDEX posts_tag" in indexed


def test_nothing_is_run_for_writes_other_databases_or_missing_files(database, tmp_path):
    explain = sqlite_explainer()
    before = os.stat(database).st_mtime_ns
    assert explain(db_span(database), "DELETE FROM posts") is None
    assert explain(db_span(database), "SELECT 1; DELETE FROM posts") is None
    assert explain(db_span(database, system="postgresql"), "SELECT id FROM posts") is None
    assert explain(db_span(str(tmp_path / "missing.sqlite3")), "SELECT 1") is None
    received = db_span(database)
    received.source = "otlp"  # a span another host sent cannot make profviz open a file here
    assert explain(received, "SELECT id FROM posts WHERE title = ?") is None
    assert explain(db_span(database), "SELECT nope FROM nowhere") is None  # an error is no plan, not a crash
    assert not (tmp_path / "missing.sqlite3").exists() and os.stat(database).st_mtime_ns == before
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 100
