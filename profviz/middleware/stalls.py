"""The writer's side of event loop stalls (:class:`~profviz.collect.tasks.LoopStall`): each is
stored as a ``loop_stall`` profile (what the loop ran meanwhile, the request that ran it and
the requests it delayed, by route), once those requests have ended and their routes are known
(or after STALL_WAIT_S)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable

from ..collect.stack_table import samples_to_profile
from ..collect.tasks import LoopStall
from ..model import Profile
from .request import RequestInfo

STALL_WAIT_S = 60.0  # at most, for the requests of a stall to end before it is stored
DELAYED_IDS_KEPT = 100
MAX_PENDING = 1000


class StallBook:
    """Stalls waiting for their requests to end. ``route_of(info)`` names a request's route."""

    def __init__(self, table, rate_hz: float, labels: dict, route_of: Callable[[RequestInfo], str]):
        self.table = table
        self.rate_hz = rate_hz
        self.labels = labels
        self.route_of = route_of
        self.pending: list[tuple[float, LoopStall]] = []
        self.dropped = 0

    def add(self, stall: LoopStall) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append((time.monotonic(), stall))

    def due(self, force: bool = False) -> list[Profile]:
        """The profiles of the stalls whose requests have all ended (all of them when ``force``)."""
        now, ready, waiting = time.monotonic(), [], []
        for added, stall in self.pending:
            if force or now - added >= STALL_WAIT_S or _all_ended(stall):
                ready.append(stall)
            else:
                waiting.append((added, stall))
        self.pending = waiting
        return [self.profile(stall) for stall in ready]

    def profile(self, stall: LoopStall) -> Profile:
        """A ``loop_stall`` profile: meta ``start_ns``/``duration_ns``; labels ``route``/``method``/
        ``blocking_request_id`` of the request that ran (absent when none did), ``one_callback``, ``delayed_requests``,
        ``delayed_routes`` (route -> count) and ``delayed_request_ids`` (the first DELAYED_IDS_KEPT)."""
        blocker, delayed = stall.blocker, stall.delayed
        routes = Counter(f"{info.method} {self.route_of(info)}" for info in delayed)
        labels = {
            **self.labels, "capture": "loop_stall", "thread": stall.thread_name, "one_callback": stall.one_callback,
            "duration_ms": round(stall.duration_ns / 1e6, 3), "delayed_requests": len(delayed),
            "delayed_routes": dict(routes.most_common(50)),
            "delayed_request_ids": [info.id for info in delayed[:DELAYED_IDS_KEPT]],
        }
        if blocker is not None:
            labels.update(route=self.route_of(blocker), method=blocker.method, blocking_request_id=blocker.id)
        meta = {
            "kind": "loop_stall", "pid": RequestInfo.pid,
            "cmdline": f"event loop blocked {stall.duration_ns / 1e6:.0f} ms",
            "start_ns": stall.start_ns, "duration_ns": stall.duration_ns, "rate_hz": self.rate_hz, "labels": labels,
        }
        return samples_to_profile(self.table, stall.samples, pid=RequestInfo.pid, tid=stall.native_id,
                                  thread_name=stall.thread_name, meta=meta)


def _all_ended(stall: LoopStall) -> bool:
    return (stall.blocker is None or stall.blocker.finished) and all(info.finished for info in stall.delayed)
