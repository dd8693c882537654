"""Membership changes end to end, on real validator processes (issue: a consortium that changes).

One running consortium of four is grown to five by governance (the fifth node started from the
genesis and the addresses of two validators only), then shrunk by removing one of the original
four; a seat's key is rotated (the node restarts with its new key, the old key is refused at the
handshake) and another original validator is stopped: the three left, a quorum of the set of four,
keep committing. Every node's data audits clean and a proof taken at the end verifies offline
from the genesis alone.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from cluster import Cluster, wait_for
from governance import Governance, new_node, register, signed_after, signers, start_and_list

from chain.crypto import KeyPair, write_key_file
from chain.genesis import Genesis
from node.p2p.handshake import HandshakeError, handshake
from node.runtime.config import NodeConfig


def _refused(address: str, key: KeyPair, genesis: Genesis, expect: str) -> None:
    host, port = address.rsplit(":", 1)

    async def attempt() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            await handshake(reader, writer, key=key, chain_id=genesis.chain_id, genesis_hash=genesis.hash,
                            allowed={expect}, timeout=5)
        finally:
            writer.close()

    try:
        asyncio.run(attempt())
    except (HandshakeError, ConnectionError, asyncio.IncompleteReadError):
        return
    raise AssertionError(f"key {key.public[:12]} completed a handshake at {address}")


def test_grow_shrink_and_rotate_a_running_consortium(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    genesis = Genesis.load(c.manifest["genesis"])
    gov = Governance(c)
    original = [v.public for v in genesis.validators.validators]
    assert [n["node_id"] for n in c.nodes] == [v.node_id for v in genesis.validators.validators]
    # by key: a node accepts links only from lower keys, so a refusal by the highest of the four
    # of a lower key is the set's doing, not the dial direction's
    removed, rotated, stopped, judge = sorted(range(4), key=lambda i: original[i])

    # grow to five: the new node knows the genesis and two validators' addresses, nothing more
    peers = [genesis.validators.validators[i].address for i in (stopped, judge)]
    new_key, new_config, new_address = new_node(c, tmp_path / "v5", "v5", peers)
    start_and_list(c, "v5", new_config)  # before the vote: until it commits, every validator refuses it
    wait_for(lambda: "joining" in str(c.status(4)["not_ready"]), 20, "the new node to serve, joining")
    added_at = gov.execute(judge, "add_validator", {"node_id": "v5", "public": new_key.public, "address": new_address})
    wait_for(lambda: c.status(4)["height"] >= added_at, 30, "the new node to catch up to its join height")
    joined = signed_after(c, judge, new_key.public, added_at, "GROWN")
    print(f"v5 added at height {added_at}; its first certificate signature at height {joined}")
    assert len(signers(c, judge, joined)) >= 4  # a quorum of five

    # remove the lowest key of the four: its votes no longer count and every link to it is dropped
    removed_at = gov.execute(judge, "remove_validator", {"node_id": c.nodes[removed]["node_id"]})
    after_removal = register(c, judge, "WR-SHRUNK")["height"]
    assert original[removed] not in signers(c, judge, after_removal)
    four = [i for i in range(5) if i != removed]
    wait_for(lambda: all(len(c.status(i)["validators"]) == 4 for i in four), 10, "every node to see the set of four")
    wait_for(lambda: "no validator" in str(c.status(removed)["not_ready"]), 10, "the removed node to retire")
    judge_address = genesis.validators.validators[judge].address
    _refused(judge_address, c.key("validators", c.nodes[removed]["node_id"]), genesis, original[judge])

    # rotate a seat's key; its node restarts with the new key and the same data dir
    old_key = c.key("validators", c.nodes[rotated]["node_id"])
    fresh = KeyPair.generate()
    write_key_file(tmp_path / "rotated.json", fresh)
    rotated_at = gov.execute(judge, "rotate_validator", {"node_id": c.nodes[rotated]["node_id"], "public": fresh.public})
    wait_for(lambda: "no validator" in str(c.status(rotated)["not_ready"]), 20, "the rotated node to retire its old key")
    c.kill(rotated)
    cfg = NodeConfig.load(c.nodes[rotated]["config"])
    cfg.model_copy(update={"key": tmp_path / "rotated.json"}).write(Path(c.nodes[rotated]["config"]))
    c.restart(rotated)
    wait_for(lambda: c.status(rotated)["ready"], 30, "the rotated node to be ready with its new key")
    voted = signed_after(c, judge, fresh.public, rotated_at, "ROTATED")
    assert old_key.public not in signers(c, judge, voted)
    _refused(judge_address, old_key, genesis, original[judge])

    # stop another original validator: three of the four are a quorum (3) and go on committing
    c.kill(stopped)
    live = [rotated, judge, 4]
    last = register(c, judge, "WR-AFTER-STOP")["height"]
    assert signers(c, judge, last) == {fresh.public, original[judge], new_key.public}
    head = wait_for(lambda: len({c.head(i) for i in live}) == 1 and c.head(live[0]), 20, "one head on the live three")
    with c.client(judge) as client:
        proof = client.proof("WR-AFTER-STOP")
    assert proof["header"]["height"] > rotated_at and len(proof["validator_changes"]) == 3
    (tmp_path / "proof.json").write_text(json.dumps(proof))
    print(f"set changes at heights {added_at}, {removed_at}, {rotated_at}; head {head[0]}")

    c.stop()
    cli = [sys.executable, "-m", "node"]
    for n in c.nodes:
        r = subprocess.run([*cli, "audit", "verify", "--data-dir", n["data_dir"], "--genesis", c.manifest["genesis"], "-q"],
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, (n["node_id"], r.stdout, r.stderr)
    r = subprocess.run([*cli, "audit", "verify-proof", str(tmp_path / "proof.json"), "--genesis", c.manifest["genesis"]],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
