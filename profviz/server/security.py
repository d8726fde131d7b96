"""Access control and response hardening for the profviz server.

* Non-loopback servers need a token on every request: ``Authorization: Bearer <t>``, the
  ``profviz_token`` cookie, or ``?token=<t>`` (which sets the cookie, HttpOnly and
  SameSite=Strict, and redirects page loads to the URL without it). Compared with
  :func:`hmac.compare_digest`.
* Loopback servers without a token only answer requests whose ``Host`` is a loopback name, so
  a web page cannot reach them through DNS rebinding.
* Every response carries a strict Content-Security-Policy, ``nosniff`` and ``no-referrer``;
  large responses are gzip-compressed when the client accepts it.
"""

from __future__ import annotations

import gzip
import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from flask import Flask, Response, redirect, request
from werkzeug.exceptions import Forbidden, Unauthorized

COOKIE_NAME = "profviz_token"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
GZIP_MIN_BYTES = 1024
GZIP_MAX_BYTES = 64 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _request_host_is_loopback() -> bool:
    host = request.host or ""
    if host.startswith("["):
        name = host[: host.find("]") + 1]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in LOOPBACK_NAMES or is_loopback(name)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _matches(candidate: str | None, token: str) -> bool:
    return candidate is not None and hmac.compare_digest(candidate.encode("utf-8", "surrogateescape"), token.encode())


def install_security(app: Flask, token: str | None) -> None:
    """Register the token check, Host check and response headers on ``app``."""

    @app.before_request
    def check_access():
        if token is None:
            if not _request_host_is_loopback():
                raise Forbidden(
                    f"unexpected Host header {request.host[:80]!r}: this server answers only on 127.0.0.1/localhost; "
                    "serve with --host and a --token to reach it from elsewhere"
                )
            return None
        query_token = request.args.get("token")
        if _matches(_bearer(), token) or _matches(request.cookies.get(COOKIE_NAME), token):
            request.environ["profviz.set_cookie"] = _matches(query_token, token)
        elif _matches(query_token, token):
            request.environ["profviz.set_cookie"] = True
        else:
            raise Unauthorized(
                "this profviz server needs its access token: open the URL printed by 'profviz serve' "
                "(it ends in ?token=...) or send 'Authorization: Bearer <token>'"
            )
        if request.environ["profviz.set_cookie"] and request.method == "GET" and not request.path.startswith("/api/"):
            rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
            target = request.path + ("?" + urlencode(rest) if rest else "")
            response = redirect(target, code=303)
            _set_cookie(response, token)
            return response
        return None

    @app.after_request
    def harden(response: Response) -> Response:
        if token is not None and request.environ.get("profviz.set_cookie"):
            _set_cookie(response, token)
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Cache-Control", "no-cache")
        if response.status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="profviz"'
        _maybe_gzip(response)
        return response


def _set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="Strict", path="/")


def _maybe_gzip(response: Response) -> None:
    if "gzip" not in request.headers.get("Accept-Encoding", "").lower() or response.status_code != 200:
        return
    if "Content-Encoding" in response.headers or response.is_streamed and not response.direct_passthrough:
        return
    length = response.calculate_content_length()
    if length is None or not GZIP_MIN_BYTES <= length <= GZIP_MAX_BYTES:
        return
    response.direct_passthrough = False
    data = response.get_data()
    compressed = gzip.compress(data, compresslevel=5)
    response.set_data(compressed)
    response.headers["Content-Encoding"] = "gzip"
    response.headers.add("Vary", "Accept-Encoding")
