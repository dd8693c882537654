"""A real misbehaving validator in a four-process consortium (node/runtime/misbehave.py).

The primary of view 0 is restarted with TITLECHAIN_MISBEHAVE=equivocate,forge_relay: it splits its
PRE-PREPAREs, double-votes, sends STATUS with a made-up NEW-VIEW and relays altered VIEW-CHANGEs,
all with its own valid key. Under a steady, bounded tx load the three honest nodes must keep
committing one chain whose data audits clean, and they must convict the attacker: an equivocation
record stored by an honest node, served at /v1/evidence, that verifies offline from the genesis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cluster import Cluster, Load, wait_for

from chain.genesis import Genesis
from node.runtime.config import NodeConfig
from node.runtime.misbehave import ENABLE_ENV, ENABLE_PHRASE, ENV

MISBEHAVE = {ENV: "equivocate,forge_relay", ENABLE_ENV: ENABLE_PHRASE}
BLOCKS_UNDER_ATTACK = 8


def titlechain(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "node", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_byzantine_validator_cannot_split_the_chain_and_is_convicted(cluster: Cluster, tmp_path: Path) -> None:
    bad = cluster.index_of(cluster.status(0)["primary"])
    honest = [i for i in range(4) if i != bad]
    bad_public = Genesis.load(cluster.manifest["genesis"]).validators.by_node_id[cluster.nodes[bad]["node_id"]].public
    cluster.kill(bad)
    cluster.restart(bad, MISBEHAVE)
    wait_for(lambda: cluster.status(bad)["ready"], 30, "the misbehaving node to be ready")
    log_file = NodeConfig.load(cluster.nodes[bad]["config"]).log_file
    assert log_file is not None and "MISBEHAVING NODE (equivocate, forge_relay)" in log_file.read_text()

    def evidence_on(i: int) -> list[dict]:
        with cluster.client(i, timeout=5) as c:
            return c.evidence(limit=50)["evidence"]

    start = min(cluster.status(i)["height"] for i in honest)
    with Load(cluster, honest, max_txs=3000) as load:
        wait_for(lambda: min(cluster.status(i)["height"] for i in honest) >= start + BLOCKS_UNDER_ATTACK, 40,
                 f"{BLOCKS_UNDER_ATTACK} blocks on every honest node under attack")
        wait_for(lambda: any(evidence_on(i) for i in honest), 20, "an honest node to store equivocation evidence")
    assert not load.errors, load.errors[:3]
    # the attacks were made: a split proposal (so a view change), and NEW-VIEWs forged during it
    attacks = log_file.read_text()
    assert "tampered with our pre_prepare" in attacks and "impersonating its primary" in attacks
    assert all(cluster.status(i)["view"] >= 1 for i in honest)
    for i in honest:
        with cluster.client(i) as c:
            wait_for(lambda c=c: all(c.tx(t)["status"] == "committed" for t in load.sent), 30,
                     f"every tx committed on node {i}")

    # one chain: every honest node holds the same block at every height the lowest of them reached
    top = min(cluster.status(i)["height"] for i in honest)
    for h in (start + 1, top):
        hashes = set()
        for i in honest:
            with cluster.client(i) as c:
                hashes.add(c.block(h)["block_hash"])
        assert len(hashes) == 1, f"honest nodes differ at height {h}"

    holder = next(i for i in honest if evidence_on(i))
    records = evidence_on(holder)
    assert all(r["validator"] == bad_public for i in honest for r in evidence_on(i)), "an honest validator was accused"
    with cluster.client(holder) as c:
        metrics = c._http.get("/metrics").text  # noqa: SLF001 - the SDK has no metrics call
    assert f'titlechain_evidence_total{{validator="{bad_public}"}}' in metrics
    record_file = tmp_path / "evidence.json"
    record_file.write_text(json.dumps(records[0]))
    r = titlechain("audit", "verify-evidence", str(record_file), "--genesis", cluster.manifest["genesis"])
    assert r.returncode == 0 and f"validator {bad_public} equivocated" in r.stdout, (r.returncode, r.stdout, r.stderr)
    records[0]["second"] = records[0]["first"]
    record_file.write_text(json.dumps(records[0]))
    r = titlechain("audit", "verify-evidence", str(record_file), "--genesis", cluster.manifest["genesis"])
    assert r.returncode == 1 and "INVALID" in r.stdout

    cluster.stop()
    for i in honest:
        data_dir = cluster.nodes[i]["data_dir"]
        r = titlechain("audit", "verify", "--data-dir", data_dir, "--genesis", cluster.manifest["genesis"])
        assert r.returncode == 0, (cluster.nodes[i]["node_id"], r.stdout[-2000:], r.stderr[-2000:])
