"""Where profviz keeps profiles, requests and spans: the :class:`Store` interface and its backends.

:func:`open_store` picks the backend from what it is given. Today that is SQLite
(:class:`~profviz.store.sqlite.SQLiteStore`), the embedded default. Nothing outside this package
runs SQL.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import REQUEST_COLUMN_NAMES, ProfileNotFound, RequestNotFound, Store, StoreError

__all__ = [
    "REQUEST_COLUMN_NAMES", "ProfileNotFound", "RequestNotFound", "Store", "StoreError", "default_store_path", "open_store",
]


def default_store_path() -> Path:
    """``profviz/profviz.db`` under ``$XDG_DATA_HOME`` or ``~/.local/share``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "profviz" / "profviz.db"


def open_store(store: Store | str | os.PathLike | None = None) -> Store:
    """A store from a Store (returned as is), a location, or None: ``$PROFVIZ_STORE``, else
    :func:`default_store_path`.

    A location is a file path (SQLite) or a URL: ``sqlite:///var/lib/app/profviz.db`` (an absolute
    path, as in ``file:///`` URLs) or ``sqlite:relative/profviz.db``. Raises StoreError for a URL
    of a backend this profviz does not have.
    """
    if isinstance(store, Store):
        return store
    from .sqlite import SQLiteStore

    location = os.fspath(store) if store is not None else os.environ.get("PROFVIZ_STORE") or ""
    if not location:
        return SQLiteStore(default_store_path())
    scheme, sep, rest = location.partition(":")
    if not sep or len(scheme) < 2 or not scheme.replace("+", "").isalnum():  # a path (C:\... has a one-letter "scheme")
        return SQLiteStore(location)
    if scheme.lower() == "sqlite":
        path = "/" + rest.lstrip("/") if rest.startswith("//") else rest
        if not path.strip("/"):
            raise StoreError(f"store URL {location!r} names no file: write sqlite:///absolute/path.db or sqlite:relative.db")
        return SQLiteStore(path)
    raise StoreError(
        f"store URL scheme {scheme!r} is not supported: give a SQLite file path or a sqlite:/// URL"
    )
