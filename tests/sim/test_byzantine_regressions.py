"""Scripted attacks that once split or halted the chain, one per defect, each by a Byzantine
validator signing with its own key. Each schedule is exact (`scripted.Script`), so the attack
happens every run, not with some seeds.
"""

from __future__ import annotations

import pytest
from scripted import Script
from simnet import Violation

from chain.block import sign_commit
from node.consensus.messages import Commit, NewView, Prepare, PrePrepare, Signed, Status, ViewChange


def commit_b_at_height_1_on_the_primary_only(s: Script, byz: int) -> tuple[int, list[int]]:
    """View 0: everyone prepares block B at height 1; only the primary gets the COMMITs.

    Returns the primary of view 0 and the two honest replicas left prepared but uncommitted.
    """
    p0 = s.primary_idx(0)
    late = [i for i in range(4) if i not in (p0, byz)]
    s.submit(s.world.make_txs(4))
    s.deliver_all(PrePrepare, to=[0, 1, 2, 3], view=0, height=1)
    s.deliver_all(Prepare, to=[0, 1, 2, 3], view=0, height=1)
    s.deliver_all(Commit, to=[p0], view=0, height=1)
    assert len(s.chain(p0)) == 1
    assert all(s.chain(i) == [] for i in late)
    assert all(s.node(i).replica.best_prepared is not None for i in late)
    return p0, late


def new_view_with_inflated_height(s: Script, byz: int, late: list[int]) -> tuple[Signed, Signed]:
    """The Byzantine primary of view 1: a NEW-VIEW naming height 2 over the VIEW-CHANGEs for
    height 1 (so their proofs of B are never looked at), and a fresh block X at height 1."""
    for i in late:
        s.timeout(i)  # the COMMITs are late: they give up on view 0, carrying B's prepared proof
    vcs = [s.find(ViewChange, src=i, view=1)[0].signed for i in late]
    assert all(vc.msg.prepared is not None for vc in vcs)
    own = s.sign(byz, ViewChange(1, 1, None))
    chosen = tuple(sorted([own, *vcs], key=lambda v: v.sender))
    new_view = s.sign(byz, NewView(1, 2, chosen, None))
    app = s.node(late[0]).app
    x = app.build(1, 1, s.world.make_txs(1, start=100), s.world.vset.primary(1).public)
    s.add_block(x)  # pushed by the Byzantine primary ahead of its PRE-PREPARE
    pre_prepare = s.sign(byz, PrePrepare(1, 1, x.block_hash))
    return new_view, pre_prepare


def vote_for_it(s: Script, byz: int, late: list[int], view: int, height: int) -> None:
    """Deliver the honest PREPAREs and COMMITs among `late`, adding the Byzantine COMMIT."""
    s.deliver_all(Prepare, to=late, view=view, height=height, src=late)
    for sent in s.find(Commit, view=view, height=height):
        block_hash = sent.msg.block_hash
        sig = sign_commit(s.key(byz), s.world.chain_id, height, view, block_hash)
        s.deliver(s.sign(byz, Commit(view, height, block_hash, sig)), late)
        break
    s.deliver_all(Commit, to=late, view=view, height=height, src=late)


@pytest.mark.parametrize("order", ["new_view_first", "pre_prepare_first"])
def test_defect1_new_view_height_is_bound_to_its_view_changes(order: str) -> None:
    """Defect 1: a NEW-VIEW's height was bound to nothing.

    v0 commits B at height 1; v2 and v3 prepared B but their COMMITs are late; the Byzantine
    primary of view 1 sends NEW-VIEW(1, H=2, the three VIEW-CHANGEs with B's proof) and a fresh
    PRE-PREPARE(1, 1, X). They used to commit X at height 1 (the world's oracle raised). Now a
    NEW-VIEW for a height above a replica's own is held until the replica has synced up to it,
    so X is never prepared at height 1.
    """
    s = Script()
    byz = s.primary_idx(1)
    p0, late = commit_b_at_height_1_on_the_primary_only(s, byz)
    new_view, pre_prepare = new_view_with_inflated_height(s, byz, late)
    first, second = (new_view, pre_prepare) if order == "new_view_first" else (pre_prepare, new_view)
    s.deliver(first, late)
    s.deliver(second, late)
    vote_for_it(s, byz, late, view=1, height=1)
    assert not s.find(Prepare, view=1, height=1), "an honest replica prepared X at a height B holds"
    assert all(s.chain(i) == [] for i in late)
    # what the NEW-VIEW promised (height 1 decided) is real: they fetch B, certified, and go on
    for i in late:
        s.sync(i, p0)
        assert s.chain(i) == s.chain(p0)


def test_defect2_status_does_not_relay_an_unsigned_new_view() -> None:
    """Defect 2: the NEW-VIEW inside a STATUS was checked to *name* the primary, never signed by it.

    View 0's primary is silent; the others ask for view 1. A Byzantine validator (not view 1's
    primary) makes up view 1's NEW-VIEW from the VIEW-CHANGEs it saw, names the primary as its
    sender without its signature, and relays it in a STATUS it signs itself. The replicas, the
    primary among them, used to settle in view 1 on it: the primary then proposed without
    ever having sent a NEW-VIEW, and nobody else could follow it there.
    """
    s = Script()
    p0, p1 = s.primary_idx(0), s.primary_idx(1)
    byz = next(i for i in range(4) if i not in (p0, p1))
    honest = [i for i in range(4) if i not in (p0, byz)]
    s.submit(s.world.make_txs(2))
    for i in honest:
        s.timeout(i)
    own = s.sign(byz, ViewChange(1, 1, None))
    vcs = (own, *(s.find(ViewChange, src=i, view=1)[0].signed for i in honest))
    body = NewView(1, 1, tuple(sorted(vcs, key=lambda v: v.sender)), None)
    forged = Signed(body, s.key(p1).public, s.sign(byz, body).sig)  # the forger's own signature
    status = s.sign(byz, Status(1, 0, None, None, forged, ()))
    s.deliver(status, honest)
    assert all(s.node(i).replica.in_view_change for i in honest), "a forged NEW-VIEW settled the view"
    assert not s.find(PrePrepare, view=1)
    # the primary's own NEW-VIEW, once it has the VIEW-CHANGEs, still settles the view
    s.deliver_all(ViewChange, to=[p1], view=1)
    s.deliver(own, [p1])
    real = s.find(NewView, src=p1, view=1)
    assert real, "the primary of view 1 did not send its NEW-VIEW"
    s.deliver(real[0], honest)
    assert not any(s.node(i).replica.in_view_change for i in honest)


def test_defect1_fails_loudly_without_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule above really is an attack: with the height check disabled it splits the chain."""
    from node.consensus import pbft

    monkeypatch.setattr(pbft.Replica, "_defer_new_view", lambda self, signed: False)
    s = Script()
    byz = s.primary_idx(1)
    _, late = commit_b_at_height_1_on_the_primary_only(s, byz)
    new_view, pre_prepare = new_view_with_inflated_height(s, byz, late)
    s.deliver(new_view, late)
    s.deliver(pre_prepare, late)
    with pytest.raises(Violation, match="two certificates/blocks at height 1"):
        vote_for_it(s, byz, late, view=1, height=1)


def test_defect4_votes_of_a_removed_validator_never_count() -> None:
    """Defect 4: messages for a height whose validator set was not yet known were checked against
    a guess (today's set) and counted once the height came.

    Five validators; block 1 removes the last one, E, so height 2 is decided by four (quorum 3).
    While replica R still works on height 1, E (a validator until then, signing with its own
    key) sends R its COMMIT for the block proposed at height 2. R commits height 1 and then
    used to count E's COMMIT with two others: a certificate with a non-member's signature, which
    every node refuses (the real node stopped with a fatal error). Now a vote counts only if its
    sender belongs to the set of the height being decided, as known when it is counted.
    """
    from chain.validators import ValidatorSet

    s = Script(n=5)
    full = s.world.vset
    removed = full.validators[-1]
    smaller = ValidatorSet(full.validators[:-1])
    for node in s.world.nodes:
        app = node.app
        # the set of height h is known once block h-1 is committed; before that a ledger guesses
        app.validator_set = lambda h, app=app: smaller if h >= 2 and len(app.chain) >= 1 else full
    s.world._check_commit = lambda node, block, cert: None  # the oracle knows one set; checked below
    e = next(n.idx for n in s.world.nodes if n.key.public == removed.public)
    p0 = s.primary_idx(0)
    r, a, b = [i for i in range(5) if i not in (e, p0)]
    s.submit(s.world.make_txs(2))
    s.deliver_all(PrePrepare, to=[0, 1, 2, 3, 4], view=0, height=1)
    s.deliver_all(Prepare, to=[0, 1, 2, 3, 4], view=0, height=1)
    s.deliver_all(Commit, to=[p0, a, b], view=0, height=1)
    s.submit(s.world.make_txs(2, start=10))
    proposal = s.find(PrePrepare, src=p0, view=0, height=2)
    assert proposal, "the primary did not propose at height 2"
    block_hash = proposal[0].msg.block_hash
    sig = sign_commit(s.key(e), s.world.chain_id, 2, 0, block_hash)
    s.deliver(s.sign(e, Commit(0, 2, block_hash, sig)), [r])  # R is still at height 1
    s.deliver_all(Commit, to=[r], view=0, height=1)
    assert len(s.chain(r)) == 1
    s.deliver_all(PrePrepare, to=[r, a, b], view=0, height=2)
    s.deliver_all(Prepare, to=[p0, r, a, b], view=0, height=2, src=[p0, r, a, b])
    s.deliver_all(Commit, to=[r], view=0, height=2, src=[a])
    assert len(s.chain(r)) == 1, "R committed with the removed validator's vote counted"
    s.deliver_all(Commit, to=[r], view=0, height=2, src=[b])
    assert len(s.chain(r)) == 2
    block, cert = s.node(r).app.chain[1]
    cert.verify(s.world.chain_id, 2, block.block_hash, smaller)
