"""The chain audit's committed tx ids: what a block's duplicate check asks, and the store's tx
records and pointers checked against them at the end.

A block may not hold a tx committed at any earlier height (chain/validity.py, `duplicate`), so the
replay holds every id it has committed, with its place: ~230 bytes a tx, the one part of the
audit's memory that follows the chain's length rather than its state. Reading the store's own
pointer (i/) for each tx instead, checked as its tx is replayed, holds none, but each such read
lands somewhere in the id-keyed index (7-12 µs on a 450,000-tx store): it made the audit 6 %
slower for a tenth of its memory, so the ids stay in memory (docs/performance.md, "The audit's
memory beyond the tree").

At the end a store's tx records (t/) and pointers (i/) are streamed past the ids, never copied:
every pointer must name its tx's place, and there must be one pointer and one record for each tx
replayed. Every replayed tx's record was read at its place with its block, so equal counts leave
no stray record; only when they differ is each record's place looked at.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping

from chain.block import Block
from chain.store import Store
from chain.txrecords import TX_INDEX_PREFIX, TX_RECORD_PREFIX, parse_place, tx_place

Place = tuple[int, int]  # (height, index)
Difference = tuple[int, str]  # (the height it belongs to, what differs), as in chain/audit_tree.py


class TxIds:
    """Every tx id the replay committed, with its place. `window`: a synced store's tx-id window
    at and below its base (checked by the caller), whose txs the store holds neither records nor
    pointers for, but which must never commit again."""

    def __init__(self, base: int = 0, window: Mapping[str, Place] | None = None) -> None:
        self.places: dict[str, Place] = dict(window or {})
        self._base = base
        self._tx_counts = array("q")  # txs of each height replayed, from the base + 1 on

    def committed_at(self, tx_id: str) -> int | None:
        where = self.places.get(tx_id)
        return None if where is None else where[0]

    def add(self, height: int, block: Block) -> None:
        for index, tx_id in enumerate(block.tx_ids):
            self.places[tx_id] = (height, index)
        self._tx_counts.append(len(block.txs))

    def store_differences(self, store: Store, head: int) -> list[Difference]:
        """The store's tx pointers and records against the replayed txs (see the module's docstring)."""
        found: list[Difference] = []
        replayed = sum(self._tx_counts)
        places, base = self.places, self._base
        sound = 0
        for key, value in store.iterate(TX_INDEX_PREFIX):
            tx_id = _pointer_id(key)
            where = places.get(tx_id)
            if where is None or where[0] <= base:  # the window's txs have no pointers
                found.append((head, f"tx index (i/) names a tx {tx_id[:16]}… in no block"))
            elif value != tx_place(*where):
                found.append((where[0], f"tx index (i/) of {tx_id[:16]}… does not point at its place"))
            else:
                sound += 1
        if sound < replayed:  # a replayed tx that its id no longer finds
            indexed = {_pointer_id(k) for k, _ in store.iterate(TX_INDEX_PREFIX)}
            for tx_id, (height, index) in places.items():
                if height > base and tx_id not in indexed:
                    found.append((height, f"tx index (i/) of tx {index} ({tx_id[:16]}…) is missing"))
        if sum(1 for _ in store.iterate(TX_RECORD_PREFIX)) != replayed:
            for key, _ in store.iterate(TX_RECORD_PREFIX):
                place = parse_place(key[len(TX_RECORD_PREFIX) :])
                if place is None or not self._replayed(place):
                    found.append((head, f"tx record (t/) at {key[len(TX_RECORD_PREFIX) :][:40]!r} is the place of no block's tx"))
        return found

    def _replayed(self, place: Place) -> bool:
        height, index = place
        at = height - self._base - 1
        return 0 <= at < len(self._tx_counts) and index < self._tx_counts[at]


def _pointer_id(key: bytes) -> str:
    """The tx id an i/ key names (a damaged key's bytes shown, not raised: it is reported)."""
    return key[len(TX_INDEX_PREFIX) :].decode(errors="replace")
