"""Defect 3: commit signatures from different views must never combine into one certificate.

n = 7, f = 2, quorum 5. Validators 5 and 6 are faulty; 0-4 are honest. Block B (proposed by
v0 in view 0) gathers COMMITs in two views, each short of a quorum:

- view 0: honest v1 prepares B and commits; the faulty pair commit too (3 commits);
- view 2: the NEW-VIEW re-proposes B (v1's view-0 proof is the highest it holds); honest v3 and
  v4 commit, and so does the faulty pair (4 commits).

Neither view commits B, so the honest replicas are free to commit another block A at height 1
in a later view (a NEW-VIEW whose quorum carries a higher proof for A). Before commit
signatures named their view, the faulty pair could pool v1's view-0 commit with the view-2
ones into five signatures that verified as a certificate for B; a replica syncing B from them
would then have committed B where everyone else committed A.

Every honest signature here is produced by a real `Replica` fed the messages it would have
received; the faulty validators sign with their own keys.
"""

from __future__ import annotations

import pytest
from simnet import World

from chain.block import Block, Certificate, CertificateError, sign_commit
from chain.crypto import KeyPair
from node.consensus import pbft
from node.consensus.messages import (
    Commit,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    ViewChange,
    parse_signed,
)

FAULTY = (5, 6)


class Scenario:
    def __init__(self) -> None:
        self.world = World(31, n=7)
        self.keys: list[KeyPair] = self.world.consortium.validator_keys
        self.vset = self.world.vset
        assert [self.vset.primary(v).public for v in (0, 2)] == [self.keys[0].public, self.keys[2].public]
        txs = self.world.make_txs(2)
        self.block: Block = self.world.nodes[0].app.build(1, 0, txs, self.keys[0].public)
        self.hash = self.block.block_hash
        self.pre_prepare_0 = self.signed(0, PrePrepare(0, 1, self.hash))

    def signed(self, idx: int, msg: object) -> dict:
        return Signed.sign(self.keys[idx], msg).to_plain()  # type: ignore[arg-type]

    def prepare(self, idx: int, view: int) -> dict:
        return self.signed(idx, Prepare(view, 1, self.hash))

    def feed(self, idx: int, messages: list[dict], block_from: int) -> list[pbft.Action]:
        """The block as its proposer pushes it (blocks travel beside the PRE-PREPARE), then the messages."""
        replica = self.world.nodes[idx].replica
        actions = replica.handle(pbft.BlockReceived(self.keys[block_from].public, self.block))
        return actions + [a for m in messages for a in replica.handle(pbft.Received(m))]

    def new_view_2(self) -> dict:
        """What v2 broadcasts: VIEW-CHANGEs of 0, 1, 2 and the faulty pair; v1's proves B in view 0."""
        proof = PreparedProof(
            Signed.sign(self.keys[0], PrePrepare(0, 1, self.hash)),
            tuple(Signed.sign(self.keys[i], Prepare(0, 1, self.hash)) for i in (1, 2, 5, 6)),
        )
        vcs = tuple(
            Signed.sign(self.keys[i], ViewChange(2, 1, proof if i == 1 else None)) for i in (0, 1, 2, 5, 6)
        )
        return self.signed(2, NewView(2, 1, vcs, Signed.sign(self.keys[2], PrePrepare(2, 1, self.hash))))


def commit_sig_of(actions: list[pbft.Action], view: int, block_hash: str) -> str:
    """The commit signature an honest replica broadcast, as anyone on the network sees it."""
    broadcast = [parse_signed(a.message).msg for a in actions if isinstance(a, pbft.Broadcast)]
    commits = [m for m in broadcast if isinstance(m, Commit)]
    assert len(commits) == 1, "the replica did not commit"
    msg = commits[0]
    assert isinstance(msg, Commit) and (msg.view, msg.height, msg.block_hash) == (view, 1, block_hash)
    return msg.commit_sig


@pytest.fixture(scope="module")
def harvested() -> tuple[Scenario, dict[int, dict[str, str]]]:
    """The commit signatures for B per view, keyed by the signer's public key."""
    s = Scenario()
    by_view: dict[int, dict[str, str]] = {0: {}, 2: {}}
    # view 0: v1 validates B, prepares, sees prepares from v2 and the faulty pair, commits
    actions = s.feed(1, [s.pre_prepare_0] + [s.prepare(i, 0) for i in (2, 5, 6)], block_from=0)
    by_view[0][s.keys[1].public] = commit_sig_of(actions, 0, s.hash)
    # view 2: v3 and v4 enter it through v2's NEW-VIEW, prepare the re-proposed B, commit
    new_view = s.new_view_2()
    for idx, others in ((3, (4, 5, 6)), (4, (3, 5, 6))):
        actions = s.feed(idx, [new_view] + [s.prepare(i, 2) for i in others], block_from=2)
        by_view[2][s.keys[idx].public] = commit_sig_of(actions, 2, s.hash)
    # the faulty pair sign B in both views with their own keys
    for view in (0, 2):
        for i in FAULTY:
            by_view[view][s.keys[i].public] = sign_commit(s.keys[i], s.world.chain_id, 1, view, s.hash)
    return s, by_view


def mixed(s: Scenario, by_view: dict[int, dict[str, str]], named_view: int) -> Certificate:
    """Five signatures for B: v1's from view 0, v3's and v4's from view 2, the faulty pair's from named_view."""
    keys = s.keys
    sigs = {keys[1].public: by_view[0][keys[1].public]}
    sigs |= {keys[i].public: by_view[2][keys[i].public] for i in (3, 4)}
    sigs |= {keys[i].public: by_view[named_view][keys[i].public] for i in FAULTY}
    assert len(sigs) == s.vset.quorum == 5
    return Certificate.build(1, named_view, s.hash, sigs)


def test_each_view_alone_is_short_of_a_quorum(harvested: tuple[Scenario, dict[int, dict[str, str]]]) -> None:
    """The harvested signatures are genuine: each view's own fail only for want of a quorum."""
    s, by_view = harvested
    assert (len(by_view[0]), len(by_view[2])) == (3, 4)
    for view, sigs in by_view.items():
        with pytest.raises(CertificateError, match=f"{len(sigs)} signatures, a quorum is 5 of 7"):
            Certificate.build(1, view, s.hash, sigs).verify(s.world.chain_id, 1, s.hash, s.vset)


@pytest.mark.parametrize("named_view", [0, 2])
def test_signatures_from_two_views_do_not_verify_as_one_certificate(
    harvested: tuple[Scenario, dict[int, dict[str, str]]], named_view: int
) -> None:
    s, by_view = harvested
    cert = mixed(s, by_view, named_view)
    with pytest.raises(CertificateError, match=f"not its commit to this block in view {named_view}"):
        cert.verify(s.world.chain_id, 1, s.hash, s.vset)
    # nor does it survive the wire: the parsed form is refused the same way
    with pytest.raises(CertificateError, match="bad signature"):
        Certificate.from_plain(cert.to_plain()).verify(s.world.chain_id, 1, s.hash, s.vset)


@pytest.mark.parametrize("named_view", [0, 2])
def test_a_replica_refuses_to_sync_a_block_certified_across_views(
    harvested: tuple[Scenario, dict[int, dict[str, str]]], named_view: int
) -> None:
    s, by_view = harvested
    replica = World(32, n=7).nodes[0].replica  # an honest replica still at height 1
    assert replica.height == 1
    actions = replica.handle(pbft.SyncedBlock(s.block, mixed(s, by_view, named_view)))
    assert not any(isinstance(a, pbft.CommitBlock) for a in actions)
    assert replica.height == 1
    # the same block with a quorum of one view is taken: the refusal is the mixing, nothing else
    v0 = s.keys[0]
    one_view = dict(by_view[2], **{v0.public: sign_commit(v0, s.world.chain_id, 1, 2, s.hash)})
    actions = replica.handle(pbft.SyncedBlock(s.block, Certificate.build(1, 2, s.hash, one_view)))
    assert [a.block.block_hash for a in actions if isinstance(a, pbft.CommitBlock)] == [s.hash]
