"""A real ledger behind the real RPC, in-process, for CLI tests that need true answers over HTTP.

`LedgerNode` is a `NodeApi` over a `LedgerChain` (tests/ledger_fixtures.py): reads come from the
ledger through `node.explorer.sources.LedgerSource` (the same shapes a validator serves), a submitted tx is
checked like a node would (signature, chain, expiry window, standing, args, duplicates) and committed in a
block of its own on the next turn of the event loop, with real certificates. No consensus, one
process: enough for the CLI to submit, wait for receipts, explore, fetch proofs and audit.

`serve_in_thread(api)` runs `node.rpc.server.serve` on 127.0.0.1, port 0, in a background thread with
its own event loop, and yields the URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ledger_fixtures import LedgerChain, build_story
from rpc_fake import submit_each

from chain.tx import Tx, TxError, check_for_chain, check_signature
from contracts.apply import check_args
from contracts.standing import NOT_PERMITTED, not_permitted_message
from node.explorer.sources import LedgerSource, NotFound
from node.rpc import views
from node.rpc.api import CommittedBlockEvent
from node.rpc.server import serve
from node.runtime.evidence_store import EvidenceStore
from node.runtime.metrics import NodeMetrics


class LedgerNode:
    role = "validator"

    def __init__(self, chain: LedgerChain, node_id: str = "v0") -> None:
        self.chain = chain
        self.ledger = chain.ledger
        self.reads = LedgerSource(chain.ledger)
        self.node_id = node_id
        self.ready_flag = True
        self.pending: dict[str, Tx] = {}
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.metrics = NodeMetrics()
        self.evidence_store = EvidenceStore(self.ledger.store)

    def _or_none(self, read: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except NotFound:
            return None

    # -- NodeApi ---------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.ready_flag

    def not_ready_reason(self) -> str | None:
        return None if self.ready_flag else "connected to 0 of 3 peers, a quorum needs 2"

    @property
    def chain_id(self) -> str:
        return self.ledger.genesis.chain_id

    @property
    def height(self) -> int:
        return self.ledger.height

    def status(self) -> dict[str, Any]:
        st = self.reads.status()
        del st["data_dir"]
        return {**st, "node_id": self.node_id, "ready": self.ready, "mempool": len(self.pending)}

    def genesis_doc(self) -> dict[str, Any]:
        return self.ledger.genesis.doc

    def submit(self, tx: Tx) -> None:
        check_signature(tx)
        check_for_chain(tx, self.chain_id, self.height + 1)
        if not self.ledger.has_standing(tx.signer):
            raise TxError(NOT_PERMITTED, not_permitted_message(tx.signer))
        check_args([tx])
        if tx.tx_id in self.pending or self.ledger.tx(tx.tx_id) is not None:
            raise TxError("duplicate", f"tx {tx.tx_id} is already pending or committed")
        self.pending[tx.tx_id] = tx
        asyncio.get_running_loop().call_soon(self.commit)

    def submit_many(self, txs: list[Tx]) -> list[TxError | None]:
        return submit_each(self.submit, txs)

    def wait_committed(self, tx_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        record = self.ledger.tx(tx_id)
        if record is not None:
            fut.set_result(record.receipt)
        else:
            self.waiters.setdefault(tx_id, []).append(fut)
        return fut

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        if tx_id in self.pending:
            tx = self.pending[tx_id]
            return {"tx_id": tx_id, "status": "pending", "height": None, "receipt": None, "tx": tx.to_plain()}
        return self._or_none(self.reads.tx, tx_id)

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        return self._or_none(self.reads.asset, asset_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        return views.history_answer(self.ledger.store, asset_id, cursor, limit)

    def proof(self, asset_id: str) -> dict[str, Any] | None:
        return views.proof_answer(self.ledger.store, asset_id)

    def account(self, account: str, cursor: str | None, limit: int) -> dict[str, Any]:
        return views.account_answer(self.ledger.store, account, cursor, limit)

    def block(self, height: int) -> dict[str, Any] | None:
        return self._or_none(self.reads.block, height)

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        return None

    def subscribe(self) -> asyncio.Queue[CommittedBlockEvent]:
        return asyncio.Queue(maxsize=64)

    def unsubscribe(self, queue: asyncio.Queue[CommittedBlockEvent]) -> None:
        pass

    def evidence(self, offset: int, limit: int, validator: str | None) -> dict[str, Any]:
        listed = self.evidence_store.listing(offset, limit, validator)
        return {"total": listed.total, "offset": offset, "evidence": listed.records}

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    # -- test control ----------------------------------------------------------------------------

    def commit(self) -> None:
        """Everything pending in one block (run on the server's loop, after the submit answered)."""
        if not self.pending:
            return
        txs = list(self.pending.values())
        self.pending.clear()
        self.chain.block(txs)
        for tx in txs:
            receipt = self.ledger.tx(tx.tx_id).receipt  # type: ignore[union-attr]
            for fut in self.waiters.pop(tx.tx_id, []):
                if not fut.done():
                    fut.set_result(receipt)


@contextmanager
def serve_in_thread(api: Any) -> Iterator[str]:
    """Serve `api` over the real RPC on 127.0.0.1 (a free port) from a background thread; yield its URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["runner"] = loop.run_until_complete(serve(api, "127.0.0.1", 0))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread below
            box["error"] = e
            return
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="rpc-test-server", daemon=True)
    thread.start()
    assert started.wait(10), "the RPC server did not start within 10 s"
    if "error" in box:
        raise box["error"]
    host, port = box["runner"].addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def story_served(path: Path) -> Iterator[tuple[LedgerChain, LedgerNode, str]]:
    """The five-block story (tests/ledger_fixtures.py) in `path`, served over HTTP: (chain, node, url)."""
    ch = build_story(path)
    node = LedgerNode(ch)
    try:
        with serve_in_thread(node) as url:
            yield ch, node, url
    finally:
        ch.close()
