"""One real validator process (a one-validator consortium) for tests of a node's own edges: storage
faults, damaged data, slow clients. `titlechain node run --config` as an operator starts it, with an
optional `preexec` (e.g. a resource limit) run in the child before it executes.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ports
from cluster import free_base_port, wait_for
from factories import Consortium, make_consortium

from chain.crypto import write_key_file
from node.devnet.localnet import node_command
from node.sdk.client import Client, sign


@dataclass
class Solo:
    root: Path
    consortium: Consortium = field(default_factory=lambda: make_consortium(1, params={"batch_delay_ms": 1}))
    proc: subprocess.Popen[bytes] | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        base = free_base_port(2, *ports.SOLO)
        self.rpc_port, self.peer_port = base, base + 1
        self.consortium.genesis.write(self.root / "genesis.json")
        write_key_file(self.root / "v0.json", self.consortium.validator_keys[0])
        self.write_config()

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "node.log"

    @property
    def rpc(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    def write_config(self) -> None:
        cfg = {"node_id": "v0", "genesis": "genesis.json", "key": "v0.json", "data_dir": "data",
               "peer_listen": f"127.0.0.1:{self.peer_port}", "rpc_listen": f"127.0.0.1:{self.rpc_port}",
               **self.extra_config}
        self.config.write_text(json.dumps(cfg))
        self.config.chmod(0o600)

    def start(self, preexec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(node_command(self.config), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=preexec)
        return self.proc

    def wait_ready(self, deadline_s: float = 30) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"the node exited: {self.log_text()[-2000:]}"
            with Client(self.rpc, timeout=2) as c:
                return bool(c.status()["ready"])

        wait_for(ready, deadline_s, "the node to be ready")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def wait_exit(self, deadline_s: float) -> int:
        assert self.proc is not None
        end = time.monotonic() + deadline_s
        while self.proc.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        assert self.proc.poll() is not None, f"the node still runs after {deadline_s} s"
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def register(self, client: Client, asset_id: str, *, wait: bool = True, timeout: float = 10) -> dict[str, Any]:
        c = self.consortium
        args = {"asset_id": asset_id, "class": "warehouse_receipt", "owner": c.users[0].public,
                "doc_hash": _doc(asset_id), "meta": {"test": "solo"}}
        tx = sign(c.issuer, c.genesis.chain_id, "asset.register", args, expires=client.height() + 500)
        return client.submit(tx, wait=wait, timeout=timeout)


def _doc(asset_id: str) -> str:
    import hashlib

    return hashlib.sha256(asset_id.encode()).hexdigest()
