"""Random schedules: faults, crashes, partitions and up to f Byzantine nodes; oracles on every step."""

from __future__ import annotations

import pytest
from sim_schedules import run_seed

SEEDS = 150  # per size: 300 schedules in all


@pytest.mark.parametrize("n", [4, 7])
def test_random_schedules(n: int) -> None:
    outcomes = [run_seed(seed, n) for seed in range(SEEDS)]  # a Violation names its seed
    assert sum(o.heights for o in outcomes) > SEEDS  # the schedules did commit blocks
    assert any(o.views > 0 for o in outcomes)  # and exercised view changes
