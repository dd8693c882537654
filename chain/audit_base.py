"""The audit's starting point for a data dir made by state sync: its base, checked from the genesis.

A synced store holds no block below its base S, so the audit cannot replay from the genesis. It
checks instead what the sync checked, again and from the store alone: block S's certificate
under the validator set that the stored changes (k/) reach from the genesis; the tx-id window
(y/ summaries linked by hash down from S, w/ equal to their tx ids); and the state at S, listed
from the tree under S's state_root (every leaf's l/ data) in chunks, each verified against that
root as a syncing peer's would be. The records the contracts keep for that state (`BaseRules`)
are recomputed from it, and the replay goes on from S + 1 like a full audit. What this cannot
check is the history below S: a full audit needs an archive node or a replay from the genesis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from chain import smt, snapshot
from chain.audit import _Bad as BaseError  # the audit's own failure: (height, reason)
from chain.encoding import decode
from chain.genesis import Genesis
from chain.snapshot import KeyReader, SnapshotError
from chain.store import Store
from chain.sync_anchor import (
    MAX_WINDOW_SUMMARIES,
    SyncVerifyError,
    ValidatorChange,
    parse_window,
    verify_anchor,
    verify_window,
    window_floor,
)
from chain.validators import ValidatorSet


class BaseRules(Protocol):
    """The records a store keeps beside the tree for a state it did not replay (contracts/snapshot_rules.py)."""

    def leaf_writes(self, key: bytes, value: bytes) -> Mapping[bytes, bytes]: ...

    def valset_writes(self, genesis: Genesis, changes: Sequence[ValidatorChange]) -> Mapping[bytes, bytes]: ...


@dataclass(frozen=True)
class BaseStart:
    """Where the replay of a synced store starts: the records at S and the chain's state there."""

    height: int
    block_hash: str
    state_root: str
    next_validators: ValidatorSet
    records: dict[bytes, bytes]
    window: dict[str, tuple[int, int]]  # tx id -> (height, index) of the window's txs


def base_start(store: Store, genesis: Genesis, rules: BaseRules) -> BaseStart:
    """Check a synced store's base from the genesis; raises BaseError naming the height at fault."""
    base = store.base
    assert base is not None
    s = base.height
    summary, cert = store.get_summary(s), store.get_certificate(s)
    if summary is None or cert is None:
        raise BaseError(s, "the base block's summary or certificate is missing")
    changes = [decode(raw) for _, raw in store.iterate(b"k/")]
    try:
        anchor = verify_anchor(genesis, changes, summary[0].to_plain(), cert.to_plain())
    except SyncVerifyError as e:
        raise BaseError(s, f"the base does not link to the genesis: {e}") from None
    if (anchor.header.block_hash, anchor.header.state_root) != (base.block_hash, base.state_root):
        raise BaseError(s, "the base record (m/base) is not the certified block")
    window = _window(store, s, base.block_hash, summary[1])
    records: dict[bytes, bytes] = dict(rules.valset_writes(genesis, anchor.changes))
    try:
        root = smt.root_at(store.get, s)
        records[smt.root_key(s)] = smt.root_record(root)
        for chunk in snapshot.iter_chunks(KeyReader(store.get), root):
            verified = snapshot.verify_chunk(chunk, base.state_root, s)
            records.update(snapshot.chunk_writes(verified, rules.leaf_writes))
    except (SnapshotError, ValueError) as e:
        raise BaseError(s, f"the state at the base does not verify against its state_root: {e}") from None
    return BaseStart(s, base.block_hash, base.state_root, anchor.next_validators, records, window)


def _window(store: Store, s: int, top_hash: str, base_tx_ids: list[str]) -> dict[str, tuple[int, int]]:
    floor = window_floor(s)
    plain = [decode(raw) for _, raw in store.iterate(b"y/", reverse=True)]
    try:
        # parsed in pages of one window chunk's size, the bound a peer's message is held to
        summaries = [x for i in range(0, len(plain), MAX_WINDOW_SUMMARIES) for x in parse_window(plain[i : i + MAX_WINDOW_SUMMARIES])]
        verify_window(summaries, s, top_hash)
    except SyncVerifyError as e:
        raise BaseError(s, f"the tx-id window (y/) does not link down from the base: {e}") from None
    if not summaries or summaries[-1].header.height != floor or list(summaries[0].tx_ids) != base_tx_ids:
        raise BaseError(s, f"the tx-id window (y/) does not hold exactly the blocks {floor}..{s}")
    window = {tx_id: (x.header.height, i) for x in summaries for i, tx_id in enumerate(x.tx_ids)}
    stored = {k[2:].decode(errors="replace"): tuple(decode(v)) for k, v in store.iterate(b"w/")}
    if stored != window:
        raise BaseError(s, "the window's tx ids (w/) are not those of its blocks (y/)")
    return window
