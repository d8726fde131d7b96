"""``full_scan`` and ``slow_query``: a statement slow on its own. With a query plan (the caller's
``Window.explain``) a plan that reads a whole table makes it a full scan, with the index to add."""

from __future__ import annotations

import re
import statistics

from ...model import Span
from ...model.statements import is_read_only, tables_of
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, site_during
from .traffic import enough, examples, figures, kept_profiles, key_groups, request_facts, span_ids_of, windows_of

_SQLITE_SCAN = re.compile(r"^\s*(?:--)?\s*SCAN (?:TABLE )?([\w.]+)(?! USING (?:COVERING )?INDEX)(?:\s+AS\s+\w+)?\s*$", re.MULTILINE)
_POSTGRES_SCAN = re.compile(r"Seq Scan on ([\w.\"]+)[^(]*\(cost=[\d.]+\.\.([\d.]+)")
SMALL_TABLE_COST = 1000.0  # a PostgreSQL Seq Scan estimated cheaper than this reads a small table: no finding
_ALIAS = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\s+(?:AS\s+)?(?!WHERE\b|ON\b|JOIN\b|ORDER\b|GROUP\b|LIMIT\b|LEFT\b|INNER\b)([A-Za-z_]\w*)", re.IGNORECASE)
_WHERE_COLUMNS = re.compile(r"([A-Za-z_][\w.]*)\s*(?:=|<|>|<=|>=|\bLIKE\b|\bIN\b|\bBETWEEN\b)", re.IGNORECASE)


@detector
def slow_queries(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.requests:
        return []
    measured = request_facts(window).measured(window)
    found = []
    for group in key_groups(window, "sql", min_mean_ns=limits.scan_min_ms * 1e6):
        traffic = group.traffic
        mean_ms = sum(group.cost.values()) / max(1, sum(group.count.values())) / 1e6
        if mean_ms < limits.scan_min_ms:
            continue
        route_measured = measured & set(traffic.duration_ns())
        numbers = figures(traffic, group.cost, route_measured)
        if not enough(traffic, numbers.requests, len(route_measured), limits.min_requests) or numbers.share < limits.min_share:
            continue
        key = window.facts.keys[group.key]
        statement = key.text
        plan = None
        if window.explain is not None and is_read_only(statement):
            attributes = {name: value for name, value in (("db.system", key.system), ("db.name", key.database)) if value}
            plan = window.explain(Span("0" * 31 + "1", "0" * 15 + "1", None, "", "client", "unset", 1, 1,
                                       attributes=attributes, source=key.source), statement)
        scanned = _scanned_tables(plan, statement) if plan and _filters_or_sorts(statement, plan) else []
        if not scanned and (mean_ms < limits.slow_query_ms or _median_bytes(traffic) >= limits.large_payload_bytes):
            continue  # a statement slow by the size of what it returns: large_payload's finding, with it as evidence
        found.append(_finding(window, group, numbers, mean_ms, plan, scanned))
    return found


def _median_bytes(traffic) -> float:
    return statistics.median(row.response_bytes for row in traffic.requests) if traffic.requests else 0


def _finding(window, group, numbers, mean_ms, plan, scanned) -> Finding:
    traffic, statement = group.traffic, window.facts.keys[group.key].text
    example = examples(traffic, group.cost, lambda request: span_ids_of(window, group.position[request], group.key))
    site = site_during(kept_profiles(window, traffic),
                       lambda request: windows_of(window, group.position[request], group.key) if request in group.position else [])
    tables = tables_of(statement)
    evidence = {
        "statement": statement, "mean_ms": round(mean_ms, 3), "executions": sum(group.count.values()),
        "tables": tables, "call_site": call_site(site), "examples": example, "plan": plan,
    }
    if scanned:
        table = scanned[0]
        columns = _filter_columns(statement, table)
        return Finding(
            kind="full_scan", route=traffic.key,
            title=f"{traffic.key} reads all of `{table}` for one query ({mean_ms:.0f} ms a query): no index fits its filter",
            evidence={**evidence, "scanned": scanned, "filter_columns": columns}, fix=_index_fix(table, columns, statement),
            **numbers.fields(),
        )
    return Finding(
        kind="slow_query", route=traffic.key, title=f"{traffic.key} waits {mean_ms:.0f} ms for one query on {', '.join(f'`{t}`' for t in tables) or 'the database'}",
        evidence=evidence,
        fix=("Look at its plan (EXPLAIN; profviz runs it when it can reach the database: SQLite files, or --explain-dsn for "
             "PostgreSQL): index the filtered and sorted columns, fetch fewer rows or columns, or cache the result."),
        **numbers.fields(),
    )


def _scanned_tables(plan: str, statement: str) -> list[str]:
    """Tables a plan reads whole (SQLite ``SCAN t`` without an index, PostgreSQL ``Seq Scan on
    t`` unless its estimated cost says the table is small), by their names in the statement
    (aliases resolved)."""
    aliases = {alias: table for table, alias in _ALIAS.findall(statement)}
    scanned = _SQLITE_SCAN.findall(plan) + [name.strip('"') for name, cost in _POSTGRES_SCAN.findall(plan)
                                            if float(cost) >= SMALL_TABLE_COST]
    return list(dict.fromkeys(aliases.get(name, name) for name in scanned))


def _filters_or_sorts(statement: str, plan: str) -> bool:
    """A scan is a missing index only where the query filters rows (WHERE) or sorts them without an
    index (a temporary B-tree, a Sort node); a plain read of a table in its own order is not."""
    return bool(re.search(r"\bWHERE\b", statement, re.IGNORECASE) or re.search(r"TEMP B-TREE|\bSort\b", plan))


def _filter_columns(statement: str, table: str) -> list[str]:
    where = re.split(r"\bWHERE\b", statement, maxsplit=1, flags=re.IGNORECASE)
    if len(where) < 2:
        return []
    clause = re.split(r"\b(?:ORDER BY|GROUP BY|LIMIT)\b", where[1], maxsplit=1, flags=re.IGNORECASE)[0]
    columns = [c.split(".")[-1] for c in _WHERE_COLUMNS.findall(clause)]
    return list(dict.fromkeys(c for c in columns if c.upper() not in ("AND", "OR", "NOT")))


def _index_fix(table: str, columns: list[str], statement: str) -> str:
    if not columns:
        return f"Add an index on `{table}` for the columns this query filters or sorts on, or stop reading the whole table."
    index = f"CREATE INDEX {table}_{'_'.join(columns)} ON {table} ({', '.join(columns)});"
    if re.search(r"\bLIKE\b", statement, re.IGNORECASE):
        return (f"{index} A prefix LIKE ('abc%') can use it; in SQLite declare the column (or the index) COLLATE NOCASE, "
                "as LIKE ignores case. A LIKE '%abc%' cannot use any index: use full-text search (SQLite FTS5, PostgreSQL pg_trgm).")
    return index
