"""Targeted scenarios: the normal case, each network fault, each Byzantine behaviour."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simnet import Faults, World

from chain.block import Certificate
from node.consensus import pbft
from node.consensus.messages import NewView, Signed, ViewChange, parse_signed

DEADLINE = 60_000


def submit_all(world: World, count: int, at: float = 0.0) -> None:
    for tx in world.make_txs(count):
        world.at(at, lambda tx=tx: world.submit(tx))


def run(world: World, count: int = 12) -> World:
    submit_all(world, count)
    world.run_until(1)
    world.check_liveness(DEADLINE)
    return world


@pytest.mark.parametrize("n", [4, 7])
def test_normal_case_commits_every_tx_in_view_zero(n: int) -> None:
    world = run(World(1, n=n), 40)
    chains = {tuple(b.block_hash for b, _ in node.app.chain) for node in world.nodes}
    assert len(chains) == 1
    assert all(node.replica.view == 0 for node in world.nodes)
    block, cert = world.nodes[0].app.chain[0]
    cert.verify(world.chain_id, 1, block.block_hash, world.vset)
    assert len(cert.signatures) >= world.vset.quorum


def test_idle_chain_makes_no_blocks_and_sets_no_timers() -> None:
    world = World(2, n=4)
    world.run_until(10_000)
    assert all(not node.app.chain and not node.timers for node in world.nodes)


def test_same_seed_same_run() -> None:
    def once() -> tuple:
        w = run(World(7, n=4, faults=Faults(drop=0.2, duplicate=0.2, max_delay_ms=100, until_ms=2000)))
        return w.steps, [b.block_hash for b, _ in w.nodes[1].app.chain]

    assert once() == once()


@pytest.mark.parametrize("seed", [3, 4])
def test_drops_duplicates_and_delays(seed: int) -> None:
    run(World(seed, n=4, faults=Faults(drop=0.3, duplicate=0.3, max_delay_ms=200, until_ms=3000)), 30)


def test_partition_then_heal_catches_the_minority_up() -> None:
    world = World(5, n=4, faults=Faults(until_ms=2000))
    world.partition = [{0, 1, 2}, {3}]
    world.at(2000, world.heal)
    run(world, 20)
    assert world.nodes[3].syncs > 0  # the cut-off replica caught up by sync, not by replaying votes


def test_crash_and_restart_of_the_primary() -> None:
    world = World(6, n=4, faults=Faults(until_ms=3000))
    world.at(30, lambda: world.crash(0))
    world.at(1500, lambda: world.restart(0))
    run(world, 20)
    restarted = world.nodes[0]
    assert restarted.replica.height == len(restarted.app.chain) + 1


def test_restart_resumes_after_the_recorded_view() -> None:
    world = run(World(8, n=4, byzantine={1: frozenset({"silent"})}), 6)
    node = world.nodes[2]
    assert node.app.record is not None
    record = node.app.record
    world.crash(2)
    world.restart(2)
    if record.view_change is None:
        assert node.replica.view == record.view + 1  # never votes again in a view it may have voted in
    else:
        assert (node.replica.view, node.replica.in_view_change) == (record.view, True)
    assert node.replica.height == len(node.app.chain) + 1  # rebuilt from its store


@pytest.mark.parametrize(
    "behaviour", ["silent", "equivocate", "split", "double_vote", "bad_root", "invalid_tx", "replay", "forge"]
)
@pytest.mark.parametrize("n", [4, 7])
def test_byzantine_primary(behaviour: str, n: int) -> None:
    f = (n - 1) // 3
    byzantine = {i: frozenset({behaviour}) for i in range(f)}  # the primaries of views 0 .. f-1
    world = run(World(11, n=n, byzantine=byzantine), 20)
    if behaviour in ("silent", "bad_root", "invalid_tx"):
        assert all(node.replica.view >= f for node in world.honest())


def test_double_voting_is_recorded_as_evidence() -> None:
    world = run(World(12, n=4, byzantine={1: frozenset({"double_vote"})}), 8)
    evidence = [e for node in world.honest() for e in node.replica.evidence]
    assert evidence and all(e.sender == world.nodes[1].key.public for e in evidence)
    assert all(e.first.msg.block_hash != e.second.msg.block_hash for e in evidence)


def test_a_primary_that_splits_its_pre_prepares_is_convicted_through_the_view_change_proofs() -> None:
    # the one peer that got the primary's own PRE-PREPARE never receives the other directly: it
    # sees it only inside the prepared proofs of the others' VIEW-CHANGEs (pbft.Replica._witness)
    world = run(World(14, n=4, byzantine={0: frozenset({"split"})}), 8)
    bad = world.nodes[0].key.public
    evidence = [e for node in world.honest() for e in node.replica.evidence]
    assert any(e.kind == "pre_prepare" and e.view == 0 for e in evidence), evidence
    assert all(e.sender == bad and e.first.digest != e.second.digest for e in evidence)
    assert all(node.replica.view >= 1 for node in world.honest())


def test_timeouts_double_on_failed_views_and_a_silent_primary_teaches_no_patience() -> None:
    world = World(13, n=7, byzantine={0: frozenset({"silent"}), 1: frozenset({"silent"})}, block_txs=4)
    run(world, 12)
    timers = world.nodes[3].timers
    assert timers[0] == (0, 1, 200)
    assert (1, 1, 400) in timers and (2, 1, 800) in timers  # each failed view doubles it
    # height 1 committed in view 2 after two views whose primaries never proposed: back to the base
    assert next(ms for _, h, ms in timers if h == 2) == 200
    assert all(node.replica.patience == 0 and node.replica.view == 2 for node in world.honest())


def test_a_view_left_although_its_primary_proposed_lengthens_the_next_heights_timer() -> None:
    # view 0's primary proposes, but its PREPAREs are lost: the height did not fit the timer
    world = World(16, n=4, block_txs=4)
    world.drop_filter = lambda src, dst, m: m["body"]["kind"] == "prepare" and m["body"]["view"] == 0
    run(world, 12)
    timers = world.nodes[2].timers
    assert timers[0] == (0, 1, 200) and (1, 1, 400) in timers
    assert next(ms for _, h, ms in timers if h == 2) == 400  # patience 1: twice the base from here on
    assert all(node.replica.patience == 1 and node.replica.view == 1 for node in world.nodes)


@pytest.mark.parametrize("seed", [17, 18, 19])
@pytest.mark.parametrize("n", [4, 7])
def test_byzantine_primaries_that_split_their_proposals_raise_patience_one_step_each_at_most(n: int, seed: int) -> None:
    # the attack on the timer policy: the faulty primaries of views 0 .. f-1 propose, but different
    # blocks to different peers, so honest replicas leave views that had a PRE-PREPARE. That may
    # lengthen their timer one step per view a faulty primary led, no more; the honest primary
    # that commits keeps its view, so the faulty ones lead no other
    f = (n - 1) // 3
    world = World(seed, n=n, byzantine={i: frozenset({"split"}) for i in range(f)}, block_txs=4)
    run(world, 24)
    for node in world.honest():
        assert node.replica.patience <= node.replica.view <= f
        assert max(ms for _, h, ms in node.timers if h > 1) <= 200 << node.replica.view
    if n == 4:  # one faulty primary always splits the honest three: the attack reaches its bound
        assert all(node.replica.view == 1 and node.replica.patience == 1 for node in world.honest())


def test_patience_comes_back_down_after_clean_commits() -> None:
    world = World(5, n=4, block_txs=1)
    for node in world.nodes:
        node.replica.patience = 2
    run(world, pbft.PATIENCE_RELAX + 3)
    timers = world.nodes[1].timers
    assert all(node.replica.view == 0 for node in world.nodes)  # no view change at all
    last = pbft.PATIENCE_RELAX  # the 32nd clean commit takes patience from 2 to 1
    assert {ms for _, h, ms in timers if h <= last} == {800}
    assert {ms for _, h, ms in timers if h > last} == {400}
    assert all(node.replica.patience == 1 for node in world.nodes)


def test_synced_block_needs_a_valid_certificate() -> None:
    world = run(World(14, n=4), 3)
    block, cert = world.nodes[0].app.chain[0]
    fresh = World(14, n=4).nodes[1].replica
    forged = Certificate(cert.height, cert.view, cert.block_hash, cert.signatures[:1])
    assert not any(isinstance(a, pbft.CommitBlock) for a in fresh.handle(pbft.SyncedBlock(block, forged)))
    actions = fresh.handle(pbft.SyncedBlock(block, cert))
    assert [a.block for a in actions if isinstance(a, pbft.CommitBlock)] == [block]


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["kind", "view", "height", "block_hash", "block", "commit_sig", "prepared", "view_changes", "pre_prepare"]), plain), junk=plain)
def test_malformed_messages_never_raise(body: dict, junk: object) -> None:
    world = World(15, n=4)
    replica = world.nodes[1].replica
    sender = world.nodes[0].key.public
    for kind in ("pre_prepare", "prepare", "commit", "view_change", "new_view", "status"):
        replica.handle(pbft.Received({"body": dict(body, kind=kind), "sender": sender, "sig": "00" * 64}))
    replica.handle(pbft.Received(junk))
    replica.handle(pbft.Received({"body": body, "sender": sender, "sig": "00" * 64}))


def test_livelock_seed_3398_one_replica_a_view_ahead() -> None:
    """Soak seed 3398 (n=7, two silent nodes, so every honest replica is needed for a quorum).

    v4 restarted and ran its view timer out of phase with the others: the timer it armed on
    entering a view change kept running after the NEW-VIEW settled that view, so each settled
    view gave it only the few ms left over, and it left for the next view alone before it could
    commit. Height 2 never committed: in views 3 to 17 v4 never stayed long enough to commit.
    """
    from sim_schedules import run_seed

    outcome = run_seed(3398, 7)  # raises Violation (liveness) on the livelock
    assert outcome.heights >= 2


def test_view_timer_restarts_when_the_view_change_quorum_forms_and_when_the_view_settles() -> None:
    """The mechanism behind seed 3398: each phase of a view gets a full timer period.

    A replica that entered view 1 alone keeps one timer running while it waits (resending its
    VIEW-CHANGE). When the others join, the wait for the NEW-VIEW starts afresh; when the NEW-VIEW
    comes, the wait for a commit starts afresh, instead of inheriting what the change left over.
    """
    world = World(16, n=4)
    tx = world.make_txs(1)[0]
    for node in world.nodes:
        world.arrived[node.idx].append(tx)  # pending everywhere, nothing delivered yet
    primary1 = world.by_public(world.vset.primary(1).public)
    assert primary1 is not None
    me = next(n for n in world.nodes if n is not primary1 and n.key.public != world.vset.primary(0).public)
    others = [n for n in world.nodes if n is not me and n is not primary1]
    replica = me.replica
    replica.handle(pbft.TxsPending())
    actions = replica.handle(pbft.Timeout(0, 1))
    assert (replica.view, replica.in_view_change) == (1, True)
    assert [a for a in actions if isinstance(a, pbft.SetTimer)] == [pbft.SetTimer(1, 1, 400)]

    def timers(actions: list[pbft.Action]) -> list[pbft.SetTimer]:
        return [a for a in actions if isinstance(a, pbft.SetTimer)]

    vcs = [replica._my_view_change] + [Signed.sign(n.key, ViewChange(1, 1, None)) for n in (primary1, *others)]
    assert timers(replica.handle(pbft.Received(vcs[1].to_plain()))) == []  # 2 of 3: still waiting
    assert timers(replica.handle(pbft.Received(vcs[2].to_plain()))) == [pbft.SetTimer(1, 1, 400)]  # quorum
    assert timers(replica.handle(pbft.Received(vcs[3].to_plain()))) == []  # only the q-th restarts it
    new_view = Signed.sign(primary1.key, NewView(1, 1, tuple(vcs[:3]), None))
    actions = replica.handle(pbft.Received(new_view.to_plain()))
    assert (replica.view, replica.in_view_change) == (1, False)
    assert timers(actions) == [pbft.SetTimer(1, 1, 400)]  # the settled view: a full period


def test_deadlock_seed_264_restarted_replica_a_view_ahead() -> None:
    """Soak seed 264 (n=4, one silent node, so all three honest replicas make the quorum).

    v3's VIEW-CHANGE for view 1 was lost; it gathered a quorum for view 1, timed out and moved
    to view 2, then crashed and restarted, losing the view-1 VIEW-CHANGEs its STATUS replies
    could have relayed. v1 and v2 held two VIEW-CHANGEs for view 1 and waited for a third that
    could never come; one validator in view 2 is not the f+1 that would pull them up.
    """
    from sim_schedules import run_seed

    run_seed(264, 4)  # raises Violation (liveness) on the deadlock


def test_view_change_for_a_later_view_counts_toward_leaving_the_current_one() -> None:
    """The mechanism behind seed 264: a VIEW-CHANGE for w+1 shows its sender left w-1 too.

    A replica changing to view 1 that holds VIEW-CHANGEs for view 1 from itself and one peer,
    and for view 2 from a third, has a quorum that left view 0: on its timer it moves to view 2
    (where the third waits) instead of resending for a view-1 quorum that cannot form.
    """
    world = World(17, n=4)
    tx = world.make_txs(1)[0]
    for node in world.nodes:
        world.arrived[node.idx].append(tx)
    me, peer, ahead = world.nodes[1], world.nodes[2], world.nodes[3]
    replica = me.replica
    replica.handle(pbft.TxsPending())
    replica.handle(pbft.Timeout(0, 1))
    assert (replica.view, replica.in_view_change) == (1, True)
    replica.handle(pbft.Received(Signed.sign(peer.key, ViewChange(1, 1, None)).to_plain()))
    replica.handle(pbft.Received(Signed.sign(ahead.key, ViewChange(2, 1, None)).to_plain()))
    assert replica.view == 1  # one validator ahead is not f+1
    actions = replica.handle(pbft.Timeout(*replica.timer))
    assert (replica.view, replica.in_view_change) == (2, True)
    sent = [parse_signed(a.message).msg for a in actions if isinstance(a, pbft.Broadcast)]
    assert sent == [ViewChange(2, 1, None)]


def test_liveness_byzantine_seed_28_a_seat_rotated_during_a_view_change() -> None:
    """Byzantine soak seed 28 (n=4; one seat rotated to a standby key and a standby validator added,
    both by the block at height 2, so the set of height 3 is five with a quorum of four, and the
    Byzantine member's vote is needed unless both newcomers vote).

    The two newcomers asked for view 3 while they were still at height 2 (they followed f+1 others
    there), then committed height 2 by sync. On each timeout they re-sent that VIEW-CHANGE for
    height 2, which the others, at height 3, do not count, and never asked for view 3 at height 3:
    three VIEW-CHANGEs of the set of height 3 stayed one short of its quorum forever. A replica
    whose VIEW-CHANGE names a height below its own now asks again at its own height.
    """
    from sim_adversary import ci_strategies
    from sim_schedules import run_seed

    outcome = run_seed(28, 4, ci_strategies())  # raises Violation (liveness) without the fix
    assert outcome.heights >= 3


def test_a_replica_forgets_the_new_views_it_sent_once_past_them() -> None:
    """One entry per view change it led would otherwise stay for the process's life."""
    world = run(World(11, n=4, byzantine={0: frozenset({"silent"})}), 20)
    primaries = [node for node in world.honest() if node.replica.view >= 1]
    assert primaries
    for node in world.honest():
        assert all(v > node.replica.view for v in node.replica.sent_new_view), node.replica.sent_new_view
