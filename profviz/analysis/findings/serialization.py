"""``serialization``: a route's CPU goes to encoding or decoding JSON, XML or pickle."""

from __future__ import annotations

import statistics

from ...model import Frame
from ...model.window import Window
from . import Finding, Thresholds, detector
from .stacks import call_site, computing_under, top_site
from .traffic import examples, profile_figures, sampled_routes

_CODEC_FILES = ("/json/encoder.py", "/json/decoder.py", "/json/__init__.py", "/pickle.py", "/xml/etree/ElementTree.py",
                "/xml/dom/minidom.py", "/simplejson/", "/orjson", "/ujson", "/marshmallow/", "/rest_framework/renderers.py")


def is_codec(frame: Frame) -> bool:
    """A frame of an encoder or decoder (the stdlib's json, pickle and xml, simplejson, orjson...)."""
    return any(marker in frame.file for marker in _CODEC_FILES) or frame.function in ("dumps", "loads", "json.dumps", "json.loads")


@detector
def serialization(window: Window, limits: Thresholds) -> list[Finding]:
    """Made once per window and thresholds (gil_contention asks too)."""
    return window.once(("serialization", limits), lambda: _serialization(window, limits))


def _serialization(window: Window, limits: Thresholds) -> list[Finding]:
    if window.profile is not None:
        spent, sites = computing_under(window.profile, is_codec)
        numbers = profile_figures(window.profile, spent, limits.serialization_min_ms * 1e6, limits.min_share)
        if numbers is None:
            return []
        return [Finding(
            kind="serialization", route=None, title=f"{100 * numbers.share:.0f}% of the profile's time is CPU encoding or decoding",
            **numbers.fields(),
            evidence={"call_site": call_site(top_site(sites))}, fix=_FIX,
        )]
    found = []
    for hit in sampled_routes(window, lambda profile: (*computing_under(profile, is_codec), None),
                              limits.serialization_min_ms * 1e6, limits.min_requests, limits.min_share):
        sizes = [row.response_bytes for row in hit.traffic.requests if row.id in hit.cost and row.response_bytes]
        size = statistics.median(sizes) if sizes else None
        found.append(Finding(
            kind="serialization", route=hit.traffic.key,
            title=f"{hit.traffic.key} spends {hit.numbers.impact_ms:.0f} ms of CPU a request encoding or decoding"
                  + (f" ({size / 1e6:.1f} MB responses)" if size and size >= 100_000 else ""),
            evidence={"call_site": call_site(top_site(hit.sites)), "response_bytes": size, "examples": examples(hit.traffic, hit.cost)},
            fix=_FIX, **hit.numbers.fields(),
        ))
    return found


_FIX = ("Encode less: paginate, return only the fields the client uses, or stream the response; then a faster "
        "encoder (orjson is several times quicker than json for the same output).")
