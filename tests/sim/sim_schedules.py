"""Random fault schedules: one seed gives one run, exactly reproducible."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sim_byzantine import BEHAVIOURS
from simnet import Faults, World

LIVENESS_BOUND_MS = 40_000  # after the last fault and the last submission, every tx commits by then


@dataclass(frozen=True)
class Outcome:
    seed: int
    n: int
    heights: int
    views: int
    steps: int
    virtual_ms: float


def random_world(seed: int, n: int) -> tuple[World, float]:
    """A world with up to f Byzantine nodes, faults until some time, and txs submitted over time."""
    rng = random.Random(f"titlechain-sim/{n}/{seed}")
    f = (n - 1) // 3
    byz_idx = rng.sample(range(n), rng.randint(0, f))
    byzantine = {i: frozenset(rng.sample(BEHAVIOURS, rng.randint(1, 2))) for i in byz_idx}
    until = rng.randint(300, 4000)
    faults = Faults(
        drop=rng.choice([0.0, 0.02, 0.1, 0.3]),
        duplicate=rng.choice([0.0, 0.05, 0.2]),
        max_delay_ms=rng.choice([5, 30, 150]),
        until_ms=until,
    )
    world = World(seed, n=n, byzantine=byzantine, faults=faults)
    honest = [i for i in range(n) if i not in byz_idx]
    if rng.random() < 0.5:
        victim = rng.choice(honest)
        t = rng.uniform(0, until)
        world.at(t, lambda: world.crash(victim))
        if rng.random() < 0.6:
            world.at(rng.uniform(t, until), lambda: world.restart(victim))
    if rng.random() < 0.4:
        nodes = list(range(n))
        rng.shuffle(nodes)
        cut = rng.randint(1, n - 1)
        groups = [set(nodes[:cut]), set(nodes[cut:])]
        world.at(rng.uniform(0, until), lambda: setattr(world, "partition", groups))
    world.at(until, world.heal)
    txs = world.make_txs(rng.randint(3, 40))
    last = 0.0
    for tx in txs:
        t = rng.uniform(0, until + 500)
        last = max(last, t)
        world.at(t, lambda tx=tx: world.submit(tx))
    return world, max(until, last)


def run_seed(seed: int, n: int) -> Outcome:
    world, quiet_from = random_world(seed, n)
    world.run_until(quiet_from + 1)
    world.check_liveness(quiet_from + LIVENESS_BOUND_MS)
    return Outcome(
        seed,
        n,
        max(len(x.app.chain) for x in world.honest()),
        max(x.replica.view for x in world.honest()),
        world.steps,
        world.now,
    )
