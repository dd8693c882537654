"""The apply path: a block's txs executed in order on the committed state, and all it writes.

Store keys written here (beside the store's own, chain/store.py):

    s/<state key>                          canonical state value (contracts/state.py keys)
    n/, r/, z/                             the authenticated-state tree's nodes, roots by height and
                                           retired-node marks (chain/smt.py)
    h/<asset_id>/<height:012d>/<index:06d> b"": every committed tx naming an existing asset; the entry is
                                           built from the tx's record (history_entry)
    o/<account>/<asset_id>                 b"": the account owns the asset (redeemed ones too)
    v/<height:012d>                        canonical validator list certifying blocks from height on

The state root commits to every state key through the tree, keyed by the state key's UTF-8
bytes with the value's canonical bytes. The other prefixes are indexes derived from the blocks
and receipts; the audit recomputes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgpack

from chain import smt
from chain.block import Block
from chain.encoding import H, Value, canonical
from chain.genesis import Genesis
from chain.merkle import merkle_root
from chain.receipt import Receipt
from chain.store import Store, StoreError
from chain.tx import Tx
from chain.validators import ValidatorSet
from contracts.genesis_state import genesis_writes
from contracts.registry import execute, validate_args
from contracts.standing import check_standing
from contracts.state import ASSET_PREFIX, VALIDATORS_KEY, MemoryView, asset_key, read_validator_set

Reader = Callable[[bytes], bytes | None]  # raw store key -> bytes

STATE_PREFIX = b"s/"
HISTORY_PREFIX = b"h/"
OWNER_PREFIX = b"o/"
VALSET_PREFIX = b"v/"


def state_key(key: str) -> bytes:
    return STATE_PREFIX + key.encode()


def history_key(asset_id: str, height: int, index: int) -> bytes:
    return b"%s%s/%012d/%06d" % (HISTORY_PREFIX, asset_id.encode(), height, index)


def history_place(key: bytes) -> tuple[int, int]:
    """(height, index) of the tx an h/ key indexes (the key ends in <height:012d>/<index:06d>)."""
    return int(key[-19:-7]), int(key[-6:])


def history_entry(height: int, index: int, tx: dict[str, Any], receipt: Receipt) -> dict[str, Any]:
    """One entry of an asset's history (docs/rpc.md), from its tx (plain) and receipt as stored."""
    body = tx["body"]
    return {
        "height": height,
        "index": index,
        "tx_id": receipt["tx_id"],
        "op": body["op"],
        "signer": body["signer"],
        "status": receipt["status"],
        "error": receipt["error"],
        "events": receipt["events"],
    }


def stored_history_entry(store: Store, key: bytes) -> dict[str, Any]:
    """The history entry an h/ key of the store indexes, built from its tx's record."""
    height, index = history_place(key)
    entry = store.get_tx_at(height, index)
    if entry is None:
        raise StoreError(f"{store.path}: damaged data: history names a tx at {height}/{index} the store lacks")
    return history_entry(height, index, entry.tx, entry.receipt)


def owner_key(account: str, asset_id: str) -> bytes:
    return b"%s%s/%s" % (OWNER_PREFIX, account.encode(), asset_id.encode())


def valset_key(height: int) -> bytes:
    return b"%s%012d" % (VALSET_PREFIX, height)


@dataclass(frozen=True)
class ApplyResult:
    # what the block writes, in two parts: the state tree's records (n/, l/, z/ and r/, chain/smt.py),
    # and all the others (s/, h/, o/, v/). The audit keeps them apart: it compares the tree's records
    # with the store block by block and holds only the others for its final comparison.
    records: dict[bytes, bytes | None]
    tree: smt.TreeWrites
    receipts: list[Receipt]
    state_root: str
    receipts_root: str
    next_validators: ValidatorSet
    packed_receipts: tuple[bytes, ...]  # canonical(receipt) of each receipt, as the store keeps them

    @cached_property
    def writes(self) -> dict[bytes, bytes | None]:
        """Everything the block writes (its batch): the records and the tree's."""
        return {**self.records, **self.tree}


def pack(v: Value) -> bytes:
    """canonical(v) for a value the contracts built from checked inputs, without re-checking it.

    The hot path encodes thousands of values per block; chain.encoding.canonical checks every
    node of each. Contract outputs are plain values by construction (a test holds the two
    encoders equal), so only the key order needs establishing here.
    """
    out: bytes = msgpack.packb(_sorted(v), use_bin_type=True)  # msgpack is untyped
    return out


def _sorted(v: Value) -> Value:
    # a call only for a nested dict or list: most of a value's members are strings and ints, and a
    # call for each was most of pack's time. Dict keys are distinct, so sorting items compares keys.
    t = type(v)
    if t is dict:
        return {k: _sorted(x) if type(x) in _NESTED else x for k, x in sorted(v.items())}
    if t is list:
        return [_sorted(x) if type(x) in _NESTED else x for x in v]
    return v


_NESTED = (dict, list)


def unpack(raw: bytes) -> Value:
    """A value this node's apply path wrote itself (the audit compares the raw bytes)."""
    return msgpack.unpackb(raw, raw=False, use_list=True)


class StoreView:
    """Committed state values read from the store, decoded once per key per block."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._cache: dict[str, Value | None] = {}

    def get(self, key: str) -> Value | None:
        try:
            return self._cache[key]
        except KeyError:
            raw = self._read(state_key(key))
            value = None if raw is None else unpack(raw)
            self._cache[key] = value
            return value


def receipts_root(receipts: Sequence[Receipt]) -> str:
    return _receipts_encoded(receipts)[0]


def _receipts_encoded(receipts: Sequence[Receipt]) -> tuple[str, tuple[bytes, ...]]:
    """(receipts root, canonical bytes of each receipt), each receipt packed once for both."""
    packed = tuple(pack(r) for r in receipts)
    return merkle_root([H(p) for p in packed]), packed


def genesis_state(genesis: Genesis) -> ApplyResult:
    """The height-0 state: its store writes (for Store.create_or_open) and root."""
    values = genesis_writes(genesis)
    changes = {k.encode(): canonical(v) for k, v in values.items() if v is not None}
    root, nodes = smt.update(smt.EMPTY_REF_ROOT, changes, lambda key: None, 0)
    writes: dict[bytes, bytes | None] = {STATE_PREFIX + k: v for k, v in changes.items()}
    vset = read_validator_set(MemoryView(values))
    writes[valset_key(1)] = canonical(vset.to_plain())
    rroot, rbytes = _receipts_encoded([])
    return ApplyResult(writes, nodes, [], root, rroot, vset, rbytes)


def apply_txs(read: Reader, prev_state_root: str, txs: Sequence[Tx], height: int) -> ApplyResult:
    """Execute txs (signatures and format already checked) at height on the state at read.

    `read` sees the committed store at height-1; nothing is written, the writes are returned.
    """
    base = StoreView(read)
    overlay = MemoryView(base=base)
    changed: dict[str, Value | None] = {}
    receipts: list[Receipt] = []
    writes: dict[bytes, bytes | None] = {}
    for index, tx in enumerate(txs):
        tx_writes, receipt = execute(overlay, tx, height, index)
        if tx_writes:
            overlay.apply(tx_writes)
            changed.update(tx_writes)
        receipts.append(receipt)
        asset_id = tx.args.get("asset_id")
        # indexed only under an id an asset holds (after this tx: a registration creates it). A
        # rejected tx naming an unregistered id stays committed with its receipt, but must not
        # seed a history that a later registration of that id would inherit.
        if type(asset_id) is str and overlay.get(asset_key(asset_id)) is not None:
            # empty: the entry is read from the tx's own record (history_entry), not written twice
            writes[history_key(asset_id, height, index)] = b""
    smt_changes: dict[bytes, bytes | None] = {}
    for key in sorted(changed):
        value = changed[key]
        encoded = None if value is None else pack(value)
        writes[state_key(key)] = encoded
        smt_changes[key.encode()] = encoded
        if key.startswith(ASSET_PREFIX):
            _reindex_owner(writes, key[len(ASSET_PREFIX) :], base.get(key), value)
    root, nodes = smt.update(_parent_root(read, prev_state_root, height), smt_changes, read, height)
    next_validators = read_validator_set(overlay)
    if VALIDATORS_KEY in changed and base.get(VALIDATORS_KEY) != changed[VALIDATORS_KEY]:
        writes[valset_key(height + 1)] = canonical(next_validators.to_plain())
    rroot, rbytes = _receipts_encoded(receipts)
    return ApplyResult(writes, nodes, receipts, root, rroot, next_validators, rbytes)


def _reindex_owner(writes: dict[bytes, bytes | None], asset_id: str, before: Value | None, after: Value | None) -> None:
    old = before.get("owner") if isinstance(before, dict) else None
    new = after.get("owner") if isinstance(after, dict) else None
    if old == new:
        return
    if old is not None:
        writes[owner_key(old, asset_id)] = None
    if new is not None:
        writes[owner_key(new, asset_id)] = b""


def _parent_root(read: Reader, prev_state_root: str, height: int) -> smt.RootRef:
    """Where the state tree of height-1 is stored; it must be the root the caller builds on."""
    root = smt.root_at(read, height - 1)
    if root[0].hex() != prev_state_root:
        raise smt.SmtError(f"the stored state root of height {height - 1} is not {prev_state_root[:16]}…")
    return root


def check_args(txs: Sequence[Tx]) -> None:
    """Raise TxError unless every tx's op exists and its args are well formed."""
    for tx in txs:
        validate_args(tx.op, tx.args)


def check_block_txs(read: Reader, txs: Sequence[Tx]) -> None:
    """The state-dependent admission rules a block's txs must meet, on the block's parent state at
    `read`: ops and args well formed, and every signer with standing (contracts/standing.py).
    Consensus (node/runtime/ledger.py) and the audit (`reexecute`) both call this one function."""
    check_args(txs)
    check_standing(StoreView(read), txs)


def reexecute(read: Reader, genesis: Genesis, block: Block | None, prev_state_root: str = "") -> ApplyResult:
    """The re-executor the audit is handed (chain/ may not import contracts/).

    With block None: the genesis state. Otherwise the block's txs, admission checked first.
    """
    if block is None:
        return genesis_state(genesis)
    check_block_txs(read, block.txs)
    return apply_txs(read, prev_state_root, block.txs, block.height)
