"""A validator joins a running four-process consortium by state sync (docs/protocol.md, "State sync").

Validator 3's data dir is emptied and it is restarted with `--state-sync`, while two of the three
peers it can sync from attack it with their real capabilities (their own valid link keys, well-formed
frames, node/runtime/misbehave.py): validator 1 serves every state chunk with one byte of a value
changed, validator 2 serves an anchor whose header names another state root under a certificate
holding its own valid signature and the others' copied from the real one. The sync must refuse both
peers (its log says so) and complete from validator 0. Then validator 2 is stopped: the chain can
only commit with validator 3's votes, so a committed tx shows the synced node validates and votes.
Its data dir then audits clean from its base, and its RPC answers 410 `before_base` below it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from cluster import ISSUER, OWNER, Cluster, wait_for

from node.runtime.misbehave import ENABLE_ENV, ENABLE_PHRASE, ENV
from node.sdk.client import RpcError

ALTER = {ENV: "snapshot_alter_chunk", ENABLE_ENV: ENABLE_PHRASE}
FORGE = {ENV: "snapshot_forge_anchor", ENABLE_ENV: ENABLE_PHRASE}


def _commit_some(cluster: Cluster, n: int, tag: str) -> None:
    issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
    with cluster.client(0, timeout=30) as c:
        height = c.height()
        txs = [cluster.register(issuer, owner.public, f"WR-{tag}-{i}", height) for i in range(n)]
        results = c.submit_batch(txs[:-1])
        assert all("tx_id" in r for r in results), results
        c.submit(txs[-1], wait=True, timeout=30)


def test_a_validator_joins_by_state_sync_past_lying_peers(cluster: Cluster) -> None:
    _commit_some(cluster, 40, "before")
    for i, env in ((1, ALTER), (2, FORGE)):
        cluster.kill(i)
        cluster.restart(i, env)
    wait_for(lambda: all(cluster.status(i)["ready"] for i in (1, 2)), 30, "the attackers to be ready")
    _commit_some(cluster, 10, "attacked")
    head = cluster.status(0)["height"]

    cluster.kill(3)
    data = cluster.root / cluster.nodes[3]["data_dir"]
    shutil.rmtree(data)
    cluster.restart(3, args=("--state-sync",))
    wait_for(lambda: cluster.status(3)["height"] >= head and cluster.status(3)["ready"], 60, "node 3 to sync")
    log = (cluster.root / cluster.nodes[3]["config"]).parent.joinpath("node.log").read_text()
    assert "refusing peer" in log and "state sync: done" in log, log[-3000:]
    refused = [line for line in log.splitlines() if "refusing peer" in line]
    names = [cluster.nodes[i]["node_id"] for i in (1, 2)]
    assert any(names[0] in line and "state chunk" in line for line in refused), refused
    assert any(names[1] in line and "anchor" in line for line in refused), refused
    assert not any(cluster.nodes[0]["node_id"] in line for line in refused), refused
    base = int(log.split("base height ")[1].split()[0])

    with cluster.client(3) as c:
        with pytest.raises(RpcError) as below:
            c.block(1)
        assert (below.value.status, below.value.code) == (410, "before_base")

    cluster.kill(2)  # 0, 1 and 3 are left: a quorum of 3 needs node 3's vote
    _commit_some(cluster, 5, "after")
    wait_for(lambda: cluster.status(3)["height"] > head, 30, "node 3 to commit")
    # the audit reads a copy of the data dir, safe while node 3 runs
    out = subprocess.run(
        [sys.executable, "-m", "node", "audit", "verify", "--data-dir", str(data),
         "--genesis", str(cluster.root / "genesis.json"), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"audit ok from base height {base}" in out.stdout, out.stdout
