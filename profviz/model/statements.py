"""Database and HTTP client spans as detectors see them: the statement a span ran (normalised so
repeats with other parameters are the same statement), and the URL template a client call hit."""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from .span import Span
from .span_facts import SpanKey

_STATEMENT_KEYS = ("db.statement", "db.query.text")
_QUOTED = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`""")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_PLACEHOLDER = re.compile(r"(?:\?|%s|\$\d+|:\w+|%\(\w+\)s)")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_READ_ONLY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
_TABLE = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+[\"`]?([A-Za-z_][\w.]*)", re.IGNORECASE)
_ID_SEGMENT = re.compile(r"^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,})$", re.IGNORECASE)


def statement_of(span: Span) -> str | None:
    """The SQL a database span ran, or None for a span that is not a statement."""
    for key in _STATEMENT_KEYS:
        value = span.attributes.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


@functools.lru_cache(maxsize=65_536)
def normalise(statement: str) -> str:
    """``statement`` with literals and placeholders as ``?``, an ``IN`` list as ``IN (?)`` and
    whitespace collapsed: the same query with other parameters normalises the same."""
    identifiers: list[str] = []

    def literal_or_name(match: re.Match) -> str:  # 'text' is a literal; "name" and `name` are names, kept
        if match.group(0).startswith("'"):
            return "?"
        identifiers.append(match.group(0))
        return f"\0name{len(identifiers) - 1}\0"

    text = _QUOTED.sub(literal_or_name, statement.replace("\0", ""))
    text = _PLACEHOLDER.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub("IN (?)", text)
    text = _SPACE.sub(" ", text).strip().rstrip(";")
    return re.sub("\0name(\\d+)\0", lambda m: identifiers[int(m.group(1))], text)


def is_read_only(statement: str) -> bool:
    """A SELECT (or WITH ... SELECT) with no second statement: the only kind profviz ever explains."""
    body = statement.strip().rstrip(";")
    return bool(_READ_ONLY.match(body)) and ";" not in body and not re.search(
        r"\b(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|ATTACH|PRAGMA|VACUUM)\b", body, re.IGNORECASE)


def tables_of(statement: str) -> list[str]:
    """The table names a statement reads or writes, in order of appearance, once each."""
    return list(dict.fromkeys(_TABLE.findall(statement)))


def database_system(span: Span) -> str | None:
    value = span.attributes.get("db.system") or span.attributes.get("db.system.name")
    return str(value) if value else None


def client_call_of(span: Span) -> tuple[str, str] | None:
    """(method, ``host/path`` template with ids as ``{id}``) of an HTTP client span, else None."""
    if span.kind != "client":
        return None
    attributes = span.attributes
    method = attributes.get("http.request.method") or attributes.get("http.method")
    url = attributes.get("url.full") or attributes.get("http.url")
    if not method or not isinstance(url, str):
        return None
    return str(method).upper(), url_template(url)


@functools.lru_cache(maxsize=65_536)
def url_template(url: str) -> str:
    """``host/path`` of a URL with numeric, UUID and long hex path segments as ``{id}`` (query left out)."""
    parts = urlsplit(url)
    segments = ["{id}" if _ID_SEGMENT.match(segment) else segment for segment in parts.path.split("/")]
    return f"{parts.netloc}{'/'.join(segments) or '/'}"


def numbered_placeholders(statement: str) -> tuple[str, int]:
    """A normalised statement's ``?`` placeholders (outside quotes) as ``$1``, ``$2``... (the
    form PostgreSQL's PREPARE takes), and how many there are."""
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return re.sub(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\?""", number, statement), count


def key_of(kind: str, attributes: dict, source: str = "processor") -> SpanKey | None:
    """What a span ran, as the findings detectors group it (:class:`SpanKey`): its normalised
    statement, or for an HTTP client span ``METHOD host/path``; None for any other span."""
    for name in _STATEMENT_KEYS:
        value = attributes.get(name)
        if isinstance(value, str) and value.strip():
            system = attributes.get("db.system") or attributes.get("db.system.name")
            database = attributes.get("db.name") or attributes.get("db.namespace")
            return SpanKey("sql", normalise(value), str(system) if system else None, str(database) if database else None, source)
    if kind == "client":
        method = attributes.get("http.request.method") or attributes.get("http.method")
        url = attributes.get("url.full") or attributes.get("http.url")
        if method and isinstance(url, str):
            return SpanKey("http", f"{str(method).upper()} {url_template(url)}", None, None, source)
    return None
