"""Flask adapter: ``profviz.flask.init_app(app, **options)``.

Wraps ``app.wsgi_app`` in :class:`profviz.wsgi.ProfilerMiddleware` (same options) and names each
request by its URL rule (``request.url_rule.rule``, e.g. ``/posts/<int:post_id>``); requests no
rule matched (404, 405, redirects) are named ``(unmatched)`` so scanners cannot flood the route
table.

The name is taken when Flask matches the URL, before any ``before_request`` function runs (so a
request another hook answers early is named too): ``init_app`` replaces ``app.request_class``
with a subclass whose ``url_rule`` and ``routing_exception`` attributes name the request when
Flask's ``RequestContext.match_request`` assigns them. Set a custom ``request_class`` before
calling ``init_app``; one set later is not seen, and its requests are named by path instead.
(A ``before_request`` hook would cost every request Flask's coroutine check of the hook, and the
middleware cannot read the rule afterwards: Flask drops the request object from the environ
when the request context ends, before the middleware sees the request end.)
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from ..routes import UNMATCHED_ROUTE
from .wsgi import ENVIRON_KEY, ProfilerMiddleware


def _set_url_rule(request, rule) -> None:
    request._profviz_url_rule = rule
    info = request.environ.get(ENVIRON_KEY)
    if info is not None:
        info.route = rule.rule if rule is not None else UNMATCHED_ROUTE


def _set_routing_exception(request, exc) -> None:
    request._profviz_routing_exception = exc
    if exc is not None:
        info = request.environ.get(ENVIRON_KEY)
        if info is not None:
            info.route = UNMATCHED_ROUTE


def route_naming_request_class(base: type) -> type:
    """A subclass of the Flask request class ``base`` that names the profviz request of its
    environ when ``url_rule`` or ``routing_exception`` is assigned; both read back as assigned
    (None until then). Reading them calls no Python code (an ``attrgetter`` property)."""
    return type(base.__name__, (base,), {
        "__module__": base.__module__,
        "__doc__": base.__doc__,
        "__qualname__": base.__qualname__,
        "_profviz_url_rule": None,
        "_profviz_routing_exception": None,
        "url_rule": property(attrgetter("_profviz_url_rule"), _set_url_rule),
        "routing_exception": property(attrgetter("_profviz_routing_exception"), _set_routing_exception),
    })


def init_app(app, **options: Any) -> ProfilerMiddleware:
    """Profile every request of a Flask ``app``; returns the middleware (``.stats``, ``.flush()``)."""
    existing = app.extensions.get("profviz")
    if existing is not None:
        return existing
    middleware = ProfilerMiddleware(app.wsgi_app, **options)
    app.wsgi_app = middleware
    app.request_class = route_naming_request_class(app.request_class)
    app.extensions["profviz"] = middleware
    return middleware
