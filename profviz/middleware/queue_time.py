"""Time a request waited before the app began it, from the header a proxy stamps it with.

nginx (``proxy_set_header X-Request-Start "t=${msec}";``), HAProxy, Heroku's router and most
load balancers write the time they received the request as ``t=`` followed by epoch seconds
(with a fraction), milliseconds or microseconds, or the bare number. The unit is told by size.
"""

from __future__ import annotations

MAX_QUEUE_NS = 3_600 * 10**9  # an hour: a larger gap is a wrong clock or a forged header, not a queue
FUTURE_SKEW_NS = 10**9  # a stamp up to 1 s after the app's start is a clock a little ahead: no queue


def received_ns(value: str) -> int | None:
    """Epoch ns a queue-start header's value stands for (``t=1700000000.123``, ``t=1700000000123``,
    ``1700000000123456``...); None when it is not such a time."""
    text = value.strip()
    if text[:2] in ("t=", "T="):
        text = text[2:]
    if not text or len(text) > 24:
        return None
    try:
        number = float(text) if "." in text else int(text)
    except ValueError:
        return None
    if number <= 0:
        return None
    if number < 1e11:  # seconds (until the year 5138)
        return int(number * 1e9)
    if number < 1e14:  # milliseconds
        return int(number * 1e6)
    if number < 1e17:  # microseconds
        return int(number * 1e3)
    if number < 1e20:  # nanoseconds
        return int(number)
    return None


def queue_ns(value: str | None, start_ns: int) -> int | None:
    """ns between a proxy's stamp ``value`` and the app's start (epoch ns): clocks a little apart
    clamp to 0; None without a usable stamp or when the gap is beyond any queue (see MAX_QUEUE_NS)."""
    if not value:
        return None
    received = received_ns(value)
    if received is None:
        return None
    waited = start_ns - received
    if waited < -FUTURE_SKEW_NS or waited > MAX_QUEUE_NS:
        return None
    return max(0, waited)
