"""An in-memory `NodeApi` for the RPC tests: real tx parsing and signature checks, a dict mempool,
and `commit()` to make a block of what is pending, resolve waiters and publish the event.

It is not a ledger: every well-formed tx commits with receipt `ok`, and `asset.register` is the only
op with an effect (so that asset, history, proof and account routes have something to answer).
The tests touch it only through `RpcHarness`-style calls (`commit`, `ready`, `consortium`), so the
same tests can later be run against a real single-validator node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from factories import Consortium, make_block, make_consortium

from chain.block import Block, Certificate
from chain.proofcheck import PROOF_VERSION
from chain.tx import Tx, TxError, check_for_chain, check_signature
from contracts.args import ASSET_ID_PATTERN
from node.rpc import paging
from node.rpc.api import CommittedBlockEvent
from node.runtime.metrics import NodeMetrics

KNOWN_OPS = frozenset(
    {
        "asset.register", "asset.transfer", "asset.pledge", "asset.release", "asset.freeze", "asset.unfreeze",
        "asset.force_transfer", "asset.amend", "asset.redeem", "gov.propose", "gov.approve",
    }
)



def submit_each(submit: Callable[[Tx], None], txs: list[Tx]) -> list[TxError | None]:
    """`NodeApi.submit_many` for a fake that admits tx by tx: each one's error, or None."""
    results: list[TxError | None] = []
    for tx in txs:
        try:
            submit(tx)
        except TxError as e:
            results.append(e)
        else:
            results.append(None)
    return results

class FakeNode:
    role = "validator"

    def __init__(self, *, mempool_cap: int = 1000, queue_size: int = 64, consortium: Consortium | None = None) -> None:
        self.consortium = consortium or make_consortium(4)
        self.genesis = self.consortium.genesis
        self.ready_flag = True
        self.mempool_cap = mempool_cap
        self.queue_size = queue_size
        self.mempool: dict[str, Tx] = {}
        self.blocks: list[tuple[Block, Certificate, list[dict[str, Any]]]] = []
        self.committed: dict[str, tuple[int, int]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.subscribers: list[asyncio.Queue[CommittedBlockEvent]] = []
        self.dropped_subscribers = 0
        self.metrics = NodeMetrics()
        self.evidence_records: list[dict[str, Any]] = []  # full records, in key order (tests set them)
        self.fail_status = False  # makes status() raise, to test the internal-error path

    # -- NodeApi -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.ready_flag

    def not_ready_reason(self) -> str | None:
        return None if self.ready_flag else "connected to 0 of 3 peers, a quorum needs 2"

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def height(self) -> int:
        return len(self.blocks)

    @property
    def base_height(self) -> int:
        return 0  # a node that replayed from the genesis

    def status(self) -> dict[str, Any]:
        if self.fail_status:
            raise RuntimeError("status broke (test)")
        vs = self.genesis.validators
        return {
            "node_id": vs.validators[0].node_id,
            "chain_id": self.chain_id,
            "height": self.height,
            "view": 0,
            "primary": vs.primary(0).node_id,
            "validators": vs.to_plain(),
            "peers": [{"node_id": v.node_id, "connected": True} for v in vs.validators[1:]],
            "mempool": len(self.mempool),
            "ready": self.ready,
        }

    def genesis_doc(self) -> dict[str, Any]:
        return self.genesis.doc

    def submit(self, tx: Tx) -> None:
        check_signature(tx)
        check_for_chain(tx, self.chain_id, self.height + 1)
        if tx.op not in KNOWN_OPS:
            raise TxError("unknown_op", f"no operation {tx.op!r}")
        if tx.op.startswith("asset.") and not ASSET_ID_PATTERN.matches(tx.args.get("asset_id")):
            raise TxError("invalid_args", "args.asset_id: must be an asset id")
        if tx.tx_id in self.mempool or tx.tx_id in self.committed:
            raise TxError("duplicate", f"tx {tx.tx_id} is already pending or committed")
        if len(self.mempool) >= self.mempool_cap:
            raise TxError("mempool_full", "the mempool is full; retry later")
        self.mempool[tx.tx_id] = tx
        self.metrics.set_mempool(len(self.mempool))

    def submit_many(self, txs: list[Tx]) -> list[TxError | None]:
        return submit_each(self.submit, txs)

    def wait_committed(self, tx_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if tx_id in self.committed:
            fut.set_result(self._receipt(tx_id))
        else:
            self.waiters.setdefault(tx_id, []).append(fut)
        return fut

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        if tx_id in self.mempool:
            return {"tx_id": tx_id, "status": "pending", "height": None, "receipt": None, "tx": self.mempool[tx_id].to_plain()}
        if tx_id in self.committed:
            height, index = self.committed[tx_id]
            tx = self.blocks[height - 1][0].txs[index]
            return {"tx_id": tx_id, "status": "committed", "height": height, "receipt": self._receipt(tx_id), "tx": tx.to_plain()}
        return None

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        return self.assets.get(asset_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        entries = self.histories.get(asset_id, [])
        start = 0
        if cursor is not None:
            at = paging.parse_history_cursor(cursor)
            start = next((i for i, e in enumerate(entries) if (e["height"], e["index"]) >= at), len(entries))
        if asset_id not in self.assets:
            return None
        page, nxt = paging.page_of(entries, start, limit, lambda e: paging.history_cursor(e["height"], e["index"]))
        return {"asset_id": asset_id, "entries": page, "next": nxt}

    def proof(self, asset_id: str) -> dict[str, Any] | None:
        """The shape of a proof, but its state path is empty: the fake keeps no state tree."""
        if not self.blocks:
            return None
        state = self.assets.get(asset_id)
        block, cert, _ = self.blocks[-1]
        return {
            "version": PROOF_VERSION, "claim": "absence" if state is None else "ownership",
            "chain_id": self.genesis.chain_id, "genesis_hash": self.genesis.hash, "asset_id": asset_id,
            "asset": state, "state_proof": {"levels": [], "leaf": None},
            "header": block.header.to_plain(), "certificate": cert.to_plain(), "validator_changes": [],
        }

    def account(self, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT) -> dict[str, Any]:
        roles = [dict(g) for g in self.genesis.roles.get(account, ())]
        if account in self.genesis.members:
            roles.insert(0, {"role": "member"})
        owned = sorted(a for a, s in self.assets.items() if s["owner"] == account)
        since = 0 if roles else min((self.assets[a]["registered_at"] for a in owned), default=None)
        start = 0 if cursor is None else sum(1 for a in owned if a < paging.check_account_cursor(cursor))
        page, nxt = paging.page_of(owned, start, limit, lambda a: a)
        return {"account": account, "roles": roles, "assets": page, "next": nxt, "standing_since": since}

    def block(self, height: int) -> dict[str, Any] | None:
        if not 1 <= height <= self.height:
            return None
        block, cert, _ = self.blocks[height - 1]
        return {"header": block.header.to_plain(), "block_hash": block.block_hash, "tx_ids": block.tx_ids, "certificate": cert.to_plain()}

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        if not 1 <= height <= self.height:
            return None
        block, _, receipts = self.blocks[height - 1]
        return CommittedBlockEvent(height, block.block_hash, block.header.to_plain(), tuple(block.tx_ids), tuple(receipts))

    def subscribe(self) -> asyncio.Queue[CommittedBlockEvent]:
        q: asyncio.Queue[CommittedBlockEvent] = asyncio.Queue(maxsize=self.queue_size)
        self.subscribers.append(q)
        return q

    def unsubscribe(self, queue: asyncio.Queue[CommittedBlockEvent]) -> None:
        if queue in self.subscribers:
            self.subscribers.remove(queue)

    def evidence(self, offset: int, limit: int, validator: str | None) -> dict[str, Any]:
        records = [r for r in self.evidence_records if validator is None or r["validator"] == validator]
        return {"total": len(records), "offset": offset, "evidence": records[offset : offset + limit]}

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    # -- test controls -------------------------------------------------------------------------

    def commit(self, publish: bool = True) -> CommittedBlockEvent:
        """Commit everything pending as one block (possibly empty) and tell waiters and subscribers
        (unless `publish` is false: a node that lost the event, which a stream must survive)."""
        height = self.height + 1
        prev = self.blocks[-1][0].block_hash if self.blocks else self.genesis.hash
        txs = list(self.mempool.values())
        self.mempool.clear()
        block, cert = make_block(self.consortium, height, prev, txs)
        receipts = []
        for index, tx in enumerate(txs):
            receipts.append({"tx_id": tx.tx_id, "height": height, "index": index, "status": "ok", "error": None, "events": []})
            self.committed[tx.tx_id] = (height, index)
            self._apply(tx, height, index)
        self.blocks.append((block, cert, receipts))
        self.metrics.on_commit(height, len(txs), 0, [0.01] * len(txs))
        self.metrics.set_mempool(0)
        for r in receipts:
            for fut in self.waiters.pop(r["tx_id"], []):
                if not fut.done():
                    fut.set_result(r)
        ev = self.block_event(height)
        assert ev is not None
        for q in list(self.subscribers) if publish else ():
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                # The node's policy: a subscriber that cannot keep up is dropped, never waited for.
                self.subscribers.remove(q)
                self.dropped_subscribers += 1
        return ev

    def _receipt(self, tx_id: str) -> dict[str, Any]:
        height, index = self.committed[tx_id]
        return self.blocks[height - 1][2][index]

    def _apply(self, tx: Tx, height: int, index: int) -> None:
        asset_id = tx.args.get("asset_id")
        if type(asset_id) is not str:
            return
        if tx.op == "asset.register" and asset_id not in self.assets:
            a = tx.args
            self.assets[asset_id] = {
                "asset_id": asset_id, "class": a.get("class", ""), "issuer": tx.signer, "owner": a.get("owner", tx.signer),
                "status": "active", "doc_hash": a.get("doc_hash", ""), "meta": a.get("meta", {}), "pledgee": None,
                "registered_at": height, "updated_at": height, "version": 1,
            }
        elif tx.op == "asset.transfer" and asset_id in self.assets:
            s = self.assets[asset_id]
            s.update(owner=tx.args.get("to", s["owner"]), updated_at=height, version=s["version"] + 1)
        if asset_id in self.assets:  # as the ledger: only ids an asset holds are indexed
            self.histories.setdefault(asset_id, []).append(
                {"height": height, "index": index, "tx_id": tx.tx_id, "op": tx.op, "signer": tx.signer, "status": "ok"}
            )


# -- test helpers shared by tests/unit/test_rpc_*.py ---------------------------------------------


def signed(node: FakeNode, op: str = "asset.register", args: dict[str, Any] | None = None, *,
           key: Any = None, expires: int | None = None, chain_id: str | None = None, nonce: str | None = None) -> Tx:
    """A tx signed by the consortium's issuer (by default) registering a fresh asset."""
    from chain.tx import sign_tx

    c = node.consortium
    key = key or c.issuer
    if args is None:
        n = nonce or str(len(node.mempool) + len(node.committed))
        args = {"asset_id": f"WR-{n}-{key.public[:6]}", "class": "warehouse_receipt", "owner": c.users[0].public,
                "doc_hash": "ab" * 32, "meta": {}}
    return sign_tx(key, chain_id=chain_id or node.chain_id, op=op, args=args,
                   expires=node.height + 100 if expires is None else expires, nonce=nonce)


def check_answer(method: str, template: str, status: int, body: Any) -> None:
    """Fail unless the route's table row declares this status and body fits the model declared for it."""
    from node.rpc.routes import find_route

    route = find_route(method, template)
    responses = route.responses
    assert status in responses or status in (401, 403), f"{method} {template} answered undeclared status {status}: {body}"
    model = responses.get(status)
    if status >= 400:
        from node.rpc.models import ErrorResponse

        model = ErrorResponse
    if model is not None:
        model.model_validate(body)


def rpc_client(node: FakeNode, **app_options: Any) -> Any:
    """An aiohttp TestClient over make_app(node); use as `async with rpc_client(node) as client`."""
    from aiohttp.test_utils import TestClient, TestServer

    from node.rpc.server import make_app

    return TestClient(TestServer(make_app(node, **app_options)))


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Wait for condition() to hold, yielding to the loop; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.002)
