"""What a node serves to a peer joining by state sync, read from its store (docs/protocol.md,
State sync): the certified header of a height with the validator-set changes that link it to
the genesis (in pages), the block summaries of the tx-id window below it, and the state under
its root in chunks (chain/snapshot.py).

Everything is read through the store's reads and the tree's content-addressed records, so any
height whose tree the store still holds can be served (all of them while nodes are never
pruned), and a node that itself joined by state sync serves from its base on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain import smt, snapshot
from chain.encoding import decode
from chain.snapshot import KeyReader, StateChunk
from chain.store import Store, height_key
from chain.sync_anchor import MAX_CHANGES_PER_PAGE, MAX_WINDOW_SUMMARIES, WINDOW_TARGET_TX_IDS, window_floor
from contracts.proofs import ProofError, ValidatorChange, certified, validator_changes


class Unavailable(LookupError):
    """This node cannot serve what was asked (a height it does not hold); the peer asks another."""


@dataclass(frozen=True)
class AnchorPage:
    height: int
    header: dict[str, Any]
    certificate: dict[str, Any]
    changes: list[ValidatorChange]  # changes[start : start + MAX_CHANGES_PER_PAGE]
    total_changes: int


class SnapshotSource:
    def __init__(self, store: Store) -> None:
        self.store = store

    def offer(self) -> int:
        """The highest height this node serves a snapshot of (0: none)."""
        return self.store.height

    def _check_height(self, height: int) -> None:
        if not self.store.base_height <= height <= self.store.height or height < 1:
            raise Unavailable(f"no snapshot of height {height}: this node holds heights "
                              f"{max(1, self.store.base_height)}..{self.store.height}")

    def anchor(self, height: int, start: int) -> AnchorPage:
        self._check_height(height)
        try:
            head = certified(self.store, height)
            changes = validator_changes(self.store, height + 1)
        except ProofError as e:
            raise Unavailable(str(e)) from None
        page = changes[start : start + MAX_CHANGES_PER_PAGE]
        return AnchorPage(height, head["header"], head["certificate"], page, len(changes))

    def window(self, top: int, base: int) -> list[dict[str, Any]]:
        """Summaries {header, tx_ids} from `top` down, newest first, for a sync at `base`: at most
        MAX_WINDOW_SUMMARIES and, past the first, WINDOW_TARGET_TX_IDS tx ids; none below the
        window's floor."""
        self._check_height(base)
        floor = window_floor(base)
        if not floor <= top <= base:
            raise Unavailable(f"height {top} is not in the tx-id window {floor}..{base}")
        out: list[dict[str, Any]] = []
        ids = 0
        for height in range(top, floor - 1, -1):
            summary = self._summary(height)
            if out and (len(out) >= MAX_WINDOW_SUMMARIES or ids + len(summary["tx_ids"]) > WINDOW_TARGET_TX_IDS):
                break
            out.append(summary)
            ids += len(summary["tx_ids"])
        return out

    def _summary(self, height: int) -> dict[str, Any]:
        if height >= self.store.base_height:
            found = self.store.get_summary(height)
            if found is not None:
                return {"header": found[0].to_plain(), "tx_ids": found[1]}
        raw = self.store.get(height_key(b"y/", height))  # a synced node's own window
        if raw is None:
            raise Unavailable(f"this node does not hold the summary of block {height}")
        summary: dict[str, Any] = decode(raw)
        return summary

    def state_chunk(self, height: int, lo: int, limit: int) -> StateChunk:
        self._check_height(height)
        found = self.store.get_summary(height)
        if found is None:
            raise Unavailable(f"this node does not hold block {height}")
        try:
            root = smt.root_at(self.store.get, height)
            if root[0].hex() != found[0].state_root:
                raise smt.SmtError(f"the root record of height {height} is not its header's state root")
            return snapshot.export_chunk(KeyReader(self.store.get), root, lo, limit)
        except smt.SmtError as e:  # a tree this node no longer (or never fully) holds: pruned
            raise Unavailable(f"the state of height {height}: {e}") from None
