"""The store backends the contract tests run on (tests/test_store_contract.py).

Not a conftest: test modules import the ``backend`` fixture. A new backend adds itself to
``BACKENDS`` and to :class:`StoreLocation` (a fresh, empty store for each test).
"""

from __future__ import annotations

import pytest

from profviz.store import Store, open_store

BACKENDS = ("sqlite",)


class StoreLocation:
    """Where one test's store lives; :meth:`open` opens it (again), as another process would."""

    def __init__(self, backend: str, tmp_path):
        self.backend = backend
        self.location = str(tmp_path / "store.db")

    def open(self) -> Store:
        return open_store(self.location)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> StoreLocation:
    return StoreLocation(request.param, tmp_path)
