"""A window of stored traffic for the findings detectors: requests, the profiles kept for some of
them, the spans recorded meanwhile; or one attach profile alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .profile import Profile
from .requests import RequestRow
from .span import Span

Explain = Callable[[Span, str], "str | None"]
"""``explain(span, statement)``: the query plan of a read-only statement a span ran, as text, or
None when it cannot be had (no database the user pointed to, a write statement, an error)."""


@dataclass
class Window:
    """What detectors look at. ``requests`` of a time window with the ``profiles`` stored for
    them (by profile id) and the ``spans`` recorded in it; or an attach ``profile`` alone (no
    requests). ``explain`` is given by the caller when query plans may be looked up."""

    requests: Sequence[RequestRow] = ()
    profiles: dict[int, Profile] = field(default_factory=dict)
    spans: Sequence[Span] = ()
    profile: Profile | None = None
    explain: Explain | None = None
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """What ``make()`` derives from this window, computed once (detectors share their groupings)."""
        if key not in self.derived:
            self.derived[key] = make()
        return self.derived[key]
