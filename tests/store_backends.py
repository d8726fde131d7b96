"""The store backends the contract tests run on (tests/test_store_contract.py): SQLite, and
PostgreSQL in the session's throwaway cluster (tests/postgres_cluster.py).

Not a conftest: test modules import the ``backend`` fixture. A new backend adds itself to
``BACKENDS`` and to :class:`StoreLocation` (a fresh, empty store for each test).
"""

from __future__ import annotations

import pytest

from profviz.store import Store, open_store

BACKENDS = ("sqlite", "postgresql")


class StoreLocation:
    """Where one test's store lives; :meth:`open` opens it (again), as another process would."""

    def __init__(self, backend: str, location: str):
        self.backend = backend
        self.location = location
        self.opened: list[Store] = []

    def open(self) -> Store:
        store = open_store(self.location)
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    if request.param == "sqlite":
        location = StoreLocation("sqlite", str(tmp_path / "store.db"))
        yield location
        location.close()
        return
    from .postgres_cluster import create_database, drop_database

    cluster = request.getfixturevalue("postgres")
    url = create_database(cluster)
    location = StoreLocation("postgresql", url)
    yield location
    location.close()
    drop_database(cluster, url)
