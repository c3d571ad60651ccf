"""Bounded in-memory caches: every cache has a maximum size AND a maximum age."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """An LRU dictionary whose entries also expire after ``ttl`` seconds."""

    def __init__(
        self, *, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("a cache needs max_entries >= 1 and ttl > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: K, value: V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock(), value)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        stamp, value = found
        if self._clock() - stamp > self.ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def values(self) -> list[V]:
        self.prune()
        return [value for _, value in self._items.values()]

    def prune(self, *, everything: bool = False) -> int:
        """Drop expired entries (all of them with ``everything``); returns how many."""
        if everything:
            count = len(self._items)
            self._items.clear()
            return count
        now = self._clock()
        expired = [k for k, (stamp, _) in self._items.items() if now - stamp > self.ttl]
        for key in expired:
            del self._items[key]
        return len(expired)


__all__ = ["TTLCache"]
