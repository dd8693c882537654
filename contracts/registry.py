"""The op table: each op's args schema and handler, and the two entry points built on it.

`validate_args` is the static gate (no state) a tx passes before it may enter a block;
`execute` runs a tx that passed it against a state view and never raises for it: every
contract failure becomes a receipt with status "rejected", an error code and no writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.encoding import Value
from chain.receipt import Receipt, ReceiptError
from chain.tx import Tx, TxError
from contracts import args as a
from contracts import assets, governance, standing
from contracts.result import Effects, Rejection
from contracts.state import StateView

Handler = Callable[[StateView, Tx, int], Effects]


@dataclass(frozen=True)
class Op:
    schema: a.Schema
    handler: Handler


def _schema(*args: a.Arg) -> a.Schema:
    return a.Schema(tuple(args))


ASSET_ID = a.Arg("asset_id", a.asset_id)
REASON = a.Arg("reason", a.reason)

OP_TABLE: dict[str, Op] = {
    "asset.register": Op(
        _schema(
            ASSET_ID,
            a.Arg("class", a.class_name),
            a.Arg("owner", a.account),
            a.Arg("doc_hash", a.hash_hex),
            a.Arg("meta", a.meta),
        ),
        assets.process_register,
    ),
    "asset.transfer": Op(_schema(ASSET_ID, a.Arg("to", a.account)), assets.process_transfer),
    "asset.pledge": Op(
        _schema(ASSET_ID, a.Arg("pledgee", a.account), a.Arg("terms_hash", a.hash_hex)), assets.process_pledge
    ),
    "asset.release": Op(_schema(ASSET_ID), assets.process_release),
    "asset.freeze": Op(_schema(ASSET_ID, REASON), assets.process_freeze),
    "asset.unfreeze": Op(_schema(ASSET_ID, REASON), assets.process_unfreeze),
    "asset.force_transfer": Op(
        _schema(ASSET_ID, a.Arg("to", a.account), a.Arg("order_hash", a.hash_hex)), assets.process_force_transfer
    ),
    "asset.amend": Op(_schema(ASSET_ID, a.Arg("doc_hash", a.hash_hex), REASON), assets.process_amend),
    "asset.redeem": Op(_schema(ASSET_ID), assets.process_redeem),
    "gov.propose": Op(governance.PROPOSE_SCHEMA, governance.process_propose),
    "gov.approve": Op(governance.APPROVE_SCHEMA, governance.process_approve),
}

OPS: frozenset[str] = frozenset(OP_TABLE)


def validate_args(op: str, args: dict[str, Any]) -> None:
    """Raise TxError("unknown_op") or TxError("invalid_args", naming the arg) unless well formed."""
    spec = OP_TABLE.get(op)
    if spec is None:
        raise TxError("unknown_op", f"unknown op {op!r}; known: {', '.join(sorted(OPS))}")
    spec.schema.validate(args)


def execute(view: StateView, tx: Tx, height: int, index: int) -> tuple[dict[str, Value | None], Receipt]:
    """(writes, receipt) of one tx at (height, index); writes are {} when it is rejected.

    An accepted tx's writes include the standing its effects confer (contracts/standing.py).

    Precondition: validate_args(tx.op, tx.args) passed (an unknown op raises TxError here).
    """
    spec = OP_TABLE.get(tx.op)
    if spec is None:
        raise TxError("unknown_op", f"unknown op {tx.op!r}")
    try:
        effects = spec.handler(view, tx, height)
    except Rejection as r:
        error: ReceiptError = {"code": r.code, "message": r.message}
        return {}, Receipt(tx_id=tx.tx_id, height=height, index=index, status="rejected", error=error, events=[])
    writes = dict(effects.writes)
    writes.update(standing.gained(view, writes, height))
    return writes, Receipt(tx_id=tx.tx_id, height=height, index=index, status="ok", error=None, events=list(effects.events))
