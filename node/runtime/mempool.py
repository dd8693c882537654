"""The pool of admitted, not yet committed transactions.

Usage, from the validator process (no asyncio here; call it from the event loop thread):

    pool = Mempool(chain_id, arg_validator=contracts.validate_args, is_committed=store_has_tx,
                   has_standing=ledger.has_standing, on_admitted=gossip_to_validators)
    pool.add(tx, next_height)                    # RPC; raises TxError
    pool.add_many(txs, next_height, gossip=False)  # from a peer's gossip; one result per tx
    batch = pool.take_batch(max_txs, max_bytes, next_height)   # the primary's proposal
    pool.verified(tx)                            # a replica checking a proposed block
    pool.remove_committed(block_tx_ids); pool.evict_expired(next_height)   # after each commit

Admission (`add`, `add_many`) runs every check a tx must pass before it may enter a block, cheap
ones first so junk costs little: chain id and expiry window against the next height, the
signer's standing on the committed state (the injected `has_standing`: only parties the ledger
knows may submit, contracts/standing.py), op and args (the injected `arg_validator`, normally
`contracts.validate_args`), already pending, already committed (the injected `is_committed`),
the signer's in-flight quota, room left, and last the Ed25519 signature, verified exactly once
here. Every refusal is a `chain.tx.TxError`; the codes added by this module are `not_permitted`
(no standing; RPC 403), `duplicate` (already pending or committed; RPC 409), `quota_exceeded`
(the signer already has `max_per_signer` txs pending; RPC 429) and `mempool_full` (RPC 429).

Standing is checked before the signature: it is public state, so refusing an outsider's tx
unverified tells nobody anything, and an outsider's flood costs a lookup per tx, not a verify.
A tx that names a known signer but carries a forged signature still fails at the signature.
Standing is never lost, so a tx admitted here stays admissible in every later block.

The consensus path asks `verified(tx)` instead of verifying again. It is keyed by tx_id AND
signature: the tx_id covers only the body, so a Byzantine primary could pair a known body with a
forged signature; such a tx is not "verified" and must be checked.

Order is arrival order (a dict keeps insertion order), so `take_batch` is FIFO and the same
arrivals always give the same batch. `take_batch` does not remove anything: a proposal may fail
(view change) and its txs must stay pending; they leave on `remove_committed` or
`evict_expired`. Pass the ids of an in-flight proposal as `exclude` to pick the next ones.

Gossip: txs admitted with `gossip=True` (from a client) are handed to `on_admitted`, which the
node broadcasts to the other validators; txs received by gossip are admitted with `gossip=False`
and the same checks, and are never re-gossiped.

Batch signature checks are serial. Measured on the project machine (2 cores, shared with other
work; 4,000 txs, best of 3, two runs): serial 55-61 us/tx, a 2-process pool 50-63 us/tx, a
2-thread pool 55-57 us/tx (PyNaCl holds the GIL for most of a verify). A pool gains at most 10%
here, and none where 4 validators share 2 cores as in a localnet, so it is not worth its cost.
`verify_signatures` is the one place to change on a host with cores to spare. Full admission
costs about 73 us/tx (10,000 txs through `add_many`), so the node should feed a 10,000-tx RPC
batch in chunks of a few hundred, yielding to the event loop between them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from chain.tx import Tx, TxError, check_for_chain
from contracts.standing import NOT_PERMITTED, not_permitted_message

log = logging.getLogger("titlechain.mempool")

ArgValidator = Callable[[str, dict[str, Any]], None]
"""Raises TxError("unknown_op" | "invalid_args") for an op or args no block may hold."""

# The node's defaults (node/runtime/config.py takes them from here; docs/operations.md states them).
DEFAULT_MAX_TXS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# One signer may have thousands of txs in flight, but no single one may fill the pool for the rest.
DEFAULT_MAX_PER_SIGNER = 5_000


def verify_signatures(txs: Sequence[Tx]) -> list[bool]:
    """Whether each tx's signature verifies, in order."""
    return [tx.signature_valid() for tx in txs]


@dataclass(frozen=True)
class _Entry:
    tx: Tx
    size: int  # bytes of the canonical encoding, as a block will carry it


class Mempool:
    def __init__(
        self,
        chain_id: str,
        *,
        arg_validator: ArgValidator,
        is_committed: Callable[[str], bool],
        has_standing: Callable[[str], bool],
        max_txs: int = DEFAULT_MAX_TXS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_per_signer: int = DEFAULT_MAX_PER_SIGNER,
        on_admitted: Callable[[Sequence[Tx]], None] | None = None,
    ) -> None:
        if max_txs <= 0 or max_bytes <= 0 or max_per_signer <= 0:
            raise ValueError("mempool bounds must be positive")
        self.chain_id = chain_id
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_signer = max_per_signer
        self._arg_validator = arg_validator
        self._is_committed = is_committed
        self._has_standing = has_standing
        self._on_admitted = on_admitted
        self._pending: dict[str, _Entry] = {}
        self._per_signer: dict[str, int] = {}  # signer -> txs pending; absent at 0
        self._bytes = 0

    # -- admission -------------------------------------------------------------------------

    def add(self, tx: Tx, next_height: int, *, gossip: bool = True) -> None:
        """Admit one parsed tx or raise TxError."""
        error = self.add_many([tx], next_height, gossip=gossip)[0]
        if error is not None:
            raise error

    def add_many(self, txs: Sequence[Tx], next_height: int, *, gossip: bool = True) -> list[TxError | None]:
        """Admit many txs; one result per tx, in order: None if admitted, else its TxError.

        A tx_id repeated within the batch is admitted once and the later copies are `duplicate`.
        Room is reserved before signatures are checked (so a full pool costs no verification),
        so near the bound a tx may be refused as `mempool_full` for room a bad-signature tx of
        the same batch held and then did not use.
        """
        results: list[TxError | None] = [None] * len(txs)
        candidates: list[int] = []
        claimed: set[str] = set()
        claimed_by: dict[str, int] = {}  # signer -> txs of this batch holding a place in its quota
        room_txs = self.max_txs - len(self._pending)
        room_bytes = self.max_bytes - self._bytes
        sizes: dict[int, int] = {}
        for i, tx in enumerate(txs):
            try:
                size = self._precheck(tx, next_height, claimed)
                self._check_quota(tx.signer, claimed_by.get(tx.signer, 0))
                if room_txs <= 0 or size > room_bytes:
                    raise TxError("mempool_full", "the mempool is full; retry later")
            except TxError as e:
                results[i] = e
                continue
            claimed.add(tx.tx_id)
            claimed_by[tx.signer] = claimed_by.get(tx.signer, 0) + 1
            room_txs -= 1
            room_bytes -= size
            sizes[i] = size
            candidates.append(i)
        valid = verify_signatures([txs[i] for i in candidates])
        admitted: list[Tx] = []
        for i, ok in zip(candidates, valid, strict=True):
            tx = txs[i]
            if not ok:
                results[i] = TxError("bad_signature", "signature does not verify for signer over this body")
                continue
            self._pending[tx.tx_id] = _Entry(tx, sizes[i])
            self._bytes += sizes[i]
            self._per_signer[tx.signer] = self._per_signer.get(tx.signer, 0) + 1
            admitted.append(tx)
        if admitted and gossip and self._on_admitted is not None:
            self._on_admitted(admitted)
        return results

    def _precheck(self, tx: Tx, next_height: int, claimed: AbstractSet[str]) -> int:
        """Every check but the signature and the bound; returns the tx's encoded size."""
        check_for_chain(tx, self.chain_id, next_height)
        if not self._has_standing(tx.signer):
            raise TxError(NOT_PERMITTED, not_permitted_message(tx.signer))
        self._arg_validator(tx.op, tx.args)
        tx_id = tx.tx_id
        if tx_id in self._pending or tx_id in claimed:
            raise TxError("duplicate", f"tx {tx_id} is already pending")
        if self._is_committed(tx_id):
            raise TxError("duplicate", f"tx {tx_id} is already committed")
        return len(tx.encode())

    def _check_quota(self, signer: str, claimed: int) -> None:
        if self._per_signer.get(signer, 0) + claimed >= self.max_per_signer:
            raise TxError(
                "quota_exceeded",
                f"signer {signer[:16]}… already has {self.max_per_signer} txs pending here; retry as they commit",
            )

    # -- the consensus side ----------------------------------------------------------------

    def verified(self, tx: Tx) -> bool:
        """True iff this exact tx (same body and signature) passed the signature check here."""
        entry = self._pending.get(tx.tx_id)
        return entry is not None and entry.tx.sig == tx.sig

    def take_batch(
        self, max_txs: int, max_bytes: int, next_height: int, *, exclude: AbstractSet[str] = frozenset()
    ) -> list[Tx]:
        """The oldest pending txs still valid at next_height, up to both limits; removes nothing.

        Stops at the first tx that would exceed max_bytes rather than skipping it, so an older
        tx is never overtaken by younger, smaller ones.
        """
        batch: list[Tx] = []
        used = 0
        for tx_id, entry in self._pending.items():
            if len(batch) >= max_txs:
                break
            if entry.tx.expires < next_height or tx_id in exclude:
                continue
            if used + entry.size > max_bytes:
                break
            batch.append(entry.tx)
            used += entry.size
        return batch

    def remove_committed(self, tx_ids: Iterable[str]) -> int:
        """Forget txs that a committed block carried; returns how many were pending."""
        removed = 0
        for tx_id in tx_ids:
            entry = self._pending.pop(tx_id, None)
            if entry is not None:
                self._forget(entry)
                removed += 1
        return removed

    def _forget(self, entry: _Entry) -> None:
        self._bytes -= entry.size
        signer = entry.tx.signer
        left = self._per_signer[signer] - 1
        if left:
            self._per_signer[signer] = left
        else:
            del self._per_signer[signer]

    def evict_expired(self, next_height: int) -> list[str]:
        """Drop txs that can no longer be included at next_height or later; returns their ids."""
        gone = [tx_id for tx_id, e in self._pending.items() if e.tx.expires < next_height]
        for tx_id in gone:
            self._forget(self._pending.pop(tx_id))
        if gone:
            log.info("evicted %d expired txs before height %d", len(gone), next_height)
        return gone

    # -- inspection ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._pending

    def get(self, tx_id: str) -> Tx | None:
        entry = self._pending.get(tx_id)
        return entry.tx if entry is not None else None

    def pending_of(self, signer: str) -> int:
        """How many of the signer's txs are pending (its in-flight count against the quota)."""
        return self._per_signer.get(signer, 0)

    @property
    def size_bytes(self) -> int:
        return self._bytes
