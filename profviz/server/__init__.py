"""The profviz web server: a Flask app factory serving the JSON API (docs/api.md) and the UI in web/.

Blueprints are registered from :func:`blueprints`, one small list; a feature adds its own
blueprint module there. Blueprints get the store and caches through
:func:`profviz.server.context.server_context`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Blueprint, Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, ServiceUnavailable

from ..analysis.flamegraph import FunctionNotFound, NodeNotFound
from ..errors import ProfvizError
from ..store import ProfileNotFound, Store, StoreError, open_store
from .context import EXTENSION_KEY, ServerContext
from .pages import WEB_ROOT_KEY, default_web_root
from .security import install_security, is_loopback

log = logging.getLogger("profviz.server")


class ServeError(ProfvizError):
    """The server cannot be set up as asked (e.g. a non-loopback address without a token)."""


class HtmlSafeJSONProvider(DefaultJSONProvider):
    """Compact UTF-8 JSON in insertion order, with ``< > &`` and U+2028/9 as ``\\u`` escapes.

    Those characters only occur inside JSON strings, so escaping them changes no value but keeps
    hostile program strings inert even if a response were ever read as HTML.
    """

    ensure_ascii = False
    sort_keys = False
    compact = True

    def dumps(self, obj, **kwargs) -> str:
        text = super().dumps(obj, **kwargs)
        for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(raw, escaped)
        return text


def blueprints() -> list[Blueprint]:
    """Every blueprint of the app, API first; the pages blueprint (with its catch-all) last."""
    from . import api_findings, api_ingest, api_profiles, api_routes, api_spans, pages

    return [
        api_ingest.bp,
        api_profiles.bp,
        api_spans.bp,
        api_routes.bp,
        api_findings.bp,
        pages.bp,
    ]


def create_app(
    store: Store | str | os.PathLike | None,
    *,
    token: str | None = None,
    web_root: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    profile_cache_size: int = 4,
) -> Flask:
    """The profviz Flask app over ``store``.

    ``host`` is the address the app will be served on: a non-loopback host without ``token``
    raises ServeError (generate one with :func:`profviz.server.security.new_token`). With a
    token, every request must carry it (see :mod:`profviz.server.security`). ``web_root``
    defaults to the repository's ``web/`` directory.
    """
    if token is None and not is_loopback(host):
        raise ServeError(f"refusing to serve on non-loopback address {host} without an access token: pass --token or let profviz serve generate one")
    if token is not None and len(token) < 8:
        raise ServeError("the access token must be at least 8 characters long")
    app = Flask("profviz.server", static_folder=None)
    app.config[WEB_ROOT_KEY] = str(Path(web_root) if web_root else default_web_root())
    app.json = HtmlSafeJSONProvider(app)
    app.extensions[EXTENSION_KEY] = ServerContext(open_store(store), profile_cache_size=profile_cache_size)
    install_security(app, token)
    from .api_ingest import TOKEN_SET_KEY

    app.config[TOKEN_SET_KEY] = token is not None
    _install_error_handlers(app)
    for blueprint in blueprints():
        app.register_blueprint(blueprint)
    return app


def error_response(status: int, message: str):
    response = jsonify({"error": {"status": status, "message": message}})
    response.status_code = status
    return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, InternalServerError) and exc.original_exception is not None:
            return unexpected(exc.original_exception)
        code = exc.code or 500
        message = exc.description or exc.name
        if isinstance(exc, NotFound) and message == NotFound.description:
            message = "no such URL on this profviz server"
        response = error_response(code, message)
        for key, value in exc.get_headers():
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response

    def without_store_path(exc: StoreError) -> str:
        """The store's message without the server's file path (clients need not know it)."""
        path = app.extensions[EXTENSION_KEY].store.location
        return str(exc).replace(f" in {path}", "").replace(path, "the store")

    @app.errorhandler(NodeNotFound)
    @app.errorhandler(FunctionNotFound)
    def not_in_profile(exc: LookupError):
        return error_response(404, str(exc))

    @app.errorhandler(ProfileNotFound)
    def profile_not_found(exc: ProfileNotFound):
        return error_response(404, without_store_path(exc).replace("run 'profviz list' to see the ids", "GET /api/profiles lists the ids"))

    @app.errorhandler(StoreError)
    def store_error(exc: StoreError):
        log.warning("store error: %s", exc)
        return error_response(ServiceUnavailable.code, without_store_path(exc))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("internal error while serving a request", exc_info=exc)
        return error_response(500, "internal error in the profviz server (details are in the server's log)")
