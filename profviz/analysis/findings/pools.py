"""``pool_wait``: requests wait to check a connection out of a pool that is too small for the
threads that need it (psycopg_pool, SQLAlchemy's QueuePool), or held too long by others."""

from __future__ import annotations

from collections import Counter

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, frames_of, top_site, under
from .traffic import examples, sampled_routes

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


def _measure(profile) -> tuple[float, Counter, Counter]:
    spent, sites = _waiting_for_a_connection(profile)
    return spent, sites, Counter({_pool_name(profile): spent})


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
    for hit in sampled_routes(window, _measure, limits.pool_wait_min_ms * 1e6, limits.min_requests, limits.min_share):
        pool = hit.extra.most_common(1)[0][0]
        found.append(Finding(
            kind="pool_wait", route=hit.traffic.key,
            title=f"{hit.traffic.key} waits {hit.numbers.impact_ms:.0f} ms a request for a free connection from {pool}",
            evidence={"pool": pool, "call_site": call_site(top_site(hit.sites)), "examples": examples(hit.traffic, hit.cost)},
            fix=(f"Size {pool} to the threads that use it at once (max_size / pool_size at least the server's worker "
                 "threads, within the database's max_connections), and hold a connection only around its queries: "
                 "no remote calls, sleeps or long CPU work inside the connection block."),
            **hit.numbers.fields(),
        ))
    return found
