"""Governance and membership helpers for the integration tests: proposals approved by the
genesis members, validators the genesis does not list, and who signed a block's certificate
(tests/integration/test_membership.py, test_state_sync.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster import ISSUER, OWNER, Cluster
from factories import free_base_port

from chain.crypto import KeyPair, write_key_file
from chain.genesis import Genesis
from node.devnet.localnet import start_node
from node.runtime.config import NodeConfig
from node.sdk.client import sign


class Governance:
    """Proposals by the first member, approved by the next ones up to the genesis threshold."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.members = [cluster.key("members", n["node_id"]) for n in cluster.nodes]
        self.threshold = Genesis.load(cluster.manifest["genesis"]).doc.get("gov_threshold") or len(self.members) // 2 + 1

    def execute(self, via: int, action: str, params: dict[str, Any]) -> int:
        """Propose and approve through node `via`; the height at which the action executed."""
        c = self.cluster
        with c.client(via, timeout=40) as client:
            height = client.height()
            tx = sign(self.members[0], c.chain_id, "gov.propose", {"action": action, "params": params}, expires=height + 500)
            receipt = client.submit(tx, wait=True, timeout=30)["receipt"]
            assert receipt["status"] == "ok", receipt
            args = {"proposal_id": receipt["tx_id"]}
            for member in self.members[1 : self.threshold]:
                tx = sign(member, c.chain_id, "gov.approve", args, expires=client.height() + 500)
                receipt = client.submit(tx, wait=True, timeout=30)["receipt"]
                assert receipt["status"] == "ok", receipt
        events = [e["type"] for e in receipt["events"]]
        assert "gov.executed" in events, receipt
        return int(receipt["height"])


def register(c: Cluster, via: int, asset_id: str) -> dict[str, Any]:
    issuer, owner = c.key(*ISSUER), c.key(*OWNER)
    with c.client(via, timeout=40) as client:
        tx = c.register(issuer, owner.public, asset_id, client.height())
        receipt = client.submit(tx, wait=True, timeout=30)["receipt"]
    assert receipt["status"] == "ok", receipt
    return receipt


def signers(c: Cluster, via: int, height: int) -> set[str]:
    with c.client(via, timeout=5) as client:
        return {s["validator"] for s in client.block(height)["certificate"]["signatures"]}


def signed_after(c: Cluster, via: int, public: str, after: int, what: str) -> int:
    """Commit blocks through node `via` until one above `after` carries `public`'s commit signature
    (a certificate holds a quorum, not necessarily every validator); that block's height."""
    for i in range(20):
        height = register(c, via, f"WR-{what}-{i}")["height"]
        if height > after and public in signers(c, via, height):
            return height
    raise AssertionError(f"{what}: no certificate above height {after} holds {public[:12]}'s signature")


def new_node(c: Cluster, root: Path, node_id: str, peers: list[str]) -> tuple[KeyPair, Path, str]:
    """Key, config and address of a validator the genesis does not list (nothing is started)."""
    key = KeyPair.generate()
    root.mkdir(parents=True)
    write_key_file(root / "validator.json", key)
    base = free_base_port(2)
    cfg = NodeConfig(
        node_id=node_id, genesis=Path(c.manifest["genesis"]), key=root / "validator.json", data_dir=root / "data",
        peer_listen=f"127.0.0.1:{base}", rpc_listen=f"127.0.0.1:{base + 1}", peers=tuple(peers),
        log_file=root / "node.log",
    )
    cfg.write(root / "config.json")
    return key, root / "config.json", f"127.0.0.1:{base}"


def start_and_list(c: Cluster, node_id: str, config: Path, args: tuple[str, ...] = ()) -> None:
    """Start a node (`args` after `node run --config FILE`) and list it in the localnet's manifest,
    so that `localnet down` (and the fixture, whatever happens to the test) stops it with the others."""
    proc = start_node(config, config.parent / "stdout.log", args=args)
    cfg = NodeConfig.load(config)
    entry = {"node_id": node_id, "pid": proc.pid, "rpc": f"http://{cfg.rpc_listen}", "config": str(config),
             "data_dir": str(cfg.data_dir)}
    c.manifest["nodes"].append(entry)
    (c.root / "localnet.json").write_text(json.dumps(c.manifest, indent=2))
