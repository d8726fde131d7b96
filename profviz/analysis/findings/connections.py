"""``connection_setup``: requests spend their time opening connections (TCP, authentication, TLS)
instead of reusing them, e.g. a new database connection per query."""

from __future__ import annotations

from collections import Counter

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, time_under, top_site
from .traffic import examples, profile_figures, sampled_routes

_CONNECT_FUNCTIONS = frozenset({"connect", "_connect", "create_connection", "connect_tcp", "_new_conn", "_connect_tls"})
_POOL_FILES = ("/psycopg_pool/", "/sqlalchemy/pool/", "/urllib3/connectionpool.py")


def is_connect(frame: Frame) -> bool:
    """A call that opens a connection (a driver's ``connect``, ``socket.create_connection``), not a pool's checkout."""
    return frame.function.rsplit(".", 1)[-1] in _CONNECT_FUNCTIONS and not any(p in frame.file for p in _POOL_FILES)


@detector
def connection_setup(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        spent, sites = time_under(window.profile, is_connect)
        numbers = profile_figures(window.profile, spent, limits.connect_min_ms * 1e6, limits.min_share)
        if numbers is None:
            return []
        return [Finding(
            kind="connection_setup", route=None,
            title=f"{100 * numbers.share:.0f}% of the profile's time goes to opening connections ({_outermost_connect(window.profile)})",
            **numbers.fields(),
            evidence={"connect_call": _outermost_connect(window.profile), "call_site": call_site(top_site(sites))},
            fix=_FIX,
        )]
    found = []
    for hit in sampled_routes(window, _connecting, limits.connect_min_ms * 1e6, limits.min_requests, limits.min_share):
        connector = hit.extra.most_common(1)[0][0]
        found.append(Finding(
            kind="connection_setup", route=hit.traffic.key,
            title=f"{hit.traffic.key} spends {hit.numbers.impact_ms:.0f} ms a request opening new connections ({connector})",
            evidence={"connect_call": connector, "call_site": call_site(top_site(hit.sites)), "examples": examples(hit.traffic, hit.cost)},
            fix=_FIX, **hit.numbers.fields(),
        ))
    return found


def _connecting(profile) -> tuple[float, Counter, Counter]:
    """Time opening connections: computing or waiting under a connect call, not RUNNABLE (waiting
    for a CPU, or for an event loop another call held: that loop's event_loop_blocked finding)."""
    spent, sites = time_under(profile, is_connect, (State.ON_CPU, State.WAITING, State.GIL))
    return spent, sites, Counter({_outermost_connect(profile): spent})

_FIX = ("Open connections once and reuse them: a pool sized to the worker threads (psycopg_pool.ConnectionPool, "
        "SQLAlchemy's engine pool, Django's CONN_MAX_AGE), or one connection per thread; for HTTP, a requests.Session or httpx.Client.")


def _outermost_connect(profile) -> str:
    for frame_index in profile.stack_frame.tolist():
        frame = profile.frame(frame_index)
        if is_connect(frame):
            return frame.function
    return "connect"
