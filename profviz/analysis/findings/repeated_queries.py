"""``n_plus_one_query``: one request runs the same statement (parameters aside) again and again,
where one query for all the rows would do."""

from __future__ import annotations

import re
import statistics

from ...model.window import Window
from . import Finding, Thresholds, detector
from ...model.statements import normalise, tables_of
from .stacks import call_site, frameworks_in, site_during
from .traffic import enough, examples, figures, kept_profiles, routes_of, spans_by_request, statements_in


@detector
def repeated_queries(window: Window, limits: Thresholds) -> list[Finding]:
    found = []
    spans_of = spans_by_request(window)
    for traffic in routes_of(window).values():
        measured = {row.id for row in traffic.requests if row.id in spans_of}
        costs: dict[str, dict[int, float]] = {}
        counts: dict[str, dict[int, int]] = {}
        windows: dict[str, dict[int, list]] = {}
        for request in measured:
            groups: dict[str, list] = {}
            for statement, span in statements_in(spans_of[request]):
                groups.setdefault(normalise(statement), []).append(span)
            for statement, spans in groups.items():
                total = sum(s.duration_ns for s in spans)
                if len(spans) >= limits.repeat_min_count and total >= limits.repeat_min_total_ms * 1e6:
                    costs.setdefault(statement, {})[request] = total * (len(spans) - 1) / len(spans)
                    counts.setdefault(statement, {})[request] = len(spans)
                    windows.setdefault(statement, {})[request] = spans
        for statement, cost in costs.items():
            numbers = figures(traffic, cost, measured)
            if not enough(traffic, numbers.requests, len(measured), limits.min_requests) or numbers.share < limits.min_share:
                continue
            found.append(_finding(window, traffic, statement, cost, counts[statement], windows[statement], numbers))
    return found


def _finding(window, traffic, statement, cost, counts, spans_of_request, numbers) -> Finding:
    per_request = int(statistics.median(counts.values()))
    tables = tables_of(statement)
    kept = [(row, profile) for row, profile in kept_profiles(window, traffic) if row.id in spans_of_request]
    site = site_during(kept, spans_of_request)
    example = examples(traffic, cost, spans_of_request)
    table = f" on `{tables[0]}`" if tables else ""
    verb = statement.split(" ", 1)[0].upper()
    return Finding(
        kind="n_plus_one_query", route=traffic.key,
        title=f"{traffic.key} runs the same {verb}{table} {per_request} times per request",
        requests=numbers.requests, impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
        share=round(numbers.share, 3),
        evidence={
            "statement": statement, "count_per_request": per_request, "tables": tables,
            "call_site": call_site(site), "examples": example,
        },
        fix=_fix(frameworks_in(profile for _, profile in kept), tables, statement),
    )


def _fix(frameworks: set[str], tables: list[str], statement: str) -> str:
    rows = f"the `{tables[0]}` rows" if tables else "the rows"
    if re.search(r"\b(MAX|MIN|COUNT|SUM|AVG)\s*\(", statement, re.IGNORECASE):
        return "Compute it for all keys in one query: GROUP BY the column the repeated query filters on, and read the rows it returns."
    if "django" in frameworks:
        return f"Load {rows} with the query that lists them: select_related() for a foreign key, prefetch_related() for a reverse or many-to-many relation."
    if "sqlalchemy" in frameworks:
        return f"Load {rows} eagerly: selectinload() (or joinedload() for a many-to-one) on the query that lists them."
    return f"Fetch {rows} for all items at once: a JOIN in the query that lists them, or one WHERE id IN (...) query."
