"""Query-parameter parsing for the API: every bad value becomes a 400 that names the parameter."""

from __future__ import annotations

import math
from typing import Mapping

from werkzeug.exceptions import BadRequest, NotFound

from ..analysis.calltree import SampleFilter
from ..model import STATE_NAMES
from ..model import Profile, State
from .context import profile_origin_ns

STATE_BY_NAME = {name: state for state, name in STATE_NAMES.items()}
MAX_ID = 2**63 - 1


def bad(name: str, message: str) -> BadRequest:
    return BadRequest(f"parameter {name}: {message}")


def int_param(args: Mapping[str, str], name: str, default: int | None, *, low: int | None = None, high: int | None = None) -> int | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(name, f"expected an integer, got {raw[:40]!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise bad(name, f"{value} is outside {low if low is not None else '-inf'}..{high if high is not None else 'inf'}")
    return value


MAX_LABEL_CHARS = 200


def origin_param() -> dict[str, str] | None:
    """The request's ``service``/``host``/``version``/``env`` parameters: the origin labels to keep (None: all)."""
    from flask import request

    from ..model.origin import ORIGIN_KEYS

    chosen = {}
    for key in ORIGIN_KEYS:
        value = request.args.get(key)
        if value:
            if len(value) > MAX_LABEL_CHARS:
                raise bad(key, f"at most {MAX_LABEL_CHARS} characters")
            chosen[key] = value
    return chosen or None


def float_param(args: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad(name, f"expected a number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise bad(name, f"{raw[:40]} is outside {low}..{high}")
    return value


def bool_param(args: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise bad(name, f"expected 0 or 1, got {raw[:40]!r}")


def choice_param(args: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = args.get(name) or default
    if raw not in choices:
        raise bad(name, f"expected one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw


def profile_id_param(raw: str | None, name: str = "id") -> int:
    """A profile id from a URL segment or query value; unparseable ids are 404 (no such profile)."""
    if raw is None or raw == "":
        raise bad(name, "a profile id is required")
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no profile with id {raw[:40]!r}: profile ids are integers (see GET /api/profiles)") from None
    if not 0 < value <= MAX_ID:
        raise NotFound(f"no profile with id {value}: see GET /api/profiles for the ids")
    return value


def threads_param(args: Mapping[str, str], name: str, profile: Profile) -> list[int] | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    threads = []
    for part in raw.split(","):
        part = part.strip()
        try:
            index = int(part)
        except ValueError:
            raise bad(name, f"expected comma-separated thread indices, got {part[:40]!r}") from None
        if not 0 <= index < len(profile.threads):
            raise bad(name, f"thread index {index} is outside 0..{len(profile.threads) - 1}")
        if index not in threads:
            threads.append(index)
    return threads


def states_param(args: Mapping[str, str], name: str) -> list[State] | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    states = []
    for part in raw.split(","):
        state = STATE_BY_NAME.get(part.strip().lower())
        if state is None:
            raise bad(name, f"unknown state {part[:40]!r}; expected a subset of {','.join(STATE_BY_NAME)}")
        if state not in states:
            states.append(state)
    return states


def sample_filter(args: Mapping[str, str], profile: Profile, prefix: str = "") -> tuple[SampleFilter, dict]:
    """The SampleFilter of ``<prefix>threads/start_ns/end_ns/states`` and its echo for the response.

    ``start_ns``/``end_ns`` are relative to the profile's origin (see docs/api.md).
    """
    origin = profile_origin_ns(profile)
    threads = threads_param(args, prefix + "threads", profile)
    start = int_param(args, prefix + "start_ns", None, low=-(2**62), high=2**62)
    end = int_param(args, prefix + "end_ns", None, low=-(2**62), high=2**62)
    if start is not None and end is not None and end <= start:
        raise bad(prefix + "end_ns", f"{end} must be greater than {prefix}start_ns {start}")
    states = states_param(args, prefix + "states")
    selection = SampleFilter(
        threads=threads,
        start_ns=None if start is None else origin + start,
        end_ns=None if end is None else origin + end,
        states=states,
    )
    echo = {
        "threads": threads,
        "start_ns": start,
        "end_ns": end,
        "states": None if states is None else [STATE_NAMES[s] for s in states],
    }
    return selection, echo
