"""A real local consortium for integration tests: `titlechain localnet` processes on 127.0.0.1.

Every wait is a condition with a deadline (`wait_for`), never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from factories import free_base_port

from chain.crypto import KeyPair, load_key_file
from chain.tx import Tx, new_nonce
from node.devnet.localnet import down, node_pids, start_node, up
from node.devnet.provision import consortium_ports
from node.sdk.client import Client, RpcError, sign

T = TypeVar("T")

ISSUER = ("issuers", "northgate-receipts")
OWNER = ("parties", "riverside-foods")


def wait_for(condition: Callable[[], T], deadline_s: float, what: str, interval: float = 0.05) -> T:
    """Poll condition() until it returns a truthy value; fail with `what` after deadline_s."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            value = condition()
        except (RpcError, OSError, ConnectionError):  # a node restarting or not up yet
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Cluster:
    root: Path
    manifest: dict[str, Any]

    @classmethod
    def start(cls, root: Path, validators: int = 4, seed: Path | None = None) -> Cluster:
        """`seed`: a consortium seed file (e.g. with other genesis params); None: the demo seed."""
        base = free_base_port(len(consortium_ports(0, validators)))
        return cls(root, up(root, validators=validators, base_port=base, seed=seed))

    def stop(self) -> None:
        down(self.root)

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return self.manifest["nodes"]

    @property
    def chain_id(self) -> str:
        return self.manifest["chain_id"]

    def client(self, i: int, timeout: float = 10.0) -> Client:
        return Client(self.nodes[i]["rpc"], timeout=timeout)

    def key(self, group: str, name: str) -> KeyPair:
        path = self.root / "keys" / group / f"{name}.json"
        return load_key_file(path)

    def status(self, i: int) -> dict[str, Any]:
        with self.client(i, timeout=2.0) as c:
            return c.status()

    def head(self, i: int) -> tuple[int, str, str]:
        """(height, block_hash, state_root) of node i's latest block."""
        with self.client(i, timeout=2.0) as c:
            b = c.block("latest")
        return b["header"]["height"], b["block_hash"], b["header"]["state_root"]

    def index_of(self, node_id: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n["node_id"] == node_id)

    def pids(self, i: int) -> list[int]:
        return node_pids(self.nodes[i]["config"])

    def kill(self, i: int) -> None:
        for pid in self.pids(i):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.pids(i), 10, f"node {i} to die")

    def signal(self, i: int, sig: signal.Signals) -> None:
        for pid in self.pids(i):
            os.kill(pid, sig)

    def metric(self, i: int, name: str) -> float:
        """One unlabelled sample of node i's Prometheus metrics."""
        with urllib.request.urlopen(f"{self.nodes[i]['rpc']}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError(f"node {i} reports no metric {name}")

    def restart(self, i: int, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """`titlechain node run --config` on the listed config, as docs/cli.md promises works."""
        config = Path(self.nodes[i]["config"])
        return start_node(config, config.parent / "restart.log", env, args)

    def register(self, issuer: KeyPair, owner: str, asset_id: str, height: int, asset_class: str = "warehouse_receipt") -> Tx:
        doc = hashlib.sha256(f"{asset_id}/{new_nonce()}".encode()).hexdigest()  # unique: no duplicate_document
        args = {"asset_id": asset_id, "class": asset_class, "owner": owner, "doc_hash": doc, "meta": {"test": "integration"}}
        return sign(issuer, self.chain_id, "asset.register", args, expires=height + 500)


def read_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "localnet.json").read_text())


class Load:
    """Registers assets from a background thread, round-robin over the given nodes, until stopped
    or `max_txs` were sent (a bound, so no test can flood the machine)."""

    def __init__(self, cluster: Cluster, nodes: list[int], max_txs: int = 5000) -> None:
        self.cluster = cluster
        self.max_txs = max_txs
        self.nodes = nodes
        self.sent: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        issuer, owner = self.cluster.key(*ISSUER), self.cluster.key(*OWNER)
        clients = [self.cluster.client(i, timeout=5) for i in self.nodes]
        height = clients[0].height()
        i = 0
        while not self._stop.is_set() and i < self.max_txs:
            tx = self.cluster.register(issuer, owner.public, f"WR-LOAD-{i}", height)
            try:
                clients[i % len(clients)].submit(tx)
                self.sent.append(tx.tx_id)
            except (RpcError, OSError) as e:
                self.errors.append(str(e))
            i += 1
            self._stop.wait(0.01)
