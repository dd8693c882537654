"""Random fault schedules: one seed gives one run, exactly reproducible."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sim_app import GOV_OP
from sim_byzantine import BEHAVIOURS
from simnet import Faults, World

from chain.devnet import seeded_key
from chain.tx import Tx, sign_tx

LIVENESS_BOUND_MS = 40_000  # after the last fault and the last submission, every tx commits by then


@dataclass(frozen=True)
class Outcome:
    seed: int
    n: int
    heights: int
    views: int
    steps: int
    virtual_ms: float


def _faults(rng: random.Random, until: int) -> Faults:
    return Faults(
        drop=rng.choice([0.0, 0.02, 0.1, 0.3]),
        duplicate=rng.choice([0.0, 0.05, 0.2]),
        max_delay_ms=rng.choice([5, 30, 150]),
        until_ms=until,
    )


def _crash_and_partition(world: World, rng: random.Random, honest: list[int], until: int) -> None:
    n = len(world.nodes)
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


def _submit_over_time(world: World, rng: random.Random, txs: list[Tx], until: float) -> float:
    last = 0.0
    for tx in txs:
        t = rng.uniform(0, until)
        last = max(last, t)
        world.at(t, lambda tx=tx: world.submit(tx))
    return last


def gov_tx(world: World, args: dict[str, str], nonce: str) -> Tx:
    return sign_tx(seeded_key("sim-gov"), chain_id=world.chain_id, op=GOV_OP, args=args, expires=10**6, nonce=nonce)


def random_world(seed: int, n: int) -> tuple[World, float]:
    """A world with up to f Byzantine nodes, faults until some time, and txs submitted over time."""
    rng = random.Random(f"titlechain-sim/{n}/{seed}")
    f = (n - 1) // 3
    byz_idx = rng.sample(range(n), rng.randint(0, f))
    byzantine = {i: frozenset(rng.sample(BEHAVIOURS, rng.randint(1, 2))) for i in byz_idx}
    until = rng.randint(300, 4000)
    world = World(seed, n=n, byzantine=byzantine, faults=_faults(rng, until))
    _crash_and_partition(world, rng, [i for i in range(n) if i not in byz_idx], until)
    last = _submit_over_time(world, rng, world.make_txs(rng.randint(3, 40)), until + 500)
    return world, max(until, last)


def byzantine_world(seed: int, n: int, strategies: tuple[str, ...]) -> tuple[World, float]:
    """Exactly f Byzantine validators running adversary strategies (and now and then an older
    behaviour), on top of the random faults; in some runs the set changes mid-run: a standby
    validator is added and/or a Byzantine one removed (it goes on voting), and/or a seat is
    rotated to a second standby key (its old key's replica goes on running, out of the set)."""
    rng = random.Random(f"titlechain-sim-byz/{n}/{seed}")
    f = (n - 1) // 3
    byz_idx = rng.sample(range(n), f)
    byzantine = {}
    for i in byz_idx:
        chosen = set(rng.sample(strategies, min(len(strategies), rng.randint(1, 3))))
        if rng.random() < 0.2:
            chosen.add(rng.choice([b for b in BEHAVIOURS if b != "silent"]))
        byzantine[i] = frozenset(chosen)
    until = rng.randint(300, 4000)
    change = rng.random() < 0.4
    # drawn apart from `rng`, so that adding rotations left every other draw of a seed as it was
    rotate = change and random.Random(f"titlechain-sim-rotate/{n}/{seed}").random() < 0.5
    standby = (1 if change else 0) + (1 if rotate else 0)
    world = World(seed, n=n, byzantine=byzantine, faults=_faults(rng, until), standby=standby, idle_probe_ms=3000)
    honest = [i for i in range(n) if i not in byz_idx]
    _crash_and_partition(world, rng, honest, until)
    txs = world.make_txs(rng.randint(3, 16))  # fewer than random_world: view changes make each block dear
    if change:
        if rng.random() < 0.7:
            txs.append(gov_tx(world, {"add": world.nodes[n].key.public}, "add"))
        if rng.random() < 0.7:
            txs.append(gov_tx(world, {"remove": world.nodes[rng.choice(byz_idx)].key.public}, "remove"))
    if rotate:
        seat = random.Random(f"titlechain-sim-rotate-seat/{n}/{seed}").randrange(n)
        to = world.nodes[n + 1].key.public
        txs.append(gov_tx(world, {"rotate": world.nodes[seat].key.public, "to": to}, "rotate"))
    last = _submit_over_time(world, rng, txs, until + 500)
    return world, max(until, last)


def run_seed(seed: int, n: int, strategies: tuple[str, ...] | None = None) -> Outcome:
    """One schedule; with `strategies`, a Byzantine one (byzantine_world) drawing from them."""
    world, quiet_from = random_world(seed, n) if strategies is None else byzantine_world(seed, n, strategies)
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
