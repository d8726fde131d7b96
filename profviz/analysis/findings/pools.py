"""``pool_wait``: requests wait to check a connection out of a pool that is too small for the
threads that need it (psycopg_pool, SQLAlchemy's QueuePool), or held too long by others."""

from __future__ import annotations

from collections import Counter

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, frames_of, top_site, under
from .traffic import enough, examples, figures, kept_profiles, routes_of

_CHECKOUTS = (
    ("/psycopg_pool/", ("ConnectionPool.getconn", "ConnectionPool._getconn_unchecked", "ConnectionPool.connection",
                        "AsyncConnectionPool.getconn", "AsyncConnectionPool.connection")),
    ("/sqlalchemy/pool/", ("QueuePool._do_get", "_ConnectionRecord.checkout", "_ConnectionFairy._checkout", "Pool.connect")),
    ("/django/db/", ("BaseDatabaseWrapper.ensure_connection",)),
)


def is_checkout(frame: Frame) -> bool:
    """A pool's checkout call (where a request waits when the pool has no free connection)."""
    return any(marker in frame.file and frame.function in functions for marker, functions in _CHECKOUTS)


_WAIT_PRIMITIVES = ("Condition.wait", "Event.wait", "WaitingClient.wait", "Queue.get", "Semaphore.acquire")


def is_blocking_wait(frame: Frame) -> bool:
    """A frame that blocks until another thread hands something over (a condition, an event, a queue)."""
    return frame.function.endswith(_WAIT_PRIMITIVES)


def _waiting_for_a_connection(profile) -> tuple[float, Counter]:
    """(ns ``profile`` waited blocked inside a pool's checkout, by call site). A sample counts only
    where the checkout is blocked on a condition, event or queue: a thread that merely waits for
    the GIL somewhere inside the checkout's own code is not waiting for a connection."""
    if not profile.sample_count or not len(profile.stack_prefix):
        return 0.0, Counter()
    checkout, blocked = under(profile, is_checkout), under(profile, is_blocking_wait)
    columns = profile.columns()
    total, sites = 0.0, Counter()
    for stack, state, weight in zip(columns["stack"].tolist(), columns["state"].tolist(), columns["weight_ns"].tolist()):
        if stack >= 0 and state == int(State.WAITING) and checkout.matched[stack] and blocked.matched[stack]:
            total += weight
            sites[int(checkout.site[stack])] += weight
    return total, frames_of(profile, sites)


def _pool_name(profile) -> str:
    for frame_index in profile.stack_frame.tolist():
        frame = profile.frame(frame_index)
        if is_checkout(frame):
            return frame.function.split(".", 1)[0]
    return "the pool"


@detector
def pool_wait(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        return []
    found = []
    for traffic in routes_of(window).values():
        kept = kept_profiles(window, traffic)
        cost, sites, pools = {}, Counter(), Counter()
        for row, profile in kept:
            spent, by_site = _waiting_for_a_connection(profile)
            if spent >= limits.pool_wait_min_ms * 1e6:
                cost[row.id] = spent
                sites.update(by_site)
                pools[_pool_name(profile)] += spent
        measured = {row.id for row, _ in kept}
        numbers = figures(traffic, cost, measured)
        if not cost or not enough(traffic, numbers.requests, len(measured), limits.min_requests) or numbers.share < limits.min_share:
            continue
        pool = pools.most_common(1)[0][0]
        found.append(Finding(
            kind="pool_wait", route=traffic.key,
            title=f"{traffic.key} waits {numbers.impact_ms:.0f} ms a request for a free connection from {pool}",
            requests=numbers.requests, impact_ms=round(numbers.impact_ms, 3), tail_share=round(numbers.tail_share, 3),
            share=round(numbers.share, 3),
            evidence={"pool": pool, "call_site": call_site(top_site(sites)), "examples": examples(traffic, cost)},
            fix=(f"Size {pool} to the threads that use it at once (max_size / pool_size at least the server's worker "
                 "threads, within the database's max_connections), and hold a connection only around its queries: "
                 "no remote calls, sleeps or long CPU work inside the connection block."),
        ))
    return found
