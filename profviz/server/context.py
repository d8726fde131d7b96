"""What every blueprint shares: the store, an LRU of loaded profiles, and small memo caches.

Blueprints reach it with :func:`server_context` inside a request. Profiles are immutable once
stored, so a loaded profile (with its cached node table) and anything derived from it alone can
be kept until evicted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

from flask import current_app

from ..model import Profile
from ..store import Store

T = TypeVar("T")
EXTENSION_KEY = "profviz"


class LRU:
    """A thread-safe least-recently-used cache whose ``get_or_make`` builds each key once at a time."""

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                value = make()
            except BaseException:
                with self._lock:
                    self._building.pop(key, None)
                raise
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class ServerContext:
    """The store and caches behind one app. ``profile(id)`` raises the store's ProfileNotFound."""

    def __init__(self, store: Store, *, profile_cache_size: int = 4, memo_size: int = 64):
        self.store = store
        self.profiles = LRU(profile_cache_size)
        self.memos = LRU(memo_size)

    def profile(self, profile_id: int) -> Profile:
        return self.profiles.get_or_make(profile_id, lambda: self.store.load_profile(profile_id))

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """A value derived only from immutable profiles, computed once per key (LRU)."""
        return self.memos.get_or_make(key, make)


def profile_origin_ns(profile: Profile) -> int:
    """The absolute time all profile-scoped times in the API are relative to: the recording start."""
    start = profile.meta.get("start_ns")
    return int(start) if start else profile.time_range_ns[0]


def server_context() -> ServerContext:
    return current_app.extensions[EXTENSION_KEY]
