"""Observer nodes (issue 17): an auditor's node follows a four-validator consortium under load by
certificates, serves reads and events, audits clean and is never counted in a quorum; an account
without the auditor or regulator role is refused, and one whose role governance revokes is dropped.

One consortium for the whole module (starting one is most of the cost); the tests run in order and
each leaves it committing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cluster import ISSUER, OWNER, Cluster, Load, wait_for
from observer_node import EventReader, ObserverNode

from chain.block import sign_commit
from chain.crypto import KeyPair, load_key_file
from chain.genesis import Genesis
from chain.proofcheck import verify_ownership_proof
from node.consensus.messages import Commit, Signed
from node.explorer.rpc_audit import audit_rpc
from node.p2p.handshake import OBSERVER, HandshakeError, handshake
from node.p2p.messages import SyncRequest
from node.p2p.transport import Transport
from node.runtime.ledger import audit_data_dir
from node.sdk.client import RpcError, sign

AUDITOR = ("auditors", "ledger-audit")
REGULATOR = ("regulators", "supervisor-enforcement")
LOAD_S = 15.0  # the observed run; bounded further by the load's tx count
SAMPLE_S = 0.25


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path_factory.mktemp("observer") / "net")
    try:
        yield c
    finally:
        c.stop()


def _key_path(c: Cluster, group: str, name: str) -> Path:
    return c.root / "keys" / group / f"{name}.json"


def _heights(c: Cluster, obs: ObserverNode, pool: ThreadPoolExecutor) -> tuple[int, int] | None:
    """(highest validator height, observer height), the five read at once (a loaded machine still
    gives enough samples); a validator read after the observer only makes the lag look larger."""
    try:
        observer = pool.submit(lambda: obs.status()["height"])
        top = max(pool.map(lambda i: c.status(i)["height"], range(4)))
        return top, observer.result()
    except (RpcError, OSError):
        return None


def test_an_auditor_observer_follows_under_load_serves_reads_and_events_and_audits_clean(net: Cluster, tmp_path: Path) -> None:
    genesis = Genesis.load(net.manifest["genesis"])
    obs = ObserverNode.write(net, tmp_path / "obs", _key_path(net, *AUDITOR), "crane-whitlock-observer")
    obs.start()
    try:
        assert obs.wait_ready()["role"] == "observer"
        events = EventReader(obs.rpc)
        reader = events.start()
        lags: list[int] = []
        with Load(net, [0, 1, 2, 3], max_txs=3000) as load, ThreadPoolExecutor(5) as pool:
            began = time.monotonic()
            while time.monotonic() - began < LOAD_S and len(load.sent) < load.max_txs:
                if (h := _heights(net, obs, pool)) is not None:
                    lags.append(max(0, h[0] - h[1]))
                time.sleep(SAMPLE_S)
        assert len(load.sent) > 200, f"the load sent only {len(load.sent)} txs: {load.errors[:3]}"
        assert len(lags) >= 8, f"only {len(lags)} height samples: the machine is too loaded for this run to say anything"
        median = statistics.median(lags)
        assert median <= 3, f"the observer lagged a median of {median} blocks (samples {lags})"
        print(f"observer lag over {len(lags)} samples: median {median}, max {max(lags)}; {len(load.sent)} txs sent")

        # it reaches the validators' head, block for block
        top = max(net.status(i)["height"] for i in range(4))
        wait_for(lambda: obs.status()["height"] >= top, 30, f"the observer to reach height {top}")
        with obs.client() as oc, net.client(0) as vc:
            assert oc.block(top)["block_hash"] == vc.block(top)["block_hash"]
            _check_reads(net, genesis, oc, load.sent)
        events.until_height[0] = top
        reader.join(20)
        seen = sorted(set(events.heights))
        assert seen and seen[-1] >= top, f"events stopped at {seen[-1:]} ({events.error})"
        assert seen == list(range(seen[0], seen[-1] + 1)), "the event stream skipped a height"
        _check_certificates(obs, genesis, top, net.key(*AUDITOR).public)
        with obs.client(timeout=30) as oc:  # the audit of `titlechain audit verify --rpc`, against the observer
            served = audit_rpc(oc, genesis)
        assert served.ok and served.blocks >= top, f"the audit through the observer's RPC: {served}"
    finally:
        code = obs.stop()
    assert code == 0, f"the observer exited {code}; see {obs.log}"
    report = audit_data_dir(obs.data_dir, genesis)
    assert report.ok and report.blocks >= top, f"the observer's data dir: {report}"


def _check_reads(c: Cluster, genesis: Genesis, oc: Any, sent: list[str]) -> None:
    """Reads served by the observer: txs, assets, accounts, proofs; and writes refused with 403."""
    owner = c.key(*OWNER)
    for tx_id in (sent[0], sent[len(sent) // 2]):
        answer = oc.tx(tx_id)
        assert answer["status"] == "committed" and answer["receipt"]["status"] == "ok"
    assert oc.asset("WR-LOAD-0")["owner"] == owner.public
    assert "WR-LOAD-0" in oc.account(owner.public)["assets"]
    proof = oc.proof("WR-LOAD-0")
    assert verify_ownership_proof(proof, genesis).ok
    tx = c.register(c.key(*ISSUER), owner.public, "WR-VIA-OBSERVER", oc.height())
    with pytest.raises(RpcError) as refused:
        oc.submit(tx)
    assert (refused.value.status, refused.value.code) == (403, "read_only"), refused.value
    assert "validator" in refused.value.message


def _check_certificates(obs: ObserverNode, genesis: Genesis, top: int, account: str) -> None:
    """Every certificate the observer stores: a quorum of validators, never the observer's account."""
    publics = genesis.validators.publics
    with obs.client() as oc:
        for start in range(1, top + 1, 100):
            for b in oc.blocks(start, min(100, top + 1 - start)):
                signers = [s["validator"] for s in b["certificate"]["signatures"]]
                assert account not in signers
                assert set(signers) <= publics and len(signers) >= genesis.validators.quorum, b["header"]["height"]


def test_an_account_without_the_role_is_refused_with_the_reason(net: Cluster, tmp_path: Path) -> None:
    genesis = Genesis.load(net.manifest["genesis"])
    issuer = net.key(*ISSUER)  # a real account, with standing (it registers assets), but no observer role
    host, port = genesis.validators.validators[0].address.rsplit(":", 1)

    async def as_observer(key: KeyPair) -> str:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            shake = await handshake(
                reader, writer, key=key, chain_id=genesis.chain_id, genesis_hash=genesis.hash,
                allowed=genesis.validators.publics, timeout=5, role=OBSERVER,
            )
            return shake.peer
        finally:
            writer.close()

    with pytest.raises(HandshakeError) as refused:
        asyncio.run(as_observer(issuer))
    assert "holds neither the auditor nor the regulator role" in str(refused.value)
    # the same handshake with the regulator's key succeeds: the refusal is the role, not the handshake
    assert asyncio.run(as_observer(net.key(*REGULATOR))) == genesis.validators.validators[0].public

    # a whole observer process with that key says so, and follows nothing
    obs = ObserverNode.write(net, tmp_path / "refused", _key_path(net, *ISSUER), "issuer-observer")
    obs.start()
    try:
        st = wait_for(lambda: (s := obs.status())["not_ready"] and "auditor" in s["not_ready"] and s, 20, "the refusal in status")
        assert st["height"] == 0 and not st["ready"] and not any(p["connected"] for p in st["peers"])
    finally:
        assert obs.stop() == 0


def test_an_observers_votes_and_txs_never_reach_consensus_and_a_revoked_role_drops_it(net: Cluster) -> None:
    """The regulator's observer, in this process: it votes and gossips with its own valid key; the
    validators drop all of it (metrics) and answer only its block requests; once governance revokes
    its role, every validator drops its link and refuses it again."""
    genesis = Genesis.load(net.manifest["genesis"])
    regulator = net.key(*REGULATOR)
    before = sum(net.metric(i, "titlechain_observer_messages_dropped_total") for i in range(4))
    answers: list[tuple[str, Any]] = []
    gossiped = net.register(net.key(*ISSUER), regulator.public, "WR-OBS-GOSSIP", net.status(0)["height"])

    async def run() -> tuple[int, list[str]]:
        t = Transport(
            regulator, role=OBSERVER, chain_id=genesis.chain_id, genesis_hash=genesis.hash,
            validators=genesis.validators, on_message=lambda sender, msg: answers.append((sender, msg)),
        )
        t.dial()
        try:
            await _until(lambda: all(p.connected for p in t.peer_status()), 15, "links to all four")
            height = net.status(0)["height"]
            head = net.head(0)
            for v in genesis.validators.validators:
                for view in range(5):  # a COMMIT for the next height, well-formed and signed by the observer
                    vote = Commit(view, height + 1, head[1], sign_commit(regulator, genesis.chain_id, height + 1, view, head[1]))
                    t.send(v.public, Signed.sign(regulator, vote).to_plain())
                t.send(v.public, {"t": "txs", "txs": [gossiped.to_plain()]})
                t.send(v.public, SyncRequest(1, 4).to_plain())
            await _until(lambda: len({s for s, m in answers if m.get("t") == "sync_resp"}) == 4, 10, "four sync answers")
            _revoke(net, regulator.public)
            await _until(lambda: not any(p.connected for p in t.peer_status()), 20, "every validator to drop the link")
            await _until(lambda: len(t.failures()) == 4, 20, "every redial refused")
            return height, list(t.failures().values())
        finally:
            await t.close()

    height, failures = asyncio.run(run())
    assert all("holds neither the auditor nor the regulator role" in f for f in failures), failures
    dropped = sum(net.metric(i, "titlechain_observer_messages_dropped_total") for i in range(4)) - before
    assert dropped >= 4 * 6, f"validators dropped {dropped} of the observer's 24 votes and gossip frames"
    with net.client(0) as vc:
        # the revocation took three blocks after `height`: the votes' height is certified by validators alone
        for b in vc.blocks(height + 1, 3):
            assert regulator.public not in [s["validator"] for s in b["certificate"]["signatures"]]
        with pytest.raises(RpcError) as unknown:  # its gossip never entered a mempool, so never a block
            vc.tx(gossiped.tx_id)
        assert unknown.value.status == 404


def _revoke(c: Cluster, account: str) -> None:
    """Governance: a member proposes to revoke the account's regulator role, two more approve."""
    members = [load_key_file(p) for p in c.manifest["keys"]["members"]]
    with c.client(1) as vc:
        height = vc.height()
        proposal = sign(members[0], c.chain_id, "gov.propose", {"action": "revoke_role", "params": {"account": account, "role": "regulator"}}, expires=height + 100)
        pid = vc.submit(proposal, wait=True, timeout=30)["receipt"]["tx_id"]
        for m in members[1:3]:
            receipt = vc.submit(sign(m, c.chain_id, "gov.approve", {"proposal_id": pid}, expires=height + 100), wait=True, timeout=30)["receipt"]
            assert receipt["status"] == "ok", receipt
        assert vc.account(account)["roles"] == []


async def _until(condition: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.05)
