"""The chain audit's state tree: its records compared with the store block by block, and its live
nodes kept apart for the replay's reads.

Every record of the state tree that a block writes (chain/smt.py) is keyed by that block's height:
n/<height:8>…, l/<height:8>…, z/<height:8>… and r/<height>. So the store's tree records of one
height sit together, one key range per prefix, and no later block writes there. For every height
whose tree the store keeps whole (above its m/state_from, and above a synced store's base) the
audit reads those ranges as it replays the block and compares them with what the replay wrote,
as whole dicts of one block's records each. It then keeps only the nodes and leaf data for the
next blocks' reads, in a dict of their own. Holding every record ever written in one dict until
one final comparison (millions on a long chain) made each lookup in it several cache misses, and
the inserts, lookups and final comparison of the retired marks (z/, never read) alone a
sizeable share of the audit's time (docs/performance.md, "Full-chain audit").

The records of the heights not compared here (the genesis or a synced base, and those at or
below a pruned store's m/state_from, whose retired nodes are gone from the store) go to the
caller's replay as before, to be compared at the end; the root records (r/) too, all heights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from chain import smt

Reader = Callable[[bytes], bytes | None]
# (a height a difference belongs to, what differs): the audit reports the lowest
Difference = tuple[int, str]
# a store's records from `start` up to `stop` (excluded): chain.store.Store.records
RangeReader = Callable[[bytes, bytes], dict[bytes, bytes]]

COMPARED_PREFIXES = (smt.NODE_PREFIX, smt.LEAF_DATA_PREFIX, smt.STALE_PREFIX)
READ_PREFIXES = (smt.NODE_PREFIX, smt.LEAF_DATA_PREFIX)  # what the tree's update reads


class TreeRecords:
    """The replay's state tree as the audit holds it: the nodes (n/) and leaf data (l/) the
    replay reads, and the comparison of each compared height's tree records with the store's.

    `compare_above`: the heights above it are compared here (None: none are, e.g. a source that
    holds blocks only); `head` is where the replay ends. Differences are collected, not raised,
    so that the caller can report the lowest height among them and its own.
    """

    def __init__(self, read_range: RangeReader | None, compare_above: int | None, head: int) -> None:
        self._read_range = read_range
        self._above = compare_above if read_range is not None else None
        self._head = head
        # every node and leaf's data the replay wrote (not the retired marks, z/: never read); the
        # retired ones are not dropped, which would cost a Python step per record
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

    def is_compared_key(self, key: bytes) -> bool:
        return any(lo <= key < hi for lo, hi in self.excluded_ranges())

    def reader(self, others: Reader) -> Reader:
        """The replay's reader: a tree node or leaf's data from `nodes`, the rest from `others`."""
        nodes_get = self.nodes.get

        def read(key: bytes) -> bytes | None:
            return nodes_get(key) if key[:2] in READ_PREFIXES else others(key)

        return read

    def absorb(self, height: int, tree: Mapping[bytes, bytes], replay: dict[bytes, bytes | None]) -> Mapping[bytes, bytes]:
        """Take in the tree records a block wrote: compared with the store's if its height is, else
        put in `replay`; the root record always goes there. Returns what went to `replay`."""
        if not self.compared(height):
            replay.update(tree)
            self.keep(tree)
            return tree
        root_key = smt.root_key(height)
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
            self.nodes.update(data)
        else:
            self._differ(height, tree, {**nodes, **data, **stale}, root_key)
            self.keep(tree)
        return kept

    def keep(self, records: Mapping[bytes, bytes | None]) -> None:
        """Keep the nodes and leaf data among `records` (a Python step per record: for the records
        not compared block by block, and those of a block that differs from the store)."""
        self.nodes.update((k, v) for k, v in records.items() if k[:2] in READ_PREFIXES and v is not None)

    def _differ(self, height: int, tree: Mapping[bytes, bytes], stored: dict[bytes, bytes], root_key: bytes) -> None:
        for key, value in stored.items():
            if key not in tree:
                self.differences.append((self._head, f"stored record {key[:48]!r} is not written by any block"))
            elif tree[key] != value:
                self.differences.append((height, f"stored record {key[:48]!r} is altered"))
        for key in tree:
            if key != root_key and key not in stored:
                self.differences.append((height, f"record {key[:48]!r} is missing from the store"))
