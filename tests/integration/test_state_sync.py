"""Joining a running four-process consortium by state sync (docs/protocol.md, "State sync"), then
taking part: a genesis validator, an observer and a validator added by governance.

One consortium for the module (starting one is most of the cost); the tests run in order.

1. Validator 3's data dir is emptied and it is restarted with `--state-sync`, while two of the
   three peers it can sync from attack it with their real capabilities (their own valid link keys,
   well-formed frames, node/runtime/misbehave.py): validator 1 serves every state chunk with one
   byte of a value changed, validator 2 serves an anchor whose header names another state root
   under a certificate holding its own valid signature and the others' copied from the real one.
   Validator 0 is down when the sync starts, so the sync must meet both liars: it refuses both (its
   log says so) and completes from validator 0 once that is back. Then validator
   2 is stopped: the chain can only commit with validator 3's votes, and its signature is in the
   certificates of the blocks that follow. Its data dir audits clean from its base, and its RPC
   answers 410 `before_base` below it.
2. An auditor's observer with an empty data dir starts with `--observer --state-sync` while
   validator 1 still alters its chunks (refused if met), syncs from the others, follows the
   blocks committed after it joined, serves a proof of one that verifies offline from the genesis,
   and audits clean from its base.
3. A fifth validator, added by governance after the genesis (so not in the set the genesis names),
   joins by state sync from two addresses; with one of the four stopped, a quorum of the five
   needs its vote, and its signature is in the certificates that follow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import ISSUER, OWNER, Cluster, wait_for
from governance import Governance, new_node, signed_after, signers, start_and_list
from observer_node import ObserverNode

from chain.genesis import Genesis
from chain.proofcheck import verify_ownership_proof
from node.runtime.misbehave import ENABLE_ENV, ENABLE_PHRASE, ENV
from node.sdk.client import RpcError

ALTER = {ENV: "snapshot_alter_chunk", ENABLE_ENV: ENABLE_PHRASE}
FORGE = {ENV: "snapshot_forge_anchor", ENABLE_ENV: ENABLE_PHRASE}
AUDITOR = ("auditors", "ledger-audit")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path_factory.mktemp("state_sync") / "net")
    try:
        yield c
    finally:
        c.stop()
        assert not any(c.pids(i) for i in range(len(c.nodes))), "a node process outlived localnet down"


def _commit_some(cluster: Cluster, n: int, tag: str) -> int:
    """Register n assets WR-{tag}-{i} through node 0; the height the last committed at."""
    issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
    with cluster.client(0, timeout=30) as c:
        height = c.height()
        txs = [cluster.register(issuer, owner.public, f"WR-{tag}-{i}", height) for i in range(n)]
        results = c.submit_batch(txs[:-1])
        assert all("tx_id" in r for r in results), results
        return int(c.submit(txs[-1], wait=True, timeout=30)["receipt"]["height"])


def _synced(log_path: Path, refused: dict[str, str], trusted: list[str]) -> int:
    """The base height a node's log says it synced to; `refused`: node id -> what it was refused
    for (each must be); `trusted`: node ids it must not have refused."""
    log = log_path.read_text()
    assert "state sync: done" in log, log[-3000:]
    lines = [line for line in log.splitlines() if "refusing peer" in line]
    for node_id, why in refused.items():
        assert any(node_id in line and why in line for line in lines), (node_id, why, lines)
    assert not any(node_id in line for node_id in trusted for line in lines), lines
    return int(log.split("base height ")[1].split()[0])


def _audits_from(cluster: Cluster, data: Path, base: int) -> None:
    """`audit verify` on a data dir (it reads a copy: safe while the node runs) passes and says it
    checked from the base."""
    out = subprocess.run(
        [sys.executable, "-m", "node", "audit", "verify", "--data-dir", str(data),
         "--genesis", str(cluster.root / "genesis.json"), "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"audit ok from base height {base}" in out.stdout, out.stdout


def test_a_validator_joins_by_state_sync_past_lying_peers_and_votes(net: Cluster) -> None:
    cluster = net
    _commit_some(cluster, 40, "before")
    for i, env in ((1, ALTER), (2, FORGE)):
        cluster.kill(i)
        cluster.restart(i, env)
    wait_for(lambda: all(cluster.status(i)["ready"] for i in (1, 2)), 30, "the attackers to be ready")
    _commit_some(cluster, 10, "attacked")
    head = cluster.status(0)["height"]

    # with the honest validator 0 down, the two liars are the only peers (and the f+1 offers
    # needed), so the sync must meet both: it refuses them, waits for a usable peer, and completes
    # from validator 0 once that is back
    cluster.kill(3)
    cluster.kill(0)
    data = cluster.root / cluster.nodes[3]["data_dir"]
    shutil.rmtree(data)
    cluster.restart(3, args=("--state-sync",))
    log = (cluster.root / cluster.nodes[3]["config"]).parent / "node.log"
    names = [n["node_id"] for n in cluster.nodes]
    wait_for(lambda: log.exists() and log.read_text().count("refusing peer") >= 2, 60, "node 3 to refuse both liars")
    cluster.restart(0)
    wait_for(lambda: cluster.status(3)["height"] >= head and cluster.status(3)["ready"], 60, "node 3 to sync")
    base = _synced(log, {names[1]: "state chunk", names[2]: "anchor"}, [names[0]])

    with cluster.client(3) as c:
        with pytest.raises(RpcError) as below:
            c.block(1)
        assert (below.value.status, below.value.code) == (410, "before_base")

    cluster.kill(2)  # 0, 1 and 3 are left: a quorum of 3 needs node 3's vote
    after = _commit_some(cluster, 5, "after")
    node3 = cluster.key("validators", names[3]).public
    assert after > head and node3 in signers(cluster, 0, after)
    wait_for(lambda: cluster.status(3)["height"] >= after, 30, "node 3 to commit")
    _audits_from(cluster, data, base)


def test_an_observer_joins_by_state_sync_and_follows(net: Cluster, tmp_path: Path) -> None:
    cluster = net
    cluster.restart(2)  # honest again; validator 1 still alters every chunk it serves
    wait_for(lambda: cluster.status(2)["ready"], 30, "node 2 to be ready")
    head = _commit_some(cluster, 10, "observed")

    key = cluster.root / "keys" / AUDITOR[0] / f"{AUDITOR[1]}.json"
    obs = ObserverNode.write(cluster, tmp_path / "obs", key, "auditor-synced")
    obs.start("--state-sync")
    try:
        obs.wait_ready(60)
        wait_for(lambda: obs.status()["height"] >= head, 30, "the observer to reach the head")
        names = [n["node_id"] for n in cluster.nodes]
        # validator 1 is refused if the sync meets it (it may finish before that liar links)
        base = _synced(obs.log, {}, [names[0], names[2], names[3]])

        after = _commit_some(cluster, 5, "followed")  # blocks above the base, followed
        assert after > base
        wait_for(lambda: obs.status()["height"] >= after, 30, "the observer to follow")
        with obs.client() as c:
            proof = c.proof("WR-followed-4")
        checked = verify_ownership_proof(proof, Genesis.load(cluster.root / "genesis.json"))
        assert checked.ok and checked.asset is not None, checked
        assert proof["header"]["height"] >= after
        _audits_from(cluster, obs.data_dir, base)
    finally:
        assert obs.stop() == 0


def test_a_validator_added_by_governance_joins_by_state_sync_and_votes(net: Cluster, tmp_path: Path) -> None:
    cluster = net
    genesis = Genesis.load(cluster.root / "genesis.json")
    peers = [genesis.validators.validators[i].address for i in (0, 3)]
    key, config, address = new_node(cluster, tmp_path / "v5", "v5", peers)
    added_at = Governance(cluster).execute(0, "add_validator", {"node_id": "v5", "public": key.public, "address": address})
    _commit_some(cluster, 5, "grown")  # a quorum of five is four: every original validator votes

    start_and_list(cluster, "v5", config, args=("--state-sync",))
    wait_for(lambda: cluster.status(4)["ready"], 60, "v5 to sync and be ready")
    names = [n["node_id"] for n in cluster.nodes]
    base = _synced(tmp_path / "v5" / "node.log", {}, [names[0], names[2], names[3]])
    assert base >= added_at

    cluster.kill(2)  # 0, 1, 3 and v5 are left: a quorum of five (4) needs v5's vote
    voted = signed_after(cluster, 0, key.public, base, "V5")
    assert key.public in signers(cluster, 0, voted)
    wait_for(lambda: cluster.status(4)["height"] >= voted, 30, "v5 to commit")
    _audits_from(cluster, tmp_path / "v5" / "data", base)
