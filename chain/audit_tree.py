"""The chain audit's state tree: its records compared with the store block by block, and its live
nodes kept apart for the replay's reads.

Every record of the state tree that a block writes (chain/smt.py) is keyed by that block's height:
n/<height:8>…, l/<height:8>…, z/<height:8>… and r/<height>. So the store's tree records of one
height sit together, one key range per prefix, and no later block writes there. For every height
whose tree the store keeps whole (above its m/state_from, and above a synced store's base) the
audit reads those ranges as it replays the block and compares them with what the replay wrote,
as whole dicts of one block's records each. It then keeps only what the next blocks' updates
read, the nodes (n/; the leaves' data, l/, is never read), in a dict of their own, and drops from
it the nodes each block retired (its z/ record). So the dict holds the current state's tree: the
audit's memory for it follows the state's size, not the chain's length (docs/performance.md, "The
audit holds the current tree"). Holding every record ever
written in one dict until one final comparison (millions on a long chain) made each lookup in it
several cache misses, and the inserts, lookups and final comparison of the retired marks alone a
sizeable share of the audit's time (docs/performance.md, "Full-chain audit").

The records of the heights not compared here (the genesis or a synced base, and those at or
below a pruned store's m/state_from, whose retired nodes are gone from the store) go to the
caller's replay as before, to be compared at the end; the root records (r/) too, all heights.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat

from chain import smt

Reader = Callable[[bytes], bytes | None]
# (a height a difference belongs to, what differs): the audit reports the lowest
Difference = tuple[int, str]
# a store's records from `start` up to `stop` (excluded): chain.store.Store.records
RangeReader = Callable[[bytes, bytes], dict[bytes, bytes]]

COMPARED_PREFIXES = (smt.NODE_PREFIX, smt.LEAF_DATA_PREFIX, smt.STALE_PREFIX)


class TreeRecords:
    """The replay's state tree as the audit holds it: the nodes (n/) and leaf data (l/) the
    replay reads, and the comparison of each compared height's tree records with the store's.

    `compare_above`: the heights above it are compared here (None: none are, e.g. a source that
    holds blocks only); `head` is where the replay ends. `at_end`: the other heights' records go
    to the caller's replay, for its final comparison; without one (an audit of blocks alone) only
    the root records do, which the next block's update reads. Differences are collected, not
    raised, so that the caller can report the lowest height among them and its own.
    """

    def __init__(self, read_range: RangeReader | None, compare_above: int | None, head: int, *, at_end: bool = True) -> None:
        self._read_range = read_range
        self._above = compare_above if read_range is not None else None
        self._head = head
        self._at_end = at_end
        # the nodes of the replay's current tree: what the next block's update reads (the leaves'
        # data, l/, and the retired marks, z/, are never read and never enter it)
        self.nodes: dict[bytes, bytes] = {}
        self.differences: list[Difference] = []

    def compared(self, height: int) -> bool:
        return self._above is not None and self._above < height <= self._head

    def excluded_ranges(self) -> list[tuple[bytes, bytes]]:
        """The store's key ranges compared here: the caller's final comparison skips them."""
        if self._above is None or self._above >= self._head:
            return []
        lo, hi = smt.version_bytes(self._above + 1), smt.version_bytes(self._head + 1)
        return [(prefix + lo, prefix + hi) for prefix in COMPARED_PREFIXES]

    def reader(self, others: Reader) -> Reader:
        """The replay's reader: a tree node from `nodes`, the rest from `others`."""
        nodes_get, node_prefix = self.nodes.get, smt.NODE_PREFIX

        def read(key: bytes) -> bytes | None:
            return nodes_get(key) if key[:2] == node_prefix else others(key)

        return read

    def absorb(self, height: int, tree: smt.TreeWrites, replay: dict[bytes, bytes | None]) -> Mapping[bytes, bytes]:
        """Take in the tree records a block wrote: compared with the store's if its height is, else
        put in `replay` for the final comparison, if there is one; the root record always goes
        there. Returns what went to `replay`."""
        self._drop(tree.retired)
        root_key = smt.root_key(height)
        if not self.compared(height):
            self.nodes.update(tree.nodes)
            kept: Mapping[bytes, bytes] = tree if self._at_end else {root_key: tree[root_key]}
            replay.update(kept)
            return kept
        kept = {root_key: tree[root_key]}
        replay.update(kept)
        assert self._read_range is not None
        lo, hi = smt.version_bytes(height), smt.version_bytes(height + 1)
        nodes, data, stale = (self._read_range(prefix + lo, prefix + hi) for prefix in COMPARED_PREFIXES)
        # whole dicts compared (C loops): equal, the store's nodes are the replay's and are kept
        if len(nodes) + len(data) + len(stale) == len(tree) - 1 and all(
            part.items() <= tree.items() for part in (nodes, data, stale)
        ):
            self.nodes.update(nodes)
        else:
            self._differ(height, tree, {**nodes, **data, **stale}, root_key)
            self.nodes.update(tree.nodes)
        return kept

    def keep(self, records: Mapping[bytes, bytes | None]) -> None:
        """Keep the nodes among `records` (a Python step per record: for a synced store's base,
        whose nodes come among the contracts' records)."""
        self.nodes.update((k, v) for k, v in records.items() if k[:2] == smt.NODE_PREFIX and v is not None)

    def _drop(self, retired: Sequence[bytes]) -> None:
        """Forget the nodes a block retired (<version><hash> each, as its z/ record lists them): no
        later block reads a node its parent state no longer holds. A C-level pass over a block's
        thousands; each pop is a miss in a large dict and frees a node, which costs the audit a
        tenth to a fifth of its time, for half its memory (docs/performance.md, "The audit holds
        the current tree"). A node a block retires was written by an earlier one, so dropping
        before the block's own are kept is the same as after."""
        keys = map(smt.NODE_PREFIX.__add__, retired)
        deque(map(self.nodes.pop, keys, repeat(None)), maxlen=0)

    def _differ(self, height: int, tree: Mapping[bytes, bytes], stored: dict[bytes, bytes], root_key: bytes) -> None:
        for key, value in stored.items():
            if key not in tree:
                self.differences.append((self._head, f"stored record {key[:48]!r} is not written by any block"))
            elif tree[key] != value:
                self.differences.append((height, f"stored record {key[:48]!r} is altered"))
        for key in tree:
            if key != root_key and key not in stored:
                self.differences.append((height, f"record {key[:48]!r} is missing from the store"))
