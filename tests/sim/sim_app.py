"""The simulator's application: one replica's ledger, tiny but real.

Blocks are real blocks of real signed txs; the state root is a hash chain of the committed tx
ids; the validator set of each height follows the committed chain, changed by `GOV_OP` txs
(add a standby key, remove a member, rotate a member's seat to a standby key) from the height
after the block that carries them, as in the real ledger. The "store" (`chain`, `record`) survives a simulated crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chain.block import Block, Certificate, Header
from chain.encoding import hash_hex
from chain.merkle import EMPTY_ROOT, tx_root
from chain.tx import Tx
from chain.validators import Validator, ValidatorSet
from chain.validity import BlockInvalid, check_limits
from node.consensus import pbft

if TYPE_CHECKING:
    from simnet import World

MAX_BLOCK_TXS = 16
# args {"add": public}, {"remove": public} or {"rotate": public, "to": public}: the sim's governance
GOV_OP = "sim.validators"


def next_state_root(prev_root: str, tx_ids: list[str]) -> str:
    return hash_hex(bytes.fromhex(prev_root) + b"".join(bytes.fromhex(t) for t in tx_ids))


def next_validators(world: World, vset: ValidatorSet, txs: tuple[Tx, ...] | list[Tx]) -> ValidatorSet:
    """The set after a block's governance txs: an add of a standby key, a remove of a member, or a
    rotation of a member's seat to a standby key (same place, node id and address, as
    contracts/governance.py's rotate_validator); anything else (an unknown key, a key already in
    the set, a remove that would leave fewer than 3) changes nothing."""
    members = list(vset.validators)
    for tx in txs:
        if tx.op != GOV_OP:
            continue
        args = tx.args
        keys = {v.public for v in members}
        if "add" in args and args["add"] in world.standby and args["add"] not in keys:
            members.append(world.standby[args["add"]])
        elif "remove" in args and len(members) > 3:
            members = [v for v in members if v.public != args["remove"]]
        elif "rotate" in args and args.get("to") in world.standby and args["to"] not in keys:
            members = [Validator(v.node_id, args["to"], v.address) if v.public == args["rotate"] else v for v in members]
    return vset if len(members) == vset.n and all(a == b for a, b in zip(members, vset.validators)) else ValidatorSet(tuple(members))


def set_at(valsets: list[tuple[int, ValidatorSet]], height: int) -> ValidatorSet:
    """The set certifying `height` from a list of (first height, set); later heights than any
    known change get the latest set: a replica cannot know more until it commits."""
    found = valsets[0][1]
    for start, vset in valsets:
        if start <= height:
            found = vset
    return found


class SimApp:
    """The application seam of one replica: its persisted chain and its view of the tx pool."""

    def __init__(self, world: World, idx: int) -> None:
        self.world = world
        self.idx = idx
        self.chain: list[tuple[Block, Certificate]] = []  # the "store": survives a crash
        self.record: pbft.VoteRecord | None = None  # likewise, SaveVotes lands here
        self.committed: set[str] = set()
        self.state_root = EMPTY_ROOT
        self.propose_hook: Callable[[Block], Block] | None = None  # Byzantine tampering
        self.valsets: list[tuple[int, ValidatorSet]] = [(1, world.vset)]  # (first height, set)

    def head(self) -> pbft.ChainHead:
        if not self.chain:
            return pbft.ChainHead(0, self.world.genesis.hash, None)
        block, cert = self.chain[-1]
        return pbft.ChainHead(block.height, block.block_hash, cert)

    def validator_set(self, height: int) -> ValidatorSet:
        return set_at(self.valsets, height)

    def pending(self) -> list[Tx]:
        return [t for t in self.world.arrived[self.idx] if t.tx_id not in self.committed]

    def has_pending(self) -> bool:
        return any(t.tx_id not in self.committed for t in self.world.arrived[self.idx])

    def build(self, height: int, view: int, txs: list[Tx], proposer: str, time_offset: int = 0) -> Block:
        if height <= len(self.chain):  # a block beside one we hold (a Byzantine proposer's rewrite)
            prev_hash = self.chain[height - 2][0].block_hash if height > 1 else self.world.genesis.hash
            prev_root = self.chain[height - 2][0].header.state_root if height > 1 else EMPTY_ROOT
        else:
            prev_hash, prev_root = self.head().block_hash, self.state_root
        ids = [t.tx_id for t in txs]
        vset = self.validator_set(height)
        header = Header(
            chain_id=self.world.chain_id,
            height=height,
            prev_hash=prev_hash,
            tx_root=tx_root(ids),
            state_root=next_state_root(prev_root, ids),
            receipts_root=EMPTY_ROOT,
            validators_hash=vset.hash,
            next_validators_hash=next_validators(self.world, vset, txs).hash,
            proposer=proposer,
            view=view,
            time=self.world.genesis.time + height + time_offset,
        )
        return Block(header, tuple(txs))

    def propose(self, height: int, view: int) -> Block | None:
        txs = self.pending()[: self.world.block_txs]
        if not txs:
            return None
        block = self.build(height, view, txs, self.validator_set(height).primary(view).public)
        return self.propose_hook(block) if self.propose_hook else block

    def validate(self, block: Block) -> bool:
        h = block.header
        if h.height != len(self.chain) + 1 or h.prev_hash != self.head().block_hash:
            return False
        vset = self.validator_set(h.height)
        if h.chain_id != self.world.chain_id or h.validators_hash != vset.hash:
            return False
        if h.next_validators_hash != next_validators(self.world, vset, block.txs).hash:
            return False
        if h.proposer != vset.primary(h.view).public or not block.txs:
            return False
        if tx_root(block.tx_ids) != h.tx_root or len(set(block.tx_ids)) != len(block.tx_ids):
            return False
        try:
            check_limits(block, self.world.params)  # the real ledger's rule (its txs expire too far for the rest)
        except BlockInvalid:
            return False
        if any(t.tx_id in self.committed or not self.world.tx_valid(t) for t in block.txs):
            return False
        return h.state_root == next_state_root(self.state_root, block.tx_ids)

    def persist(self, block: Block, cert: Certificate) -> None:
        assert block.height == len(self.chain) + 1, "the core committed out of order"
        self.chain.append((block, cert))
        self.committed.update(block.tx_ids)
        self.state_root = block.header.state_root
        vset = self.validator_set(block.height)
        nxt = next_validators(self.world, vset, block.txs)
        if nxt is not vset:
            self.valsets.append((block.height + 1, nxt))
