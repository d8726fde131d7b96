"""Where data came from: the ``service``, ``host``, ``version`` and ``env`` labels every request,
profile and span carries in a fleet, with the defaults OpenTelemetry users already set."""

from __future__ import annotations

import json
import os
import socket
from typing import Mapping
from urllib.parse import unquote

ORIGIN_KEYS = ("service", "host", "version", "env")
MAX_ORIGIN_CHARS = 200
RESOURCE_ORIGIN = ("service.name", "host.name", "service.version", "deployment.environment.name", "deployment.environment")
_RESOURCE_KEYS = {"service.name": "service", "host.name": "host", "service.version": "version",
                  "deployment.environment.name": "env", "deployment.environment": "env"}


def resource_attributes(text: str | None = None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,key=value``, values percent-encoded) as a dict."""
    text = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "") if text is None else text
    found = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            found[key.strip()] = unquote(value.strip())
    return found


def origin_labels(*, service: str | None = None, host: str | None = None, version: str | None = None,
                  env: str | None = None) -> dict[str, str]:
    """The origin labels: each one given, else from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
    (``service.name``, ``host.name``, ``service.version``, ``deployment.environment[.name]``); ``host``
    defaults to this machine's name. Labels without a value are left out."""
    found: dict[str, str] = {}
    for key, value in resource_attributes().items():
        if key in _RESOURCE_KEYS and value and _RESOURCE_KEYS[key] not in found:
            found[_RESOURCE_KEYS[key]] = value
    if os.environ.get("OTEL_SERVICE_NAME"):
        found["service"] = os.environ["OTEL_SERVICE_NAME"]
    found.setdefault("host", socket.gethostname())
    for key, value in (("service", service), ("host", host), ("version", version), ("env", env)):
        if value:
            found[key] = str(value)
    return {key: found[key][:MAX_ORIGIN_CHARS] for key in ORIGIN_KEYS if found.get(key)}


def bounded_origin(labels: dict) -> dict:
    """``labels`` with each origin label a string of at most :data:`MAX_ORIGIN_CHARS` (an empty or
    null one dropped), so every store and filter compares the same text; the same dict when nothing changes."""
    if all(type(labels.get(key)) is str and 0 < len(labels[key]) <= MAX_ORIGIN_CHARS for key in ORIGIN_KEYS if key in labels):
        return labels
    out = dict(labels)
    for key in ORIGIN_KEYS:
        if key in out:
            value = out[key]
            if value is None or value == "":
                del out[key]
            else:
                out[key] = (value if isinstance(value, str) else json.dumps(value))[:MAX_ORIGIN_CHARS]
    return out


def resource_origin(resource: Mapping) -> dict[str, str]:
    """The origin attributes of an OpenTelemetry resource (service, host, version, environment),
    which every span of it carries into the store."""
    return {key: resource[key] for key in RESOURCE_ORIGIN if isinstance(resource.get(key), str) and resource[key]}
