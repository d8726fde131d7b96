"""The PostgreSQL backend: the shared store of a fleet (``postgresql://`` URLs)."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
