"""Public name of the ASGI adapter (:mod:`profviz.middleware.asgi`): ``from profviz.asgi import ProfilerMiddleware``."""

from .middleware.asgi import ProfilerMiddleware, RequestInfo

__all__ = ["ProfilerMiddleware", "RequestInfo"]
