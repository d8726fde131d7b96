"""The SQL every backend shares (``?`` placeholders; a backend that uses others translates them):
reading requests and spans by window, and turning their rows into model objects and back."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

from ..model import REQUEST_FIELDS, RequestRow, Span
from ..model.origin import ORIGIN_KEYS
from .spans import bounded_name, bounded_thread_name, stored_attributes

REQUEST_COLUMNS = ("id", *REQUEST_FIELDS)
SPAN_COLUMNS = (
    "id", "trace_id", "span_id", "parent_id", "name", "kind", "status", "start_ns", "end_ns", "pid", "tid",
    "thread_name", "attributes", "approximate", "request_id", "source",
)


LabelSql = Callable[[str], tuple[str, Any]]


def sqlite_label(key: str) -> tuple[str, Any]:
    """SQLite's expression (and its parameter) for a request's label ``key``."""
    return "json_extract(labels, ?)", f'$."{key}"'


def request_where(since_ns: int | None, until_ns: int | None, route: str | None, method: str | None,
                  labels: Mapping[str, str] | None = None, label_sql: LabelSql = sqlite_label) -> tuple[list[str], list[Any]]:
    """The conditions (``?`` placeholders) and parameters of a request window; ``labels``: each of
    these labels has this value (``label_sql`` gives the backend's expression for a label)."""
    where: list[str] = []
    params: list[Any] = []
    for key, value in sorted((labels or {}).items()):
        if key not in ORIGIN_KEYS:
            raise ValueError(f"requests are filtered by {', '.join(ORIGIN_KEYS)}, not {key!r}")
        expression, param = label_sql(key)
        where.append(f"{expression} = ?")
        params.extend((param, str(value)))
    if since_ns is not None:
        where.append("start_ns >= ?")
        params.append(int(since_ns))
    if until_ns is not None:
        where.append("start_ns < ?")
        params.append(int(until_ns))
    if route is not None:
        where.append("route = ?")
        params.append(route)
    if method is not None:
        where.append("method = ?")
        params.append(method.upper())
    return where, params


def select_requests(*, since_ns: int | None = None, until_ns: int | None = None, route: str | None = None,
                    method: str | None = None, slowest: int | None = None, limit: int | None = None,
                    with_profile: bool = False, latency: str = "total", labels: Mapping[str, str] | None = None,
                    columns: str = ", ".join(REQUEST_COLUMNS), label_sql: LabelSql = sqlite_label) -> tuple[str, list[Any]]:
    """The query of :meth:`~profviz.store.base.Store.query_requests`."""
    where, params = request_where(since_ns, until_ns, route, method, labels, label_sql)
    if with_profile:
        where.append("profile_id IS NOT NULL")
    sql = f"SELECT {columns} FROM requests"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if slowest:
        order = "duration_ns + COALESCE(queue_ns, 0)" if latency == "total" else "duration_ns"
        return sql + f" ORDER BY {order} DESC, id LIMIT ?", params + [int(slowest)]
    if limit:
        return f"SELECT * FROM ({sql} ORDER BY start_ns DESC, id DESC LIMIT ?) AS newest ORDER BY start_ns, id", params + [int(limit)]
    return sql + " ORDER BY start_ns, id", params


def select_origins(since_ns: int | None, until_ns: int | None, label_sql: LabelSql = sqlite_label) -> tuple[str, list[Any]]:
    """The distinct (service, host, version, env) of a window's requests."""
    expressions, params = [], []
    for key in ORIGIN_KEYS:
        expression, param = label_sql(key)
        expressions.append(expression)
        params.append(param)
    where, window = request_where(since_ns, until_ns, None, None)
    return (f"SELECT DISTINCT {', '.join(expressions)} FROM requests" + (" WHERE " + " AND ".join(where) if where else ""),
            params + window)


def origins_of(rows: Iterable) -> dict[str, list[str]]:
    """Rows of :func:`select_origins` as each label's sorted values."""
    found: dict[str, set] = {key: set() for key in ORIGIN_KEYS}
    for row in rows:
        for key, value in zip(ORIGIN_KEYS, row):
            if value is not None and value != "":
                found[key].add(str(value))
    return {key: sorted(values) for key, values in found.items() if values}


def request_of(row: Mapping[str, Any]) -> RequestRow:
    """A stored request row (:data:`REQUEST_COLUMNS`, labels as JSON text) as a RequestRow."""
    data = dict(row)
    try:
        data["labels"] = json.loads(data.get("labels") or "{}")
    except ValueError:
        data["labels"] = {}
    return RequestRow(**data)


def span_values(spans: Iterable[Span], checked: bool) -> tuple[list[tuple], list[tuple[Span, dict]]]:
    """The stored values of ``spans`` (:data:`SPAN_COLUMNS` but ``id``), checked unless ``checked``
    and bounded; and each span with its stored attributes."""
    rows, stored = [], []
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for span in spans:
        if not checked:
            span.check()
        attributes = stored_attributes(span.attributes)
        stored.append((span, attributes))
        rows.append((
            span.trace_id, span.span_id, span.parent_id, bounded_name(span.name), span.kind, span.status,
            span.start_ns, span.end_ns, span.pid, span.tid, bounded_thread_name(span.thread_name),
            dumps(attributes), int(bool(span.approximate)), span.request_id, span.source,
        ))
    return rows, stored


def span_of(row: Mapping[str, Any]) -> Span:
    """A stored span row (:data:`SPAN_COLUMNS`) as a Span."""
    try:
        attributes = json.loads(row["attributes"] or "{}")
    except ValueError:
        attributes = {}
    return Span(
        trace_id=row["trace_id"], span_id=row["span_id"], parent_id=row["parent_id"], name=row["name"],
        kind=row["kind"], status=row["status"], start_ns=int(row["start_ns"]), end_ns=int(row["end_ns"]),
        pid=row["pid"], tid=row["tid"], thread_name=row["thread_name"],
        attributes=attributes if isinstance(attributes, dict) else {}, approximate=bool(row["approximate"]),
        request_id=row["request_id"], source=row["source"], id=int(row["id"]),
    )


def select_spans(*, pid: int | None = None, pids: Iterable[int] | None = None, include_unknown_pid: bool = False,
                 start_ns: int | None = None, end_ns: int | None = None, trace_id: str | None = None,
                 tids: Iterable[int] | None = None, limit: int = 100_000,
                 columns: str = ", ".join(SPAN_COLUMNS)) -> tuple[str, list[Any]]:
    """The query of :meth:`~profviz.store.base.Store.query_spans`."""
    where: list[str] = []
    params: list[Any] = []
    pid_list = ([] if pid is None else [int(pid)]) + ([] if pids is None else [int(p) for p in pids])
    if pid is not None or pids is not None:
        clause = f"pid IN ({', '.join('?' * len(pid_list))})" if pid_list else "1 = 0"
        where.append(f"({clause} OR pid IS NULL)" if include_unknown_pid else clause)
        params.extend(pid_list)
    if start_ns is not None:
        where.append("end_ns >= ?")
        params.append(int(start_ns))
    if end_ns is not None:
        where.append("start_ns < ?")
        params.append(int(end_ns))
    if trace_id is not None:
        where.append("trace_id = ?")
        params.append(str(trace_id).lower())
    if tids is not None:
        tid_list = [int(t) for t in tids]
        where.append(f"tid IN ({', '.join('?' * len(tid_list))})" if tid_list else "1 = 0")
        params.extend(tid_list)
    sql = f"SELECT {columns} FROM spans"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY start_ns, id LIMIT ?", params + [int(limit)]

