"""Random Byzantine schedules: exactly f validators run the adversary's strategies (those not aimed
at a defect still open, see sim_adversary.OPEN_DEFECTS), over drops, duplicates, delays,
partitions, crashes and mid-run validator-set changes; oracles on every step, liveness after."""

from __future__ import annotations

import pytest
from sim_adversary import ci_strategies
from sim_schedules import run_seed

SEEDS = {4: 200, 7: 100}  # 300 Byzantine schedules in all


@pytest.mark.parametrize("n", [4, 7])
def test_byzantine_schedules(n: int) -> None:
    outcomes = [run_seed(seed, n, ci_strategies()) for seed in range(SEEDS[n])]  # a Violation names its seed
    assert sum(o.heights for o in outcomes) > SEEDS[n]  # the schedules did commit blocks
    assert sum(o.views > 0 for o in outcomes) > SEEDS[n] // 4  # and the adversary forced view changes
