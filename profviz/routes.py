"""Route names for plain WSGI apps: the request path with ids collapsed to placeholders.

Frameworks know their routes (Flask's ``url_rule.rule``, Django's resolver pattern); a bare WSGI
app does not, so :func:`collapse_path` turns ``/users/42/orders/5f0c...`` into
``/users/{int}/orders/{uuid}``. Each path segment is replaced when it is entirely:

* ``{int}``: decimal digits (``42``);
* ``{num}``: a signed or decimal number (``-3``, ``2.5``);
* ``{uuid}``: a UUID with dashes, any case (``123e4567-e89b-12d3-a456-426614174000``);
* ``{hash}``: 16 or more hex digits, or 8 or more with both digits and letters (``9f86d081``);
* ``{id}``: an opaque token of 16 or more letters, digits, ``-`` or ``_`` with at least one
  digit and one letter (base62/base64url ids).

Everything else (words, slugs, version names like ``v2``) stays, so route cardinality stays low
while distinct endpoints stay distinct. The query string is never part of a route.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

UNMATCHED_ROUTE = "(unmatched)"

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*\Z", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90``, ``30s``, ``15m``, ``2h``, ``1d``, ``500ms``; ValueError otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"cannot read duration {text!r}: use a number with a unit, like 30s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]

_INT = re.compile(r"\d+\Z")
_NUM = re.compile(r"[-+]?\d+(?:\.\d+)?\Z")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_HEX_LONG = re.compile(r"(?:[0-9a-f]{16,}|[0-9A-F]{16,})\Z")
_HEX_MIXED = re.compile(r"(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])(?:[0-9a-f]{8,}|[0-9A-F]{8,})\Z")
_TOKEN = re.compile(r"(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9_-]{16,}\Z")


def collapse_segment(segment: str) -> str:
    """One path segment, or its placeholder when it looks like an id (see the module docstring)."""
    if not segment:
        return segment
    if _INT.match(segment):
        return "{int}"
    if _NUM.match(segment):
        return "{num}"
    if _UUID.match(segment):
        return "{uuid}"
    if _HEX_LONG.match(segment) or _HEX_MIXED.match(segment):
        return "{hash}"
    if _TOKEN.match(segment):
        return "{id}"
    return segment


def collapse_path(path: str) -> str:
    """The route of a URL path: each id-like segment replaced by its placeholder; '' becomes '/'."""
    path = path.split("?", 1)[0] or "/"
    return "/".join(collapse_segment(segment) for segment in path.split("/"))


def request_path(environ: Mapping) -> str:
    """SCRIPT_NAME + PATH_INFO of a WSGI environ (the path the client asked for, without query)."""
    return (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "") or "/"


RouteFn = Callable[[Mapping], "str | None"]


def default_route(environ: Mapping) -> str:
    """The route of a plain WSGI request: :func:`collapse_path` of its path."""
    return collapse_path(request_path(environ))
