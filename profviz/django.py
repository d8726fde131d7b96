"""Public name of the Django adapter (:mod:`profviz.middleware.django`): ``"profviz.django.ProfvizMiddleware"``."""

from .middleware.django import ProfvizMiddleware, get_recorder, route_of

__all__ = ["ProfvizMiddleware", "get_recorder", "route_of"]
