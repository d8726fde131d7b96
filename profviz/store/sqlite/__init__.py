"""The SQLite backend: the embedded default store, one file per machine."""

from .store import SQLiteStore

__all__ = ["SQLiteStore"]
