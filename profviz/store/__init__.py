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
    "store_location",
]


def default_store_path() -> Path:
    """``$PROFVIZ_STORE``, else ``profviz/profviz.db`` under ``$XDG_DATA_HOME`` or ``~/.local/share``."""
    explicit = os.environ.get("PROFVIZ_STORE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "profviz" / "profviz.db"


def store_location(store: str | os.PathLike | None = None) -> tuple[str, str]:
    """(backend, location) that :func:`open_store` would open for ``store``, without opening it.

    A location is a file path (SQLite) or a URL: ``sqlite:///var/lib/app/profviz.db`` (an
    absolute path, as in ``file:///`` URLs) or ``sqlite:relative/profviz.db``; None or "" is
    :func:`default_store_path`. Raises StoreError for a URL of a backend this profviz does not have.
    """
    text = os.fspath(store) if store is not None else ""
    if not text:
        return "sqlite", str(default_store_path())
    scheme, sep, rest = text.partition(":")
    if scheme.lower() == "sqlite" and sep:
        path = "/" + rest.lstrip("/") if rest.startswith("//") else rest
        if not path.strip("/"):
            raise StoreError(f"store URL {text!r} names no file: write sqlite:///absolute/path.db or sqlite:relative.db")
        return "sqlite", path
    if "://" in text:
        raise StoreError(f"store URL scheme {scheme!r} is not supported: give a SQLite file path or a sqlite:/// URL")
    return "sqlite", text


def open_store(store: Store | str | os.PathLike | None = None) -> Store:
    """A store from a Store (returned as is) or a location (see :func:`store_location`)."""
    if isinstance(store, Store):
        return store
    from .sqlite import SQLiteStore

    _, location = store_location(store)
    return SQLiteStore(location)
