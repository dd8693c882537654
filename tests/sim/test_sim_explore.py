"""The systematic explorer at a CI budget: the brief's scope (n = 4, one Byzantine validator, two
heights, one view change) searched depth-first over delivery orders, with the adversary's
strategies that today's core must withstand; and the search's own machinery."""

from __future__ import annotations

from sim_adversary import ci_strategies
from sim_explore import Explorer, Scope, current_key, describe, replay

EXPLORED = frozenset(s for s in ci_strategies() if s not in ("withhold", "oversized"))  # loss is the search's own
STATES = 2500  # ~5 s on an idle 2-core machine


def test_bounded_exploration_of_the_ci_scope_finds_no_violation() -> None:
    report = Explorer(Scope(byzantine=((1, EXPLORED),), txs=2, max_view=1)).run(STATES, max_seconds=45)
    assert not report.violations, report.violations[0]
    assert report.states >= min(STATES, 500) and report.max_depth_seen >= 20  # it got somewhere


def test_a_schedule_the_explorer_prints_replays_to_the_same_state() -> None:
    """Snapshots and restores are exact: the path to the newest state of a search, replayed by
    name on a fresh world, reaches that state (same replicas, same messages in flight)."""
    scope = Scope(byzantine=((1, EXPLORED),), txs=1, max_view=1)
    ex = Explorer(scope)
    report = ex.run(300, max_seconds=30)
    assert report.states > 100 and not report.violations
    key, events = ex.last
    assert len(events) >= 10
    assert current_key(replay(scope, [describe(e) for e in events])) == key
