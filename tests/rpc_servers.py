"""RPC servers on real sockets in background threads, for tests that drive them with plain
synchronous HTTP (hypothesis, schemathesis): the in-memory `FakeNode`, or a real single-validator
node (its own ledger, mempool and consensus) seeded with a few committed blocks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from factories import make_consortium
from rpc_fake import FakeNode, signed

from chain.crypto import write_key_file
from node.rpc.server import serve
from node.runtime.config import NodeConfig
from node.runtime.validator import open_validator

BASE_TX_HOLDER: dict[str, Any] = {}


class Server:
    def __init__(self) -> None:
        self.node = FakeNode()
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self.app: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = self.loop.run_until_complete(serve(self.node, "127.0.0.1", 0, heartbeat_s=0.2))
        self.app = runner.app
        self.port = runner.addresses[0][1]
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        leftover = asyncio.all_tasks(self.loop)  # handlers of connections reset mid-request
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()

    def call(self, fn: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(10)


async def _call(fn: Any) -> Any:
    return fn()


class ValidatorServer(Server):
    """The same, around a real single-validator node (its own ledger, mempool and consensus)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        c = self.node.consortium = make_consortium(1, params={"batch_delay_ms": 1})
        c.genesis.write(tmp / "genesis.json")
        write_key_file(tmp / "v0.json", c.validator_keys[0])
        self.cfg = NodeConfig(node_id="v0", genesis=tmp / "genesis.json", key=tmp / "v0.json", data_dir=tmp / "data",
                              peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        validator = open_validator(self.cfg)
        self.loop.run_until_complete(validator.start())
        self.validator = validator
        self.app = validator._runner.app  # type: ignore[union-attr]
        self.port = validator.rpc_port
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(validator.stop())
        leftover = asyncio.all_tasks(self.loop)
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()


def _seed_validator(s: ValidatorServer) -> None:
    """Commit a few registrations, then leave one tx pending-or-committed as the fuzzed base."""
    for i in range(3):
        tx = signed(s.node, nonce=f"seed{i}", expires=50)
        s.call(lambda tx=tx: s.validator.service.submit(tx))
    wait = asyncio.run_coroutine_threadsafe(_wait_height(s.validator, 1), s.loop)
    wait.result(10)
    BASE_TX_HOLDER["tx"] = signed(s.node, nonce="base", expires=50)
    s.call(lambda: s.validator.service.submit(BASE_TX_HOLDER["tx"]))


async def _wait_height(v: Any, height: int) -> None:
    while v.service.height < height:
        await asyncio.sleep(0.01)


@contextmanager
def running_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A started "fake" or "validator" server with a few committed registrations and one more tx
    submitted (BASE_TX_HOLDER["tx"]); stopped on exit."""
    if kind == "validator":
        v = ValidatorServer(tmp_path_factory.mktemp("fuzz-node"))
        v.thread.start()
        assert v.started.wait(10)
        _seed_validator(v)
        try:
            yield v
        finally:
            v.loop.call_soon_threadsafe(v.loop.stop)
            v.thread.join(10)
        return
    s = Server()
    s.thread.start()
    assert s.started.wait(10)
    # A few blocks and an asset, so reads have something to find; the base tx is already
    # submitted, so re-sending it unchanged is a duplicate and never waits for a commit.
    s.call(lambda: [s.node.submit(signed(s.node, nonce=f"seed{i}")) for i in range(3)])
    s.call(s.node.commit)
    s.call(lambda: s.node.submit(BASE_TX_HOLDER.setdefault("tx", signed(s.node, nonce="base"))))
    try:
        yield s
    finally:
        s.loop.call_soon_threadsafe(s.loop.stop)
        s.thread.join(10)
