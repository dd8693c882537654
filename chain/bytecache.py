"""A cache bounded by bytes, for immutable values: what a node keeps in memory to save store reads
or repeated work must have a ceiling an operator sets, whatever the chain's length.

Two generations, not an LRU list: entries go into the young dict; when the young one holds half
the cap, it becomes the old one and the old one is dropped whole; a hit in the old one moves the
entry back to the young one. So whatever was used within the last half-cap of insertions stays,
a lookup is one or two dict probes (no per-hit bookkeeping, the hot path stays cheap), and the
held bytes never pass the cap. An entry's bytes are an estimate of what Python holds for it
(`size` of key and value plus ENTRY_OVERHEAD), not a measurement: the estimate for bytes keys and
values was checked against tracemalloc (tests/unit/chain/test_bytecache.py). A node puts thousands
of tree nodes a block, so the default estimate for bytes is arithmetic on their lengths, not
`sys.getsizeof` (two calls an entry were a quarter of the cache's cost), and `put_many` takes a
block's nodes as one batch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not
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

    def put_many(self, entries: Mapping[K, V]) -> None:
        """`put` of every entry, as one batch: a batch that fits in a generation goes into the young
        one whole (the young one retired first if the batch would take it past half the cap), so
        the cap holds as with `put`. With the default estimate this is a few C-level passes over
        the batch, not a Python step per entry (a block's new tree nodes: thousands a commit)."""
        young, old, size = self._young, self._old, self._size
        fresh = entries
        if not young.keys().isdisjoint(entries.keys()):
            fresh = {k: v for k, v in entries.items() if k not in young}  # immutable: held already
        for key in old.keys() & fresh.keys():  # used again: moved to the young generation
            self._old_bytes -= size(key, old.pop(key))
        if size is bytes_size:
            n = sum(map(len, fresh)) + sum(map(len, fresh.values())) + len(fresh) * _BYTES_ENTRY  # type: ignore[arg-type]
        else:
            n = sum(size(k, v) for k, v in fresh.items())
        if n > self.cap_bytes // 2:  # larger than a generation: entry by entry, as `put` would
            for key, value in fresh.items():
                self._insert(key, value, size(key, value))
            return
        if self._young_bytes + n > self.cap_bytes // 2:
            self._old, self._old_bytes = young, self._young_bytes
            self._young, self._young_bytes = {}, 0
        self._young.update(fresh)
        self._young_bytes += n

    def discard_many(self, keys: Sequence[K]) -> None:
        """Drop each key held (others are nothing): values that will not be asked for again, e.g.
        the tree nodes a block replaced, so that the cap holds what will be. With the default
        estimate, C-level passes over the keys (thousands a commit), not a Python step per key."""
        self._young_bytes -= self._pop_all(self._young, keys)
        self._old_bytes -= self._pop_all(self._old, keys)

    def _pop_all(self, gen: dict[K, V], keys: Sequence[K]) -> int:
        """Pop each key from one generation; the bytes of those it held."""
        popped = list(map(gen.pop, keys, repeat(None)))
        if self._size is bytes_size:
            held = list(map(is_not, popped, repeat(None)))
            n = sum(map(len, compress(keys, held))) + sum(map(len, compress(popped, held)))  # type: ignore[arg-type]
            return n + sum(held) * _BYTES_ENTRY
        return sum(self._size(k, v) for k, v in zip(keys, popped, strict=True) if v is not None)

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
