"""A window of stored traffic for the findings detectors: requests, the profiles kept for some of
them, the spans recorded meanwhile; or one attach profile alone."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Sequence

from .profile import Profile
from .requests import RequestRow
from .span import Span
from .span_facts import SpanFacts, facts_from_spans

Explain = Callable[[Span, str], "str | None"]
"""``explain(span, statement)``: the query plan of a read-only statement a span ran, as text, or
None when it cannot be had (no database the user pointed to, a write statement, an error)."""


@dataclass
class Window:
    """What detectors look at. ``requests`` of a time window with the ``profiles`` stored for
    them (by profile id) and their statements and calls (``span_facts``, or ``spans`` to derive
    them from), and the event loop ``stalls`` recorded meanwhile (``loop_stall`` profiles by id);
    or an attach ``profile`` alone (no requests). ``explain`` is given by the caller when query
    plans may be looked up."""

    requests: Sequence[RequestRow] = ()
    profiles: dict[int, Profile] = field(default_factory=dict)
    spans: Sequence[Span] = ()
    profile: Profile | None = None
    stalls: dict[int, Profile] = field(default_factory=dict)
    explain: Explain | None = None
    span_facts: SpanFacts | None = None
    derived: dict[Hashable, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def facts(self) -> SpanFacts:
        """The statements and HTTP calls the detectors read: ``span_facts`` as the store gave them,
        else derived once from ``spans``."""
        if self.span_facts is None:
            self.span_facts = facts_from_spans(self.spans)
        return self.span_facts

    def once(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """What ``make()`` derives from this window, computed once (detectors share their groupings)."""
        if key not in self.derived:
            self.derived[key] = make()
        return self.derived[key]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (restored after): loading a window and running the
    detectors allocate hundreds of thousands of objects that form no cycles, and the collections
    those allocations trigger cost a third of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
