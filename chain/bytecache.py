"""A cache bounded by bytes, for immutable values: what a node keeps in memory to save store reads
or repeated work must have a ceiling an operator sets, whatever the chain's length.

Two generations, not an LRU list: entries go into the young dict; when the young one holds half
the cap, it becomes the old one and the old one is dropped whole; a hit in the old one moves the
entry back to the young one. So whatever was used within the last half-cap of insertions stays,
a lookup is one or two dict probes (no per-hit bookkeeping, the hot path stays cheap), and the
held bytes never pass the cap. An entry's bytes are an estimate of what Python holds for it
(`size` of key and value plus ENTRY_OVERHEAD), not a measurement: the estimate for bytes keys and
values was checked against tracemalloc (tests/unit/chain/test_bytecache.py), and is arithmetic on
their lengths, not `sys.getsizeof` (two calls an entry were a quarter of a cache's cost).

The state tree's nodes have a cache of their own (chain/treecache.py): what a block reads of the
tree is what it replaces, so that cache holds what blocks wrote, by height, and this one's reuse
of what was read would only churn it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# A dict slot (hash, key and value pointers, index) at a typical load factor, per entry.
ENTRY_OVERHEAD = 56
# What a bytes object takes beyond its length (its header and trailing NUL: 33 on CPython 3.11)
BYTES_HEADER = sys.getsizeof(b"")
_BYTES_ENTRY = 2 * BYTES_HEADER + ENTRY_OVERHEAD


def bytes_size(key: bytes, value: bytes) -> int:
    """What a bytes key and value take in Python, with the dict slot holding them (equal to
    sys.getsizeof of each plus ENTRY_OVERHEAD, without the calls)."""
    return len(key) + len(value) + _BYTES_ENTRY


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    cap_bytes: int


class ByteCache(Generic[K, V]):
    """get / put of immutable values, at most `cap_bytes` (estimated) held; cap 0 holds nothing."""

    def __init__(self, cap_bytes: int, size: Callable[[K, V], int] = bytes_size) -> None:  # type: ignore[assignment]
        if cap_bytes < 0:
            raise ValueError("a cache's byte cap cannot be negative")
        self.cap_bytes = cap_bytes
        self._size = size
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._young_bytes = 0
        self._old_bytes = 0

    def get(self, key: K) -> V | None:
        value = self._young.get(key)
        if value is not None:
            return value
        value = self._old.pop(key, None)
        if value is not None:
            n = self._size(key, value)
            self._old_bytes -= n
            self._insert(key, value, n)
        return value

    def put(self, key: K, value: V) -> None:
        if key in self._young:
            return  # immutable: the same value
        old = self._old.pop(key, None)
        n = self._size(key, value)
        if old is not None:
            self._old_bytes -= n
        self._insert(key, value, n)

    def _insert(self, key: K, value: V, n: int) -> None:
        if n > self.cap_bytes // 2:
            return  # larger than a generation: never held
        if self._young_bytes + n > self.cap_bytes // 2:
            self._old, self._old_bytes = self._young, self._young_bytes
            self._young, self._young_bytes = {}, 0
        self._young[key] = value
        self._young_bytes += n

    def clear(self) -> None:
        self._young, self._old = {}, {}
        self._young_bytes = self._old_bytes = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def __contains__(self, key: object) -> bool:
        return key in self._young or key in self._old

    @property
    def held_bytes(self) -> int:
        return self._young_bytes + self._old_bytes

    def stats(self) -> CacheStats:
        return CacheStats(len(self), self.held_bytes, self.cap_bytes)
