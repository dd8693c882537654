"""A consortium with its genesis state in a MemoryView, and a helper that signs and executes txs."""

from __future__ import annotations

from typing import Any

from factories import Consortium, make_consortium

from chain.crypto import KeyPair
from chain.encoding import H
from chain.tx import Tx, sign_tx
from contracts import MemoryView, execute, genesis_writes, read_asset, validate_args

EXPIRES = 1_000_000


def doc(label: str) -> str:
    return H(b"doc/" + label.encode()).hex()


class World:
    def __init__(self, consortium: Consortium | None = None) -> None:
        self.c = consortium or make_consortium()
        self.state = MemoryView(genesis_writes(self.c.genesis))
        self.height = 1
        self._nonce = 0

    def sign(self, key: KeyPair, op: str, args: dict[str, Any]) -> Tx:
        self._nonce += 1
        return sign_tx(key, chain_id=self.c.genesis.chain_id, op=op, args=args, expires=EXPIRES, nonce=f"n{self._nonce}")

    def run_tx(self, tx: Tx) -> tuple[dict[str, Any], dict[str, Any]]:
        """Execute one validated tx as the only tx of the next block; apply its writes."""
        validate_args(tx.op, tx.args)
        writes, receipt = execute(self.state, tx, self.height, 0)
        assert execute(self.state, tx, self.height, 0) == (writes, receipt), "execute is not a function of its inputs"
        self.state.apply(writes)
        self.height += 1
        return writes, receipt

    def run(self, key: KeyPair, op: str, args: dict[str, Any]) -> dict[str, Any]:
        return self.run_tx(self.sign(key, op, args))[1]

    def ok(self, key: KeyPair, op: str, args: dict[str, Any]) -> dict[str, Any]:
        receipt = self.run(key, op, args)
        assert receipt["status"] == "ok", receipt
        return receipt

    def rejected(self, key: KeyPair, op: str, args: dict[str, Any]) -> str:
        before = self.state.items()
        tx = self.sign(key, op, args)
        writes, receipt = self.run_tx(tx)
        assert receipt["status"] == "rejected", receipt
        assert writes == {} and receipt["events"] == [] and self.state.items() == before
        return receipt["error"]["code"]

    def register(self, asset_id: str, owner: KeyPair, doc_label: str | None = None, cls: str = "warehouse_receipt") -> None:
        args = {"asset_id": asset_id, "class": cls, "owner": owner.public, "doc_hash": doc(doc_label or asset_id), "meta": {}}
        self.ok(self.c.issuer, "asset.register", args)

    def asset(self, asset_id: str) -> dict[str, Any]:
        a = read_asset(self.state, asset_id)
        assert a is not None
        return a
