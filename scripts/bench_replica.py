"""One replica's CPU per tx on the consortium bench's block shape, in one process.

    python scripts/bench_replica.py [--setup 10000] [--txs 20000] [--block 440] [--profile FILE]
        [--phases P] [--grow N] [--state-retention K [--snapshot-interval I]] [--tree-cache-mib MIB]
        [--huge-pages]

Two ledgers on their own stores: the primary P proposes each block; the replica R decodes the
block's canonical bytes (as the block frame arrives), validates it (the signatures trusted as its
mempool had checked them), commits it with a real certificate, and writes a synced record of the
block's size twice (a stand-in for the consensus vote record, which holds the prepared block).
Setup: `--setup` registrations committed in blocks; measured: `--txs` txs in blocks of
`--block`, half new registrations, half one transfer of a setup asset (the bench's mix). Prints
the CPU of R's thread per tx for each phase: the apply path and the store's write, what the
4-validator bench repeats on each node, without its networking, and far steadier than the bench
on a shared machine (docs/performance.md, "Node CPU per tx").

With `--state-retention K` both stores prune as a node keeping K heights does (`--snapshot-interval`
as the node's setting): the horizon moves a whole interval at once and the commits after it prune
in bursts, so give each phase whole cycles (`--txs` = interval x `--block`) or the phases differ
by the bursts they caught, not by the state. `--phases` measures that many phases in a row;
`--grow N` then registers N more assets and measures the phases again, so that one run shows what
a larger state costs. Each phase's line also splits the commit: pruning (the deletes it puts in the
batch), the batch's write into RocksDB, and the tree-node cache's upkeep. CPU is the replica's
own thread (`time.thread_time`): RocksDB's flushes and compactions run on threads of their own.
`--tree-cache-mib` sets both ledgers' tree-node cache: a cap below the tree's estimated size
(~350 bytes a state key, two keys an asset) measures a state that has outgrown the cache.
"""

from __future__ import annotations

import argparse
import cProfile
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chain.block import Block, Certificate, sign_commit
from chain.database import WriteBatch
from chain.devnet import Consortium, make_consortium
from chain.encoding import decode
from chain.retention import ARCHIVE, SNAPSHOT_INTERVAL, Retention
from chain.tx import Tx, parse_tx, sign_tx
from node.runtime.hugepages import start_huge_page_sweeper
from node.runtime.ledger import Ledger, LedgerMemory
from node.runtime.process import collect_cycles_rarely

PHASES = ("decode", "validate", "commit", "vote_record")
# parts of the commit, timed inside it
COMMIT_PARTS = ("prune", "batch_write", "cache_upkeep")


def _register(c: Consortium, i: int, height: int) -> Tx:
    owner = c.users[i % len(c.users)]
    args = {"asset_id": f"A-{i}", "class": "warehouse_receipt", "owner": owner.public, "doc_hash": f"{i:064x}", "meta": {}}
    return sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=height + 100, nonce=f"r{i}")


def _certificate(c: Consortium, ledger: Ledger, block: Block) -> Certificate:
    height, view = block.height, block.header.view
    signers = c.validator_keys[: ledger.validator_set_at(height).quorum]
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, view, block.block_hash) for k in signers}
    return Certificate.build(height, view, block.block_hash, sigs)


class CommitParts:
    """The replica's commit timed by part: its store's pruning and batch write, and its tree-node
    cache's upkeep, wrapped on the instances (the product code carries no timers). Counts only
    while `on`, so the primary's and the setup's commits are not counted."""

    def __init__(self, ledger: Ledger) -> None:
        self.on = False
        self.spent = dict.fromkeys(COMMIT_PARTS, 0.0)
        self.pruned_blocks = 0
        store, db, nodes = ledger.store, ledger.store._db, ledger._nodes
        prune, write_batch = store._prune, db.write_batch
        discard_many, add_block = nodes.discard_many, nodes.add_block

        def timed_prune(wb: WriteBatch, state_from: int) -> None:
            t = time.thread_time()
            prune(wb, state_from)
            self._add("prune", time.thread_time() - t)
            self.pruned_blocks += self.on

        @contextmanager
        def timed_write_batch(*, sync: bool = False) -> Iterator[WriteBatch]:
            with write_batch(sync=sync) as batch:
                yield batch
                t = time.thread_time()  # the batch is written as the `with` above ends
            self._add("batch_write", time.thread_time() - t)

        def timed(method: Callable[[Any], None]) -> Callable[[Any], None]:
            def run(arg: Any) -> None:
                t = time.thread_time()
                method(arg)
                self._add("cache_upkeep", time.thread_time() - t)
            return run

        store._prune = timed_prune  # type: ignore[method-assign]
        db.write_batch = timed_write_batch  # type: ignore[method-assign]
        nodes.discard_many, nodes.add_block = timed(discard_many), timed(add_block)  # type: ignore[method-assign,assignment]

    def _add(self, part: str, seconds: float) -> None:
        if self.on:
            self.spent[part] += seconds

    def take(self) -> tuple[dict[str, float], int]:
        """What was counted since the last take, and the commits that pruned; counting starts again."""
        spent, pruned = self.spent, self.pruned_blocks
        self.spent, self.pruned_blocks = dict.fromkeys(COMMIT_PARTS, 0.0), 0
        return spent, pruned


class Run:
    def __init__(
        self, c: Consortium, root: Path, setup: int, block: int, retention: Retention = ARCHIVE,
        memory: LedgerMemory | None = None,
    ) -> None:
        self.c, self.setup, self.block = c, setup, block
        self.primary = Ledger.open(root / "primary", c.genesis, retention=retention, memory=memory)
        self.replica = Ledger.open(root / "replica", c.genesis, retention=retention, memory=memory)
        self.parts = CommitParts(self.replica)
        self.owner: dict[int, int] = {}  # setup asset -> index of the user owning it now
        self.measured = 0  # measured txs so far: a phase goes on from the last one's numbers
        self.grown = 0  # assets registered by `grow`

    def blocks(self, make: Callable[[int, int], Tx], total: int) -> Iterator[list[Tx]]:
        for first in range(0, total, self.block):
            height = self.primary.height + 1
            yield [make(i, height) for i in range(first, min(first + self.block, total))]

    def measured_tx(self, i: int, height: int) -> Tx:
        if i % 2 == 0:
            return _register(self.c, self.setup + i, height)
        j = (i * 7919) % self.setup
        owner = self.owner.get(j, j % len(self.c.users))
        self.owner[j] = (owner + 1) % len(self.c.users)
        to = self.c.users[self.owner[j]].public
        return sign_tx(self.c.users[owner], chain_id=self.c.genesis.chain_id, op="asset.transfer",
                       args={"asset_id": f"A-{j}", "to": to}, expires=height + 100, nonce=f"t{i}")

    def propose(self, txs: list[Tx]) -> Block:
        height = self.primary.height + 1
        return self.primary.propose(txs, 0, self.primary.validator_set_at(height).primary(0).public, height)

    def run_setup(self) -> None:
        self._register_all(lambda i, h: _register(self.c, i, h), self.setup)

    def grow(self, count: int) -> None:
        """Register `count` more assets, not measured, numbered past every measured phase's (ids
        from 2**40 on: a measured phase registers setup + i)."""
        first = (1 << 40) + self.grown
        self._register_all(lambda i, h: _register(self.c, first + i, h), count)
        self.grown += count

    def _register_all(self, make: Callable[[int, int], Tx], count: int) -> None:
        for txs in self.blocks(make, count):
            block = self.propose(txs)
            cert = _certificate(self.c, self.primary, block)
            self.primary.commit(block, cert)
            self.replica.commit(block, cert, [t.tx_id for t in txs])

    def run_measured(self, total: int, profile: cProfile.Profile | None) -> dict[str, float]:
        """CPU seconds of the replica's thread by phase (PHASES) and by part of the commit
        (COMMIT_PARTS), and `pruned_blocks`: the commits that pruned."""
        spent = dict.fromkeys(PHASES, 0.0)
        first = self.measured
        self.measured += total
        self.parts.take()
        for txs in self.blocks(lambda i, h: self.measured_tx(first + i, h), total):
            ids = [parse_tx(t.to_plain()).tx_id for t in txs]  # as gossip parsed them (the memo)
            block = self.propose(txs)
            raw, cert = block.encode(), _certificate(self.c, self.primary, block)
            if profile is not None:
                profile.enable()
            t0 = time.thread_time()
            got = Block.from_plain(decode(raw))
            t1 = time.thread_time()
            self.replica.validate(got, ids)
            t2 = time.thread_time()
            self.parts.on = True
            self.replica.commit(got, cert, ids)
            self.parts.on = False
            t3 = time.thread_time()
            self.replica.store.put_meta("bench_votes", raw + bytes(200))
            self.replica.store.put_meta("bench_votes", bytes(300))
            t4 = time.thread_time()
            if profile is not None:
                profile.disable()
            self.primary.commit(block, cert)
            for name, spent_s in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[name] += spent_s
        parts, pruned = self.parts.take()
        return {**spent, **parts, "pruned_blocks": pruned}

    def close(self) -> None:
        self.primary.close()
        self.replica.close()


def phase_line(label: str, spent: dict[str, float], txs: int, blocks: int) -> str:
    """One measured phase, µs of the replica thread's CPU a tx."""
    us = {name: 1e6 * spent[name] / txs for name in (*PHASES, *COMMIT_PARTS)}
    total = sum(us[name] for name in PHASES)
    return (f"{label}: " + " ".join(f"{name} {us[name]:.1f}" for name in PHASES) + f" total {total:.1f}"
            f" | of the commit: " + " ".join(f"{name} {us[name]:.1f}" for name in COMMIT_PARTS)
            + f" | {int(spent['pruned_blocks'])} of {blocks} commits pruned (us/tx, replica thread CPU)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", type=_positive, default=10_000, help="assets registered before measuring")
    ap.add_argument("--txs", type=_positive, default=20_000, help="measured txs a phase")
    ap.add_argument("--block", type=_positive, default=440, help="txs a block")
    ap.add_argument("--phases", type=_positive, default=1, help="measured phases in a row, at each state size")
    ap.add_argument("--grow", type=int, default=0, metavar="N",
                    help="then register N more assets (not measured) and measure the phases again")
    ap.add_argument("--state-retention", type=_positive, metavar="K",
                    help="both stores keep the state of the last K heights (default: archive)")
    ap.add_argument("--snapshot-interval", type=_positive, default=SNAPSHOT_INTERVAL,
                    help="with --state-retention: the snapshot interval, in heights (the pruning cycle)")
    ap.add_argument("--tree-cache-mib", type=int, metavar="MIB",
                    help="both ledgers' tree-node cache (the node's cache_tree_nodes_bytes; default its 256 MiB): "
                    "a cap below the tree's size measures a state larger than the cache without a long setup")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the replica's measured phases here")
    ap.add_argument("--huge-pages", action="store_true",
                    help="collapse the process's dense heap into huge pages as a node does (its huge_pages setting)")
    opts = ap.parse_args()
    if opts.tree_cache_mib is not None and opts.tree_cache_mib < 0:
        ap.error("--tree-cache-mib: MiB, 0 or more")
    if opts.grow < 0:
        ap.error("--grow: a number of assets, 0 or more")
    retention = ARCHIVE if opts.state_retention is None else Retention(opts.state_retention, opts.snapshot_interval)
    collect_cycles_rarely()  # as the node does
    if opts.huge_pages:
        print(f"huge pages: {start_huge_page_sweeper().how}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    memory = None if opts.tree_cache_mib is None else LedgerMemory(tree_node_bytes=opts.tree_cache_mib << 20)
    run = Run(make_consortium(), root, opts.setup, opts.block, retention, memory)
    blocks = -(-opts.txs // opts.block)
    profile = cProfile.Profile() if opts.profile else None
    try:
        run.run_setup()
        for size in ("", "grown") if opts.grow else ("",):
            if size:
                run.grow(opts.grow)
            for n in range(opts.phases):
                assets = opts.setup + run.measured // 2 + run.grown  # as the phase begins
                spent = run.run_measured(opts.txs, profile)
                print(phase_line(f"~{assets:,} assets, phase {n + 1}", spent, opts.txs, blocks), flush=True)
        if profile is not None:
            profile.dump_stats(opts.profile)
    finally:
        run.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
