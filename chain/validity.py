"""Block validity: the one function every path that accepts a block calls.

A replica voting on a proposal (through the ledger: node/runtime/ledger.py `validate`, which the
consensus core reaches through its application), the ledger committing a certified block
fetched in catch-up (the same `validate`), and the audit replaying a chain (chain/audit.py) all
call `check_block`, so a rule stated here holds on every path, and a block one path refuses
no other path accepts.

What is here needs no re-execution: the header's links (chain, height, parent, validator set,
proposer), the block limits of the genesis parameters, the tx root, and each tx's chain,
expiry window, signature and novelty. What needs the state stays with its owner: the
contracts' admission rules and re-execution (contracts.apply.check_block_txs and apply_txs,
called by the ledger and by the re-executor the audit is handed), and the certificate (checked
against the validator set where a block is committed or audited, not where it is proposed).
The header's `time` is the proposer's clock, informational only (docs/protocol.md, "Blocks"):
no rule reads it. Which primary may propose in which view is a consensus rule
(node/consensus/pbft.py), not a property of the block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chain.block import Block
from chain.errors import ChainError
from chain.genesis import Params
from chain.merkle import tx_root
from chain.tx import Tx, TxError, check_for_chain
from chain.validators import ValidatorSet


class BlockInvalid(ChainError, ValueError):
    """A block no honest validator may vote for or commit; `rule` names the rule it breaks."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class Parent:
    """What a block must extend: its chain, and the height and hash of the block before it (0 and
    the genesis hash for the first block)."""

    chain_id: str
    height: int
    block_hash: str


# (index of the tx in its block, the tx) -> whether its signature verifies; each path knows which
# signatures it already checked (the mempool on arrival, the audit's workers ahead of replay)
SignatureCheck = Callable[[int, Tx], bool]
# tx id -> the height of the block that committed it before, or None
CommittedAt = Callable[[str], int | None]


def check_block(
    block: Block,
    parent: Parent,
    validators: ValidatorSet,
    params: Params,
    *,
    signature_ok: SignatureCheck,
    committed_at: CommittedAt,
) -> None:
    """Raise BlockInvalid unless `block` may follow `parent`, certified by `validators`.

    The rules are checked in a fixed order, so every path names the same first broken rule."""
    check_header(block, parent, validators)
    check_limits(block, params)
    _check_tx_root(block)
    for index, tx in enumerate(block.txs):
        _check_tx(index, tx, parent, signature_ok, committed_at)


def check_header(block: Block, parent: Parent, validators: ValidatorSet) -> None:
    h = block.header
    if h.chain_id != parent.chain_id:
        raise BlockInvalid("chain_id", f"block is for chain {h.chain_id!r}, not {parent.chain_id!r}")
    if h.height != parent.height + 1:
        raise BlockInvalid("height", f"block height {h.height}, expected {parent.height + 1}")
    if h.prev_hash != parent.block_hash:
        raise BlockInvalid("prev_hash", f"prev_hash does not link to the block at height {parent.height}")
    if h.validators_hash != validators.hash:
        raise BlockInvalid("validators_hash", "validators_hash is not the validator set of this height")
    if h.proposer not in validators.publics:
        raise BlockInvalid("proposer", "proposer is not a validator of this height")


def check_limits(block: Block, params: Params) -> None:
    """At most max_block_txs txs of at most max_block_bytes encoded in all (the genesis limits,
    counted as the mempool counts them). An honest primary never exceeds them; a larger block
    could outgrow the frames that carry it (push, fetch, sync), and a block certified but too
    big to send would stop every lagging node from catching up."""
    if len(block.txs) > params.max_block_txs:
        raise BlockInvalid("too_many_txs", f"{len(block.txs)} txs, the limit is {params.max_block_txs}")
    size = sum(len(t.encode()) for t in block.txs)
    if size > params.max_block_bytes:
        raise BlockInvalid("too_large", f"txs of {size} bytes encoded, the limit is {params.max_block_bytes}")


def _check_tx_root(block: Block) -> None:
    ids = block.tx_ids
    if tx_root(ids) != block.header.tx_root:
        raise BlockInvalid("tx_root", "tx_root does not match its txs")
    if len(set(ids)) != len(ids):
        raise BlockInvalid("duplicate_tx", "a tx appears twice")


def _check_tx(index: int, tx: Tx, parent: Parent, signature_ok: SignatureCheck, committed_at: CommittedAt) -> None:
    where = f"tx {index} ({tx.tx_id[:16]}…) refused"
    try:
        check_for_chain(tx, parent.chain_id, parent.height + 1)
    except TxError as e:
        raise BlockInvalid(e.code, f"{where} ({e.code}): {e.message}") from None
    if not signature_ok(index, tx):
        raise BlockInvalid("bad_signature", f"{where} (bad_signature): bad signature, not its signer's over its body")
    before = committed_at(tx.tx_id)
    if before is not None:
        raise BlockInvalid("duplicate", f"{where} (duplicate): already committed at height {before}")
