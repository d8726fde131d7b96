"""Public name of the Flask adapter (:mod:`profviz.middleware.flask`): ``profviz.flask.init_app(app, **options)``."""

from .middleware.flask import init_app, route_naming_request_class

__all__ = ["init_app", "route_naming_request_class"]
