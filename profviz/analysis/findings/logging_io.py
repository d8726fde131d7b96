"""``sync_logging``: a logging call on the request thread blocks on a handler's network or disk I/O,
or on the handler's lock while another thread's record is being sent."""

from __future__ import annotations

from collections import Counter

from ...model import Frame, State
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, frames_of, top_site, under
from .traffic import examples, profile_figures, sampled_routes


def is_handler_call(frame: Frame) -> bool:
    """Where a logging call hands its record to the handlers (the stdlib's ``Logger.callHandlers``)."""
    return frame.function == "Logger.callHandlers" and frame.file.endswith("logging/__init__.py")


@detector
def sync_logging(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        spent, sites, handlers, reasons = _blocked_in_handlers(window.profile)
        numbers = profile_figures(window.profile, spent, limits.logging_min_ms * 1e6, limits.min_share)
        if numbers is None:
            return []
        handler = _handler_name(handlers)
        return [Finding(
            kind="sync_logging", route=None,
            title=f"{100 * numbers.share:.0f}% of the profile's time waits in logging: {handler} does its I/O on the calling thread",
            **numbers.fields(),
            evidence={"handler": handler, "waits": {r: round(ns / 1e6, 3) for r, ns in reasons.most_common(5)},
                      "call_site": call_site(top_site(sites))},
            fix=_fix(handler),
        )]
    found = []
    for hit in sampled_routes(window, _measure, limits.logging_min_ms * 1e6, limits.min_requests, limits.min_share):
        handlers = Counter({key[1]: ns for key, ns in hit.extra.items() if key[0] == "handler"})
        reasons = Counter({key[1]: ns for key, ns in hit.extra.items() if key[0] == "reason"})
        handler = _handler_name(handlers)
        found.append(Finding(
            kind="sync_logging", route=hit.traffic.key,
            title=f"{hit.traffic.key} waits {hit.numbers.impact_ms:.0f} ms a request for logging: {handler} does its I/O on the request thread",
            evidence={"handler": handler, "waits": {r: round(ns / 1e6, 3) for r, ns in reasons.most_common(5)},
                      "call_site": call_site(top_site(hit.sites)), "examples": examples(hit.traffic, hit.cost)},
            fix=_fix(handler), **hit.numbers.fields(),
        ))
    return found


def _measure(profile) -> tuple[float, Counter, Counter]:
    spent, sites, handlers, reasons = _blocked_in_handlers(profile)
    extra = Counter({("handler", h): ns for h, ns in handlers.items()})
    extra.update({("reason", r): ns for r, ns in reasons.items()})
    return spent, sites, extra

def _fix(handler: str) -> str:
    return ("Log through a queue: a logging.handlers.QueueHandler on the request path and a QueueListener thread "
            f"running {handler}, so a request only appends to a queue; or send logs in batches.")


def _blocked_in_handlers(profile) -> tuple[float, Counter, Counter, Counter]:
    """(waiting ns under Logger.callHandlers, by call site, by handler ``.emit`` / lock, by wait reason)."""
    if not profile.sample_count or not len(profile.stack_prefix):
        return 0.0, Counter(), Counter(), Counter()
    marks = under(profile, is_handler_call)
    columns = profile.columns()
    sites, handlers, reasons = Counter(), Counter(), Counter()
    total = 0.0
    handler_of = {}
    for stack, state, weight, reason in zip(columns["stack"].tolist(), columns["state"].tolist(),
                                            columns["weight_ns"].tolist(), columns["reason"].tolist()):
        if stack < 0 or state != int(State.WAITING) or not marks.matched[stack]:
            continue
        total += weight
        sites[int(marks.site[stack])] += weight
        if stack not in handler_of:
            handler_of[stack] = _handler_in(profile, stack)
        handlers[handler_of[stack]] += weight
        reasons[profile.strings[reason] if reason >= 0 else "unknown"] += weight
    return total, frames_of(profile, sites), handlers, reasons


def _handler_in(profile, stack: int) -> str | None:
    """The handler whose ``emit`` the stack is in (e.g. ``RemoteLogHandler.emit``), or None (a
    wait for a handler's lock, before its emit)."""
    node = stack
    while node >= 0:
        function = profile.frame(int(profile.stack_frame[node])).function
        if function.endswith(".emit"):
            return function
        node = int(profile.stack_prefix[node])
    return None


def _handler_name(handlers: Counter) -> str:
    """The handler that took the most time in its emit; its lock's waiters wait for it."""
    for handler, _ in handlers.most_common():
        if handler is not None:
            return handler.removesuffix(".emit")
    return "a logging handler"
