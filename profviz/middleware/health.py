"""Failures inside profviz: counted, logged at a bounded rate, never seen by the request."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("profviz")


class Health:
    """Counts failures inside profviz and logs each kind at most once per ``interval_s``."""

    def __init__(self, interval_s: float = 60.0):
        self.interval_s = interval_s
        self.errors: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def report(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.errors[where] = self.errors.get(where, 0) + 1
            now = time.monotonic()
            last = self._last_logged.get(where)
            if last is not None and now - last < self.interval_s:
                self._suppressed[where] = self._suppressed.get(where, 0) + 1
                return
            self._last_logged[where] = now
            suppressed = self._suppressed.pop(where, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        logger.warning("profviz: %s failed: %s: %s%s; requests are served unchanged", where, type(exc).__name__, exc, more)

    def warn(self, what: str, message: str) -> bool:
        """Log ``message`` (after ``profviz: ``) at most once per ``interval_s`` for each ``what``;
        the ones held back are counted into the next. Whether it was logged."""
        with self._lock:
            now = time.monotonic()
            last = self._last_logged.get(what)
            if last is not None and now - last < self.interval_s:
                self._suppressed[what] = self._suppressed.get(what, 0) + 1
                return False
            self._last_logged[what] = now
            suppressed = self._suppressed.pop(what, 0)
        more = f" ({suppressed} more such reports since the last)" if suppressed else ""
        logger.warning("profviz: %s%s", message, more)
        return True

    @property
    def total(self) -> int:
        return sum(self.errors.values())
