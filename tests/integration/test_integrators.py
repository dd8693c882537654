"""What an integrator meets first, on one real four-node consortium: a JavaScript client written
from docs/protocol.md submits a tx; the SDK document's example runs as written; offline signing
and sending; every hash an explore command prints, piped, is whole; readiness says why not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import Cluster, wait_for
from js_client import run_client

from chain.encoding import H
from node.version import version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path_factory.mktemp("integrators") / "net")
    try:
        yield c
    finally:
        c.stop()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`titlechain ARGS` in a subprocess with stdout a pipe (as under `| grep`)."""
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=timeout)


def test_js_client_submits_a_tx_the_node_commits(net: Cluster) -> None:
    key = net.root / "keys" / "issuers" / "northgate-receipts.json"
    owner = net.key("parties", "haitong-metals").public
    args = {"asset_id": "WR-JS-0001", "class": "warehouse_receipt", "owner": owner,
            "doc_hash": H(b"js client receipt").hex(), "meta": {"written_by": "tests/js/client.mjs"}}
    code, report, err = run_client("submit", net.nodes[0]["rpc"], str(key), "asset.register", json.dumps(args))
    assert code == 0 and report["failures"] == [], (report, err)
    # the node computed the same tx id from the JS client's bytes, and the asset exists everywhere
    assert report["answer"]["tx_id"] == report["local_tx_id"]
    with net.client(3) as c:
        asset = wait_for(lambda: c.asset("WR-JS-0001"), 20, "the JS client's asset on node 3")
    assert asset["owner"] == owner


def python_blocks(markdown: str) -> list[str]:
    """The ```python code blocks of a markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_sdk_documents_issuer_example_runs_as_written(net: Cluster, tmp_path: Path) -> None:
    blocks = python_blocks((ROOT / "docs" / "sdk.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2, "docs/sdk.md: expected the issuer example and its async variant"
    depositor = net.key("parties", "haitong-metals").public
    env = {**os.environ, "TITLECHAIN_RPC": net.nodes[1]["rpc"], "DEPOSITOR": depositor,
           "ISSUER_KEY": str(net.root / "keys" / "issuers" / "northgate-receipts.json"),
           "GENESIS": str(net.root / "genesis.json"), "RECEIPT_ID": "WR-SDK-DOC-1"}
    outputs = []
    for i, code in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(code, encoding="utf-8")
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, f"docs/sdk.md block {i}:\n{r.stdout}\n{r.stderr}"
        outputs.append(r.stdout)
    assert "a second receipt for the lot: duplicate_document" in outputs[0]
    assert "history: asset.register at" in outputs[0] and ", asset.amend at" in outputs[0]
    assert "proof ok: WR-SDK-DOC-1 belongs to" in outputs[0]
    assert "WR-SDK-DOC-1: version 2, its owner holds" in outputs[1]
    with net.client(2) as c:
        assert c.asset("WR-SDK-DOC-1")["owner"] == depositor


def test_health_metrics_and_a_peer_port_mistaken_for_the_rpc(net: Cluster) -> None:
    rpc = net.nodes[0]["rpc"]
    health = httpx.get(f"{rpc}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "alive", "version": version()}
    assert httpx.get(f"{rpc}/ready", timeout=10).json() == {"ready": True}
    metrics = httpx.get(f"{rpc}/metrics", timeout=10).text
    assert f'titlechain_build_info{{version="{version()}"}} 1.0' in metrics
    assert "process_resident_memory_bytes" in metrics and "titlechain_view_changes_total" in metrics
    held = {part: float(v) for part, v in re.findall(r'^titlechain_memory_held_bytes\{part="(\w+)"\} (\S+)$', metrics, re.MULTILINE)}
    assert set(held) == {"tree_nodes_cache", "standing_cache", "mempool", "rocksdb_memtables", "rocksdb_block_cache",
                         "rocksdb_table_readers"}, held
    assert held["rocksdb_memtables"] > 0  # RocksDB's own count: the chain's blocks are in its memtable
    for n in net.nodes:  # every validator has a votes-missed series from the start, before any commit
        assert f'titlechain_votes_missed_total{{validator="{n["node_id"]}"}}' in metrics
    status = net.status(0)
    assert status["ready"] and status["not_ready"] is None and status["version"] == version()
    peer_port = int(rpc.rsplit(":", 1)[1]) - 1  # init's layout: the peer port is the RPC port - 1
    r = cli("explore", "status", "--rpc", f"http://127.0.0.1:{peer_port}")
    assert r.returncode == 1 and "speaks the peer protocol, not the RPC" in r.stderr, r.stderr


def test_readiness_says_why_and_a_restarted_node_says_where_it_runs(net: Cluster) -> None:
    """Last in this module: it stops two of the four validators."""
    net.kill(3)
    net.kill(2)
    reason = "connected to 1 of 3 peers, a quorum needs 2"
    wait_for(lambda: net.status(0)["not_ready"] == reason, 30, "node 0 to say it lacks a quorum of peers")
    assert net.status(0)["ready"] is False
    ready = httpx.get(f"{net.nodes[0]['rpc']}/ready", timeout=10)
    assert ready.status_code == 503 and reason in ready.json()["error"]["message"]
    key = str(net.root / "keys" / "parties" / "haitong-metals.json")
    r = cli("tx", "asset.transfer", "--key", key, "--rpc", net.nodes[0]["rpc"], "--wait", "asset_id=WR-JS-0001",
            f"to={net.key('parties', 'riverside-foods').public}", timeout=120)
    assert r.returncode == 1 and f"503 not_ready: {reason}" in r.stderr, r.stderr
    net.restart(3)
    wait_for(lambda: net.status(0)["ready"], 60, "node 0 ready again with node 3 back")
    log = Path(net.nodes[3]["config"]).parent / "restart.log"
    first = wait_for(lambda: log.read_text().splitlines()[:1], 30, "node 3's start-up line")[0]
    assert first.startswith(f"titlechain {version()}: node {net.nodes[3]['node_id']} of {net.chain_id}"), first
    assert "RPC on http://127.0.0.1:" in first and "logs to " in first
