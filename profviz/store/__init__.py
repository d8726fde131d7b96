"""Where profviz keeps profiles, requests and spans: the :class:`Store` interface and its backends.

:func:`open_store` picks the backend from what it is given: SQLite
(:class:`~profviz.store.sqlite.SQLiteStore`), the embedded default, or PostgreSQL
(:class:`~profviz.store.postgres.PostgresStore`) for a ``postgresql://`` URL, the shared store of a
fleet. Nothing outside this package runs SQL.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import REQUEST_COLUMN_NAMES, ProfileNotFound, RequestNotFound, Store, StoreError, StoreValueError

__all__ = [
    "REQUEST_COLUMN_NAMES", "ProfileNotFound", "RequestNotFound", "Store", "StoreError", "StoreValueError", "default_store_path",
    "open_store", "store_location",
]


POSTGRES_SCHEMES = ("postgresql", "postgres")


def default_store_path() -> Path:
    """``$PROFVIZ_STORE`` when it is a file path, else ``profviz/profviz.db`` under ``$XDG_DATA_HOME`` or ``~/.local/share``."""
    explicit = os.environ.get("PROFVIZ_STORE")
    if explicit and "://" not in explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "profviz" / "profviz.db"


def store_location(store: str | os.PathLike | None = None) -> tuple[str, str]:
    """(backend, location) that :func:`open_store` would open for ``store``, without opening it.

    A location is a file path (SQLite) or a URL: ``sqlite:///var/lib/app/profviz.db`` (an
    absolute path, as in ``file:///`` URLs), ``sqlite:relative/profviz.db``, or
    ``postgresql://user:password@host:port/database`` (PostgreSQL), or ``https://host:port`` (a
    collector, ``profviz serve``, that this process pushes to); URLs are returned as given. None or "" is ``$PROFVIZ_STORE``, else :func:`default_store_path`. Raises StoreError
    for a URL of a backend this profviz does not have.
    """
    text = os.fspath(store) if store is not None else ""
    if not text:
        text = os.environ.get("PROFVIZ_STORE", "")
        if "://" not in text:
            return "sqlite", str(default_store_path())
    scheme, sep, rest = text.partition(":")
    if scheme.lower() in POSTGRES_SCHEMES and rest.startswith("//"):
        return "postgresql", text
    if scheme.lower() in ("http", "https") and rest.startswith("//"):
        return "collector", text
    if scheme.lower() == "sqlite" and sep:
        path = "/" + rest.lstrip("/") if rest.startswith("//") else rest
        if not path.strip("/"):
            raise StoreError(f"store URL {text!r} names no file: write sqlite:///absolute/path.db or sqlite:relative.db")
        return "sqlite", path
    if "://" in text:
        raise StoreError(f"store URL scheme {scheme[:40]!r} is not supported: give a SQLite file path, a sqlite:/// URL, "
                         "a postgresql://user@host/database URL or a collector's https://host:port")
    return "sqlite", text


def open_store(store: Store | str | os.PathLike | None = None) -> Store:
    """A store from a Store (returned as is) or a location (see :func:`store_location`)."""
    if isinstance(store, Store):
        return store
    backend, location = store_location(store)
    if backend == "collector":
        from .remote import HTTPStore

        return HTTPStore(location)
    if backend == "postgresql":
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(f"a PostgreSQL store needs psycopg ({exc}): pip install 'profviz[postgres]'") from None
        return PostgresStore(location)
    from .sqlite import SQLiteStore

    return SQLiteStore(location)
