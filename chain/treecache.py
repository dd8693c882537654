"""The state tree's nodes a node keeps in memory, bounded by bytes: the nodes the last blocks wrote.

Every block replaces the nodes on its changed paths (chain/smt.py): the nodes a block reads from
the tree are the ones it retires, and what the next blocks read first are the nodes the last ones
wrote. So this cache holds what committed blocks wrote, and nothing else: a node read from the
store is not put in it (the block reading it replaces it), and a node a block retires leaves it.

Generations by height, the oldest dropped whole: a generation holds the nodes of a run of heights
(a node's key n/<version><hash> names the height that wrote it), and a new one begins when what the
young one still holds reaches its share of the cap (cap / generations). Before it begins, the
oldest generations go until the share fits under the cap. The held bytes never pass the cap, and
once the cache has filled they stay above the cap less two shares: the older generations shrink as
later blocks replace their nodes, and more of them are kept for it. (Until 2026-12-02 a cache kept
`generations` of them whatever they still held: it held 143-161 MiB of 256 on the 1,000,000-tx
run, rising as the state grew and the generations shrank less, and the resident set rose with it;
docs/performance.md, "... a tree-node cache kept full". The general cache's two generations
(ByteCache) held 131-219 MiB and swung the resident set with them: "The tree-node cache by height".)
A generation that has lost half its nodes is copied into a dict of its size when the next begins:
a dict's table never shrinks, and the tables of many shrunken generations would hold memory the
count does not see.

Since a key's height says which generation holds it, a lookup and a retirement probe that one
generation only: a retirement of a block's thousands of nodes is one C-level pass over them
(bisect, then a pop from the generation found), whatever the number of generations; popping from
every generation cost ~8 % of a replica's CPU per tx with eight (ByteCache's way).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from operator import is_not

from chain.bytecache import CacheStats, bytes_size
from chain.smt import NODE_PREFIX

GENERATIONS = 8
_VERSION_END = len(NODE_PREFIX) + 8  # a node key is n/<version:8><hash>
_ENTRY = bytes_size(b"", b"")  # what an entry takes beyond its key's and value's lengths


def _bytes_of(nodes: Mapping[bytes, bytes]) -> int:
    """The estimated bytes of a block's nodes (C-level passes, not a step a node)."""
    return sum(map(len, nodes)) + sum(map(len, nodes.values())) + len(nodes) * _ENTRY


def _held(keys: Sequence[bytes], values: Sequence[bytes | None]) -> int:
    """The estimated bytes of the entries whose value is not None (C-level passes)."""
    held = list(map(is_not, values, repeat(None)))
    return sum(map(len, compress(keys, held))) + sum(map(len, compress(values, held))) + sum(held) * _ENTRY  # type: ignore[arg-type]


class TreeNodeCache:
    """The tree nodes committed blocks wrote, at most `cap_bytes` (estimated, as ByteCache's
    `bytes_size`) held; cap 0 holds nothing. Keys are n/ keys (chain/smt.py)."""

    def __init__(self, cap_bytes: int, generations: int = GENERATIONS) -> None:
        if cap_bytes < 0:
            raise ValueError("a cache's byte cap cannot be negative")
        if generations < 2:
            raise ValueError("a cache needs at least two generations")
        self.cap_bytes = cap_bytes
        self.generations = generations
        self._share = cap_bytes // generations
        # oldest first; _starts[i] is the lowest key _gens[i] may hold: n/<its first height>. A key
        # below _starts[0] is older than every generation (dropped, or never held). The leading
        # empty dict stands for that: a bisect's 0 lands on it.
        self._gens: list[dict[bytes, bytes]] = [{}]
        self._starts: list[bytes] = []
        self._sizes: list[int] = []  # each generation's nodes when it was last copied or ended
        # what the young generation has taken (bytes, nodes): a new one begins when what it still
        # holds reaches its share, so that what the next blocks retire from it does not end it early
        self._young_taken = self._young_count = 0
        self._held = 0
        self._last = b""  # n/<height> of the last block added

    def get(self, key: bytes) -> bytes | None:
        return self._gens[bisect_right(self._starts, key)].get(key)

    def add_block(self, nodes: Mapping[bytes, bytes]) -> None:
        """The new nodes of a committed block, all of its height (an update's `TreeWrites.nodes`).
        Heights come in order; a block of a height below the young generation's (a store reopened
        lower, a state sync) begins the cache again."""
        if not nodes or self._share == 0:
            return
        first = next(iter(nodes))
        start = first[:_VERSION_END]
        n = _bytes_of(nodes)
        if n > self._share:
            return  # larger than a generation: not held
        if self._starts and start < self._starts[-1]:
            self.clear()
        if not self._starts or (self._young_bytes() + n > self._share and start != self._starts[-1]):
            self._begin_generation(start)
        young = self._gens[-1]
        if start == self._last and not young.keys().isdisjoint(nodes.keys()):
            # the same height again: its nodes are immutable, those held stay and count once
            nodes = {k: v for k, v in nodes.items() if k not in young}
            n = _bytes_of(nodes)
        self._last = start
        young.update(nodes)
        self._young_taken += n
        self._young_count += len(nodes)
        self._held += n

    def _young_bytes(self) -> int:
        """What the young generation holds now, estimated from the mean of what it took: its nodes
        are of two sizes (leaves and inner nodes), and a retirement's pops are not counted by
        generation (that would cost a pass over the block's nodes)."""
        return len(self._gens[-1]) * self._young_taken // self._young_count if self._young_count else 0

    def discard_many(self, keys: Sequence[bytes]) -> None:
        """Drop each key held (others are nothing): the nodes a committed block retired. One pass
        over the keys, each looked for in the one generation its height names."""
        gens = self._gens
        popped = list(map(dict.pop, map(gens.__getitem__, map(bisect_right, repeat(self._starts), keys)), keys, repeat(None)))
        self._held -= _held(keys, popped)

    def _begin_generation(self, start: bytes) -> None:
        gens, sizes = self._gens, self._sizes
        if sizes:
            sizes[-1] = len(gens[-1])
        while sizes and self._held + self._share > self.cap_bytes:
            self._held -= _bytes_of(gens.pop(1))
            self._starts.pop(0)
            sizes.pop(0)
        for i, size in enumerate(sizes):
            if 2 * len(gens[i + 1]) <= size:
                gens[i + 1] = dict(gens[i + 1])
                sizes[i] = len(gens[i + 1])
        gens.append({})
        self._starts.append(start)
        sizes.append(0)
        self._young_taken = self._young_count = 0

    def clear(self) -> None:
        self._gens, self._starts, self._sizes = [{}], [], []
        self._young_taken = self._young_count = self._held = 0
        self._last = b""

    def __len__(self) -> int:
        return sum(map(len, self._gens))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    @property
    def held_bytes(self) -> int:
        return self._held

    def stats(self) -> CacheStats:
        return CacheStats(len(self), self._held, self.cap_bytes)
