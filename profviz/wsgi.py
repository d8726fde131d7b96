"""Public name of the WSGI adapter (:mod:`profviz.middleware.wsgi`): ``from profviz.wsgi import ProfilerMiddleware``."""

from .middleware.wsgi import ENVIRON_KEY, ProfilerMiddleware, RequestInfo

__all__ = ["ENVIRON_KEY", "ProfilerMiddleware", "RequestInfo"]
