"""Bounded, thread-safe maps that forget the least recently used entry first.

For results that are pure functions of their key and expensive to recompute per login (verified paths, what a
certificate proves in a municipality): kept per configuration, bounded so that many distinct certificates cannot
grow it without limit. :func:`by_identity` remembers a function's results per argument *object*, for arguments
that are costly to hash and recur as the same objects (certificates).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
A = TypeVar("A")


class LruCache(Generic[K, V]):
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("an LRU cache holds at least one entry")
        self._max = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def by_identity(max_entries: int) -> Callable[[Callable[[A], V]], Callable[[A], V]]:
    """Remember a one-argument function's results per argument object, the least recently used forgotten first.

    ``functools.lru_cache`` hashes its argument at every call; cryptography hashes a ``Certificate`` by its whole
    DER (SipHash over a kilobyte or two), so the ~50 cached lookups about the certificates of one login cost more
    than some of the answers. The same certificate objects recur on every login (the decoded-header cache hands
    out the user's, verified paths hold the CAs'), so an entry here is found by the object's ``id``. An entry
    keeps its argument alive, so no other object can take that ``id`` while the entry exists (and a hit is
    checked to be the very object); an equal but distinct object (a second parse) just gets its own entry.
    Exceptions are not remembered.
    """
    if max_entries < 1:
        raise ValueError("an LRU cache holds at least one entry")

    def decorate(function: Callable[[A], V]) -> Callable[[A], V]:
        entries: OrderedDict[int, tuple[A, V]] = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(function)
        def remembered(argument: A) -> V:
            key = id(argument)
            with lock:
                hit = entries.get(key)
                if hit is not None and hit[0] is argument:
                    entries.move_to_end(key)
                    return hit[1]
            value = function(argument)
            with lock:
                entries[key] = (argument, value)
                entries.move_to_end(key)
                while len(entries) > max_entries:
                    entries.popitem(last=False)
            return value

        return remembered

    return decorate
