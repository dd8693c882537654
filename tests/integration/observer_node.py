"""An observer process beside a test consortium (tests/integration/cluster.py): its config, its
start with `titlechain node run --observer`, its stop, and a thread reading its event stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster import Cluster, wait_for
from factories import free_base_port

from node.sdk.client import Client, RpcError


@dataclass
class ObserverNode:
    config: Path
    rpc: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def write(cls, cluster: Cluster, root: Path, key: Path, node_id: str) -> ObserverNode:
        """A config for an observer of the cluster's chain that runs with the account key `key`."""
        root.mkdir(parents=True, exist_ok=True)
        port = free_base_port(1)
        config = root / "config.json"
        doc = {"node_id": node_id, "genesis": cluster.manifest["genesis"], "key": str(key), "data_dir": "data", "rpc_listen": f"127.0.0.1:{port}"}
        config.write_text(json.dumps(doc))
        os.chmod(config, 0o600)
        return cls(config, f"http://127.0.0.1:{port}", root / "data", root / "stdout.log")

    def start(self, *args: str) -> None:
        """`titlechain node run --config FILE --observer [ARGS]`, as docs/operations.md tells an auditor."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "node", "run", "--config", str(self.config), "--observer", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.rpc, timeout=timeout)

    def status(self) -> dict[str, Any]:
        with self.client(2.0) as c:
            return c.status()

    def stop(self) -> int | None:
        """SIGTERM and wait (the node closes its database); its exit code, None if never started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the observer did not stop within 20 s of SIGTERM; see {self.log}") from None

    def wait_ready(self, deadline_s: float = 30.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert self.proc is not None and self.proc.poll() is None, f"the observer exited; see {self.log}"
            st = self.status()
            return st if st["ready"] else None

        return wait_for(ready, deadline_s, "the observer to be ready")


@dataclass
class EventReader:
    """Reads an RPC's event stream on a daemon thread until `until_height` is seen or the stream
    ends (the node stops); a bound on what it keeps, so it can never grow without limit."""

    rpc: str
    until_height: list[int] = field(default_factory=lambda: [1 << 62])
    heights: list[int] = field(default_factory=list)
    error: list[str] = field(default_factory=list)
    max_events: int = 100_000

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            with Client(self.rpc, timeout=10) as c:
                for event in c.events():
                    self.heights.append(event["data"]["height"])
                    if event["data"]["height"] >= self.until_height[0] or len(self.heights) >= self.max_events:
                        return
        except (RpcError, OSError, Exception) as e:  # noqa: BLE001 - the node stopping ends the stream
            self.error.append(f"{type(e).__name__}: {e}")
