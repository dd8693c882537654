"""The joining side of state sync, without the network: what to ask for next, and every answer
verified before a byte of it is written (docs/protocol.md, State sync).

`StateSync` takes, in order: the anchor (the certified header of the base height S and the
validator-set changes linking it to the genesis), the tx-id window's summaries (newest first,
each chunk checked against the hash the one above it names), and the state chunks, in any order,
each checked alone against S's state_root (chain/snapshot.py). A peer whose answer does not
verify raises here (SnapshotError or SyncVerifyError) and nothing of it is written; the caller
drops that peer and asks another. `finish` writes the anchor once the state is whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chain import smt, snapshot
from chain.database import DEFAULT_MEMORY, DbMemory
from chain.genesis import Genesis
from chain.snapshot import Coverage, SnapshotError, StateChunk
from chain.store import Store
from chain.store_sync import SyncImport
from chain.sync_anchor import Anchor, SyncVerifyError, parse_window, verify_anchor, verify_window, window_floor
from contracts.snapshot_rules import RULES


class StateSync:
    def __init__(self, path: str | Path, genesis: Genesis, memory: DbMemory = DEFAULT_MEMORY) -> None:
        self.genesis = genesis
        self.importer = SyncImport.begin(path, genesis, memory)
        self.anchor: Anchor | None = None
        self.coverage = Coverage()
        self.base_tx_ids: list[str] | None = None
        self._window_next: tuple[int, str] | None = None  # (height, block hash) the window needs next

    # -- the anchor --------------------------------------------------------------------------

    def take_anchor(self, changes: list[Any], header: Any, certificate: Any) -> Anchor:
        anchor = verify_anchor(self.genesis, changes, header, certificate)
        self.anchor = anchor
        self.importer.put(dict(RULES.valset_writes(self.genesis, anchor.changes)))
        self._window_next = (anchor.height, anchor.header.block_hash)
        return anchor

    def _need_anchor(self) -> Anchor:
        if self.anchor is None:
            raise SyncVerifyError("no anchor taken yet")
        return self.anchor

    # -- the tx-id window --------------------------------------------------------------------

    @property
    def window_next(self) -> int | None:
        """The height the next window chunk must start at (None: the window is whole)."""
        return None if self._window_next is None else self._window_next[0]

    def take_window(self, summaries: Any) -> int:
        """Check a window chunk against the hash the chunk above named; returns its block count."""
        anchor = self._need_anchor()
        if self._window_next is None:
            raise SyncVerifyError("the window is already whole")
        parsed = parse_window(summaries)
        floor = window_floor(anchor.height)
        if parsed[-1].header.height < floor:
            raise SyncVerifyError(f"window: goes below its floor {floor}")
        top, top_hash = self._window_next
        prev_hash = verify_window(parsed, top, top_hash)
        if top == anchor.height:
            self.base_tx_ids = list(parsed[0].tx_ids)
        self.importer.put_window(parsed)
        lowest = parsed[-1].header.height
        self._window_next = None if lowest == floor else (lowest - 1, prev_hash)
        return len(parsed)

    # -- the state ---------------------------------------------------------------------------

    def take_chunk(self, chunk: StateChunk) -> int:
        """Verify a state chunk alone against the anchor's state_root and write it; returns its leaves."""
        anchor = self._need_anchor()
        verified = snapshot.verify_chunk(chunk, anchor.header.state_root, anchor.height)
        self.coverage.add(verified.lo, verified.hi, len(verified.leaves))  # refuses an overlap first
        self.importer.put(snapshot.chunk_writes(verified, RULES.leaf_writes))
        return len(verified.leaves)

    def finish(self) -> Store:
        anchor = self._need_anchor()
        if self._window_next is not None or self.base_tx_ids is None:
            raise SnapshotError("the sync cannot finish: the tx-id window is not whole")
        if self.coverage.complete:  # where the tree of S is stored: every node at version S
            root = (bytes.fromhex(anchor.header.state_root), smt.version_bytes(anchor.height))
            self.importer.put({smt.root_key(anchor.height): smt.root_record(root)})
        return self.importer.finish(anchor, self.base_tx_ids, self.coverage.complete)

    def abandon(self) -> None:
        self.importer.abandon()
