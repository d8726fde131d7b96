"""Pushing to a collector: the wire format of a batch (:mod:`.wire`) and the store that sends it
(:class:`~.sender.HTTPStore`), for ``store="https://collector:8080"``."""

from .sender import HTTPStore

__all__ = ["HTTPStore"]
