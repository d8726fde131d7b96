"""What never reaches a store from a span: secrets (credentials in URLs and DSNs, auth headers,
cookies, API keys) and the literal values of SQL statements (which hold user data)."""

from __future__ import annotations

import re
from typing import Any

from .statements import normalise

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"authorization|cookie|password|passwd|secret|token|api[-_.]?key|credential", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^/:@\s]*):[^@/\s]*@")
_CONNINFO_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:[^=&#]*?(?:token|secret|password|passwd|api[-_.]?key|signature|sig))=)[^&#\s]*",
                           re.IGNORECASE)
_STATEMENT_KEYS = frozenset({"db.statement", "db.query.text"})


def redact_text(text: str) -> str:
    """``text`` with URL passwords, ``password=...`` of connection strings and secret query parameters hidden."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\g<head>:***@", text)
    if "=" in text:
        text = _CONNINFO_PASSWORD.sub(r"\g<head>***", text)
        text = _QUERY_SECRET.sub(r"\g<head>***", text)
    return text


def redact_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    """Span attributes as they may be stored: a secret-named attribute (an ``authorization`` or
    ``cookie`` header, a ``password``, a ``token``, an API key) as ``[redacted]``, credentials
    inside other text values hidden, SQL statements normalised (literals as ``?``)."""
    out = {}
    for key, value in (attributes or {}).items():
        name = str(key)
        if _SECRET_KEY.search(name):
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = normalise(value) if name in _STATEMENT_KEYS else redact_text(value)
        else:
            out[key] = value
    return out
