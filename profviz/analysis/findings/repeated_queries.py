"""``n_plus_one_query``: one request runs the same statement (parameters aside) again and again,
where one query for all the rows would do."""

from __future__ import annotations

import re
import statistics

from ...model.statements import tables_of
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, frameworks_in, site_during
from .traffic import KeyGroup, enough, examples, figures, kept_profiles, repeated_groups, request_facts, span_ids_of, windows_of


@detector
def repeated_queries(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None or not window.requests:
        return []
    measured = request_facts(window).measured(window)
    found = []
    for group in repeated_groups(window, "sql", limits.repeat_min_count, limits.repeat_min_total_ms * 1e6):
        route_measured = measured & set(group.traffic.duration_ns())
        numbers = figures(group.traffic, group.cost, route_measured)
        if not enough(group.traffic, numbers.requests, len(route_measured), limits.min_requests) or numbers.share < limits.min_share:
            continue
        found.append(_finding(window, group, numbers))
    return found


def _finding(window: Window, group: KeyGroup, numbers) -> Finding:
    statement = window.facts.keys[group.key].text
    traffic = group.traffic
    per_request = int(statistics.median(group.count.values()))
    tables = tables_of(statement)
    kept = [(row, profile) for row, profile in kept_profiles(window, traffic) if row.id in group.cost]
    site = site_during(kept, lambda request: windows_of(window, group.position[request], group.key) if request in group.position else [])
    example = examples(traffic, group.cost, lambda request: span_ids_of(window, group.position[request], group.key))
    table = f" on `{tables[0]}`" if tables else ""
    verb = statement.split(" ", 1)[0].upper()
    return Finding(
        kind="n_plus_one_query", route=traffic.key,
        title=f"{traffic.key} runs the same {verb}{table} {per_request} times per request",
        **numbers.fields(),
        evidence={"statement": statement, "count_per_request": per_request, "tables": tables,
                  "call_site": call_site(site), "examples": example},
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
