"""Flask integration: ``profviz.flask.init_app(app, **options)``.

Wraps ``app.wsgi_app`` in :class:`profviz.wsgi.ProfilerMiddleware` (same options) and names each
request by its URL rule (``request.url_rule.rule``, e.g. ``/posts/<int:post_id>``); requests no
rule matched (404, 405) are named ``(unmatched)`` so scanners cannot flood the route table. The
naming hook runs before every other ``before_request`` function, so it also names requests that
another hook answers early. (Flask drops the request object from the environ when the request
context ends, before the middleware sees the request end: the rule has to be read inside Flask.)
"""

from __future__ import annotations

from typing import Any

from .routes import UNMATCHED_ROUTE
from .wsgi import ENVIRON_KEY, ProfilerMiddleware


def _current_request_getter():
    """A function returning the current Flask request object: Flask's request-context variable
    read directly when this Flask has it (a LocalProxy costs two lookups per attribute)."""
    try:
        from flask.globals import _cv_request
    except ImportError:
        from flask import request

        return request._get_current_object

    def current_request():
        return _cv_request.get().request

    return current_request


def init_app(app, **options: Any) -> ProfilerMiddleware:
    """Profile every request of a Flask ``app``; returns the middleware (``.stats``, ``.flush()``)."""
    existing = app.extensions.get("profviz")
    if existing is not None:
        return existing
    middleware = ProfilerMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware
    current_request = _current_request_getter()

    def name_route() -> None:
        request = current_request()
        info = request.environ.get(ENVIRON_KEY)
        if info is not None:
            rule = request.url_rule
            info.route = rule.rule if rule is not None else UNMATCHED_ROUTE

    app.before_request_funcs.setdefault(None, []).insert(0, name_route)
    app.extensions["profviz"] = middleware
    return middleware
