"""Four real validator processes on 127.0.0.1 (issue: the validator node).

Each test starts its own consortium with `titlechain localnet up` and stops it with `localnet down`;
the fixture checks no node process is left behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from cluster import ISSUER, OWNER, Cluster, Load, wait_for

from chain.crypto import KeyPair, write_key_file
from chain.genesis import Genesis
from node.p2p.transport import HandshakeError, handshake
from node.runtime.config import NodeConfig
from node.runtime.ledger import audit_data_dir


def _same_head_everywhere(c: Cluster, indexes: list[int], min_height: int) -> tuple[int, str, str] | None:
    heads = {c.head(i) for i in indexes}
    if len(heads) == 1:
        head = heads.pop()
        if head[0] >= min_height:
            return head
    return None


def _audit_all(c: Cluster) -> None:
    genesis = Genesis.load(c.manifest["genesis"])
    for n in c.nodes:
        report = audit_data_dir(n["data_dir"], genesis)
        assert report.ok, f"{n['node_id']}: {report}"


def test_txs_commit_on_all_four_and_the_data_audits_clean(cluster: Cluster) -> None:
    issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
    height = cluster.status(0)["height"]
    txs = [cluster.register(issuer, owner.public, f"WR-INT-{i}", height) for i in range(40)]
    # spread over every node: each gossips to the others and the primary batches them
    for i, tx in enumerate(txs):
        with cluster.client(i % 4) as c:
            assert c.submit(tx)["status"] == "pending"
    with cluster.client(1) as c:
        receipt = c.submit(cluster.register(issuer, owner.public, "WR-INT-last", height), wait=True, timeout=30)["receipt"]
    assert receipt["status"] == "ok"
    for i in range(4):
        with cluster.client(i) as c:
            wait_for(lambda: all(c.tx(t.tx_id)["status"] == "committed" for t in txs), 30, f"txs committed on node {i}")
            assert c.asset("WR-INT-7")["owner"] == owner.public
            assert "WR-INT-7" in c.account(owner.public)["assets"]
    head = wait_for(lambda: _same_head_everywhere(cluster, [0, 1, 2, 3], 1), 10, "one head on all four")
    assert head[0] >= 1
    cluster.stop()
    _audit_all(cluster)


def test_kill_the_primary_under_load_commits_resume_and_its_restart_catches_up(cluster: Cluster) -> None:
    primary = cluster.index_of(cluster.status(0)["primary"])
    others = [i for i in range(4) if i != primary]
    with Load(cluster, others) as load:
        wait_for(lambda: cluster.status(others[0])["height"] >= 3, 30, "a few blocks under load")
        old_view = cluster.status(others[0])["view"]
        cluster.kill(primary)
        killed_at = time.monotonic()

        def new_view_block() -> bool:
            with cluster.client(others[0], timeout=2) as c:
                return c.block("latest")["header"]["view"] > old_view

        # a block already prepared may still commit without the primary; what counts is the first
        # block of the new view, proposed by the next primary after the view change
        wait_for(new_view_block, 20, "a block proposed in a new view")
        resumed_after = time.monotonic() - killed_at
        print(f"first block of the new view committed {resumed_after:.2f} s after kill -9 of the primary")
        # the issue's bound; the genesis view timeout is 1.5 s, so this leaves 3.5 s of slack
        assert resumed_after < 5, f"commits resumed only {resumed_after:.1f} s after the primary died"
        cluster.restart(primary)
        wait_for(lambda: cluster.status(primary)["ready"], 30, "the restarted node to be ready")
    assert not load.errors, load.errors[:3]
    # with the load stopped, every node, the restarted one included, reaches one head
    top = max(cluster.status(i)["height"] for i in others)
    head = wait_for(lambda: _same_head_everywhere(cluster, [0, 1, 2, 3], top), 30, "the restarted node to catch up")
    print(f"all four at height {head[0]}, state root {head[2][:16]}")
    for i in range(4):
        with cluster.client(i) as c:
            wait_for(lambda: all(c.tx(t)["status"] == "committed" for t in load.sent), 30, f"every tx committed on node {i}")
    cluster.stop()
    _audit_all(cluster)


def test_a_non_validator_cannot_join_and_garbage_on_the_peer_port_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    genesis = Genesis.load(cluster.manifest["genesis"])
    peer = genesis.validators.validators[0].address
    host, port = peer.rsplit(":", 1)

    async def outsider_handshake() -> str:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            return await handshake(
                reader, writer, key=KeyPair.generate(), chain_id=genesis.chain_id, genesis_hash=genesis.hash,
                allowed=genesis.validators.publics, timeout=5,
            )
        finally:
            writer.close()

    try:
        asyncio.run(outsider_handshake())
        raise AssertionError("a non-validator key completed the handshake")
    except (HandshakeError, ConnectionError, asyncio.IncompleteReadError):
        pass

    async def garbage() -> None:
        for v in genesis.validators.validators:
            h, p = v.address.rsplit(":", 1)
            for size in (1, 7, 4096, 70_000):
                _, writer = await asyncio.open_connection(h, int(p))
                writer.write(os.urandom(size))
                await writer.drain()
                writer.close()

    asyncio.run(garbage())
    # every node is still up, linked to the other three (`up` returns at a quorum of links, so the
    # last may still be forming: a deadline, not an instant check), and commits
    for i in range(4):
        wait_for(lambda i=i: (st := cluster.status(i))["ready"] and all(p["connected"] for p in st["peers"]), 15,
                 f"node {i} linked to all three peers")
    issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
    with cluster.client(2) as c:
        tx = cluster.register(issuer, owner.public, "WR-AFTER-GARBAGE", c.height())
        assert c.submit(tx, wait=True, timeout=30)["receipt"]["status"] == "ok"

    # a node configured with a key the genesis does not list refuses to start
    cfg = NodeConfig.load(cluster.nodes[0]["config"])
    write_key_file(tmp_path / "outsider.json", KeyPair.generate())
    outsider = cfg.model_copy(update={"key": tmp_path / "outsider.json", "data_dir": tmp_path / "outsider-data",
                                      "peer_listen": "127.0.0.1:0", "rpc_listen": "127.0.0.1:0", "log_file": None})
    outsider.write(tmp_path / "outsider-config.json")
    r = subprocess.run([sys.executable, "-m", "node", "node", "run", "--config", str(tmp_path / "outsider-config.json")],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "not a validator" in r.stderr, (r.returncode, r.stderr)
