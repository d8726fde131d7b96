"""``connection_setup``: requests spend their time opening connections (TCP, authentication, TLS)
instead of reusing them, e.g. a new database connection per query."""

from __future__ import annotations

from collections import Counter

from ...model import Frame
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, time_under, top_site
from .traffic import enough, examples, figures, kept_profiles, profile_figures, routes_of

_CONNECT_FUNCTIONS = frozenset({"connect", "_connect", "create_connection", "connect_tcp", "_new_conn", "_connect_tls"})
_POOL_FILES = ("/psycopg_pool/", "/sqlalchemy/pool/", "/urllib3/connectionpool.py")


def is_connect(frame: Frame) -> bool:
    """A call that opens a connection (a driver's ``connect``, ``socket.create_connection``), not a pool's checkout."""
    return frame.function.rsplit(".", 1)[-1] in _CONNECT_FUNCTIONS and not any(p in frame.file for p in _POOL_FILES)


@detector
def connection_setup(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        spent, sites = time_under(window.profile, is_connect)
        numbers = profile_figures(window.profile, spent)
        if spent < limits.connect_min_ms * 1e6 or numbers.share < limits.min_share:
            return []
        return [Finding(
            kind="connection_setup", route=None,
            title=f"{100 * numbers.share:.0f}% of the profile's time goes to opening connections ({_outermost_connect(window.profile)})",
            requests=0, impact_ms=round(numbers.impact_ms, 3), tail_share=0.0, share=round(numbers.share, 3),
            evidence={"connect_call": _outermost_connect(window.profile), "call_site": call_site(top_site(sites))},
            fix=_FIX,
        )]
    found = []
    for traffic in routes_of(window).values():
        kept = kept_profiles(window, traffic)
        cost, sites, connectors = {}, Counter(), Counter()
        for row, profile in kept:
            spent, by_site = time_under(profile, is_connect)
            if spent >= limits.connect_min_ms * 1e6:
                cost[row.id] = spent
                sites.update(by_site)
                connectors[_outermost_connect(profile)] += spent
        measured = {row.id for row, _ in kept}
        numbers = figures(traffic, cost, measured)
        if not cost or not enough(traffic, numbers.requests, len(measured), limits.min_requests) or numbers.share < limits.min_share:
            continue
        example = examples(traffic, cost)
        connector = connectors.most_common(1)[0][0]
        found.append(Finding(
            kind="connection_setup", route=traffic.key,
            title=f"{traffic.key} spends {numbers.impact_ms:.0f} ms a request opening new connections ({connector})",
            requests=numbers.requests, impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
            share=round(numbers.share, 3),
            evidence={"connect_call": connector, "call_site": call_site(top_site(sites)), "examples": example},
            fix=_FIX,
        ))
    return found


_FIX = ("Open connections once and reuse them: a pool sized to the worker threads (psycopg_pool.ConnectionPool, "
        "SQLAlchemy's engine pool, Django's CONN_MAX_AGE), or one connection per thread; for HTTP, a requests.Session or httpx.Client.")


def _outermost_connect(profile) -> str:
    for frame_index in profile.stack_frame.tolist():
        frame = profile.frame(frame_index)
        if is_connect(frame):
            return frame.function
    return "connect"
