"""The Byzantine adversary against today's core: one deterministic schedule per known defect.

Each schedule runs in a controlled world (nothing happens unless the test fires it) and ends
with the attack made; the oracles raise `Violation` on the way. They are strict xfails while
the defect is open (sim_adversary.OPEN_DEFECTS): when a fix lands, the test passes, pytest
reports XPASS(strict) as a failure, and the fixer removes the marker and the entry in
OPEN_DEFECTS (which also returns the strategies that target it to the CI mix).
"""

from __future__ import annotations

import pytest
from sim_adversary import OPEN_DEFECTS
from sim_app import GOV_OP
from sim_explore import Explorer, Scope
from simnet import Violation


def open_defect(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(name in OPEN_DEFECTS, reason=OPEN_DEFECTS.get(name, ""), raises=Violation, strict=True)


def controlled(byzantine: dict[int, frozenset[str]], txs: int = 1) -> Explorer:
    return Explorer(Scope(byzantine=tuple(byzantine.items()), txs=txs))


def new_view_height_prefix(ex: Explorer) -> None:
    """v0 commits B at height 1; v2 and v3 prepared B but every COMMIT to them is late; all three
    honest replicas time out of view 0, whose successor's primary is the Byzantine v1."""
    ex.deliver({1, 2, 3}, "pre_prepare")
    ex.deliver({0, 1, 2, 3}, "prepare")
    ex.deliver({0}, "commit", {1, 2})
    assert len(ex.world.nodes[0].app.chain) == 1
    ex.timeout(2, 3, 1)


@open_defect("new_view_height")
def test_new_view_height_above_its_view_changes_splits_the_chain() -> None:
    """NEW-VIEW(1, H=2) carries the three VIEW-CHANGEs for height 1, each with B's prepared proof;
    at H=2 no proof counts, so nothing obliges a re-proposal, and PRE-PREPARE(1, 1, X) follows:
    v2 and v3 commit X at height 1, where v0 committed B."""
    ex = controlled({1: frozenset({"inflate_new_view"})})
    new_view_height_prefix(ex)
    ex.deliver({1}, "view_change", {2, 3})
    adversary = ex.world.nodes[1].adversary
    assert any(d[0] == "inflate" for d in adversary.done)  # the attack was made
    for kind in ("new_view", "pre_prepare", "prepare", "commit"):
        ex.deliver({2, 3}, kind, {1, 2, 3}, **({} if kind == "new_view" else {"view": 1}))
    ex.deliver({2, 3}, "prepare", {2, 3}, view=1)
    ex.deliver({2, 3}, "commit", {2, 3}, view=1)


def test_explorer_finds_the_new_view_height_split_from_the_prefix() -> None:
    """From the prefix above, a bounded search over every delivery order finds the split by
    itself (today), or explores the whole continuation without a violation (once fixed)."""
    ex = controlled({1: frozenset({"inflate_new_view"})})
    new_view_height_prefix(ex)
    report = ex.run(max_states=600, max_seconds=20)
    if "new_view_height" in OPEN_DEFECTS:
        assert report.violations, f"not found in {report.states} states"
        assert "two certificates/blocks at height 1" in report.violations[0][0]
    else:
        assert not report.violations, report.violations[0]


@open_defect("status_new_view")
def test_status_relays_a_new_view_forged_in_the_primarys_name() -> None:
    """The Byzantine v3 makes up NEW-VIEW(1) from VIEW-CHANGEs without proofs (its own among them),
    names v1 (the primary of view 1) as its sender, signs it with its own key, and relays it in a
    STATUS: v2 settles view 1 on a NEW-VIEW v1 never sent (oracle S5)."""
    ex = controlled({3: frozenset({"forge_status"})})
    ex.timeout(1, 2)  # the PRE-PREPARE of view 0 never arrives
    ex.deliver({3}, "view_change", {1, 2})
    assert any(d[0] == "forge" for d in ex.world.nodes[3].adversary.done)
    assert ex.deliver({2}, "status", {3}) == 1


@open_defect("mixed_views")
def test_certificate_from_commits_of_two_views_is_served_by_sync() -> None:
    """B is prepared in view 0 by v1 and v3 only, and committed there by the Byzantine v0 alone;
    view 1 re-proposes B and v1, v2 prepare it (v0, at height 2 already, votes for it anyway). v3 signed B's commit in view 0 only, v2 in view 1
    only. One commit signature covers no view, so v0 builds a certificate from v3's, v2's and its
    own, announces it in a STATUS and serves it to v3's sync: v3 commits B on a certificate whose
    honest signers never sent COMMITs of one view."""
    ex = controlled({0: frozenset({"mixed_cert", "vote_always"})})
    ex.deliver({1, 3}, "pre_prepare")
    ex.deliver({0, 1, 3}, "prepare", {1, 3})
    ex.deliver({0}, "commit", {1, 3})  # v0 (Byzantine) commits B in view 0, nobody else does
    ex.timeout(1, 2, 3)
    ex.deliver({1}, "view_change", {2, 3})
    ex.deliver({0, 2}, "new_view", {1})
    ex.deliver({1, 2}, "prepare", {0, 2}, view=1)
    ex.deliver({0}, "commit", {2}, view=1)
    sigs = ex.world.nodes[0].adversary.sigs  # the ingredients: B's commit signatures from views 0 and 1
    assert any(h == 1 and len({view for view, _ in votes.values()}) >= 2 for (h, _), votes in sigs.items())
    ex.deliver({3}, "status", {0})
    for event in [e for e in ex.world.pending if e[0] == "sync" and e[1] == 3]:
        ex.fire(event)


@open_defect("guessed_next_set")
def test_votes_of_a_removed_validator_count_at_the_next_height() -> None:
    """Block 1 removes the Byzantine v3 from the set (4 -> 3, quorum 2). v3 votes PREPARE and
    COMMIT for block 2 while v1 is still at height 1: v1 judges them by the set it guesses for
    height 2 (today's, with v3), keeps them, and after committing block 1 counts them toward
    block 2's quorum: its certificate carries the signature of a non-member."""
    ex = controlled({3: frozenset({"vote_always"})}, txs=0)
    w = ex.world
    removal = w.make_txs(1, start=100)[0]
    w.submit(_gov(w, {"remove": w.nodes[3].key.public}))
    w.submit(removal)
    ex.deliver({1, 2, 3}, "pre_prepare", height=1)
    ex.deliver({0, 1, 2, 3}, "prepare", height=1)
    ex.deliver({0, 3}, "commit", height=1)  # v0 and v3 commit block 1; v1 and v2 not yet
    assert w.nodes[0].app.validator_set(2).n == 3
    ex.deliver({3}, "pre_prepare", height=2)  # v0 proposes block 2; v3 votes for it at once
    ex.deliver({1}, "prepare", {3}, height=2)
    ex.deliver({1}, "commit", {3}, height=2)
    ex.deliver({1}, "commit", height=1)  # v1 commits block 1, then takes up height 2
    ex.deliver({1}, "pre_prepare", height=2)
    ex.deliver({1}, "commit", {0}, height=2)
    assert ("vote", 0, 2) in w.nodes[3].adversary.done  # the removed validator did vote at height 2


def _gov(world, args):  # type: ignore[no-untyped-def]
    from factories import seeded_key

    from chain.tx import sign_tx

    return sign_tx(seeded_key("sim-gov"), chain_id=world.chain_id, op=GOV_OP, args=args, expires=10**6, nonce="gov-0")
