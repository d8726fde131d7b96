"""Statements and client calls as findings see them: normalised SQL, read-only checks, URL templates."""

from __future__ import annotations

import pytest

from profviz.model import Span
from profviz.model.statements import client_call_of, is_read_only, normalise, statement_of, tables_of


@pytest.mark.parametrize("raw, normal", [
    ("SELECT name FROM authors WHERE id = 42", "SELECT name FROM authors WHERE id = ?"),
    ("SELECT name FROM authors WHERE id = %s", "SELECT name FROM authors WHERE id = ?"),
    ("SELECT name FROM authors WHERE id = $1", "SELECT name FROM authors WHERE id = ?"),
    ("select *\n  from t where name = 'O''Brien' and x = :x;", "select * from t where name = ? and x = ?"),
    ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?)"),
    ("SELECT * FROM t WHERE id IN (?,?,?,?)", "SELECT * FROM t WHERE id IN (?)"),
    ("SELECT * FROM t2 WHERE v = -1.5", "SELECT * FROM t2 WHERE v = ?"),
])
def test_the_same_query_with_other_parameters_normalises_the_same(raw, normal):
    assert normalise(raw) == normal


@pytest.mark.parametrize("sql, read_only", [
    ("SELECT 1", True), ("  with x as (select 1) select * from x", True),
    ("SELECT 1; DROP TABLE t", False), ("DELETE FROM t", False), ("UPDATE t SET a = 1", False),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", False), ("PRAGMA table_info(t)", False),
    ("ATTACH DATABASE 'x' AS y", False),
])
def test_only_plain_reads_are_read_only(sql, read_only):
    assert is_read_only(sql) is read_only


def span(kind="client", **attributes) -> Span:
    return Span("ab" * 16, "cd" * 8, None, "s", kind, "ok", 1, 2, attributes=attributes)


def test_statements_tables_and_client_calls():
    assert statement_of(span(**{"db.statement": "SELECT 1"})) == "SELECT 1"
    assert statement_of(span(**{"db.query.text": "SELECT 2"})) == "SELECT 2"
    assert statement_of(span(**{"http.url": "http://x"})) is None
    assert tables_of("SELECT * FROM posts AS p JOIN authors a ON a.id = p.author_id") == ["posts", "authors"]
    assert client_call_of(span(**{"http.method": "get", "http.url": "http://h:1/items/42/parts/9f86d081884c7d65?x=1"})) == (
        "GET", "h:1/items/{id}/parts/{id}")
    assert client_call_of(span(**{"http.request.method": "POST", "url.full": "https://api/v1/log"})) == ("POST", "api/v1/log")
    assert client_call_of(span(kind="server", **{"http.method": "GET", "http.url": "http://h/x"})) is None
