"""One replica's CPU per tx on the consortium bench's block shape, in one process.

    python scripts/bench_replica.py [--setup 10000] [--txs 20000] [--block 440] [--profile FILE]

Two ledgers on their own stores: the primary P proposes each block; the replica R decodes the
block's canonical bytes (as the block frame arrives), validates it (the signatures trusted as its
mempool had checked them), commits it with a real certificate, and writes a synced record of the
block's size twice (a stand-in for the consensus vote record, which holds the prepared block).
Setup: `--setup` registrations committed in blocks; measured: `--txs` txs in blocks of
`--block`, half new registrations, half one transfer of a setup asset (the bench's mix). Prints
R's process CPU per tx for each phase: the apply path and the store's write, what the
4-validator bench repeats on each node, without its networking, and far steadier than the bench
on a shared machine (docs/performance.md, "Node CPU per tx").
"""

from __future__ import annotations

import argparse
import cProfile
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from chain.block import Block, Certificate, sign_commit
from chain.devnet import Consortium, make_consortium
from chain.encoding import decode
from chain.tx import Tx, parse_tx, sign_tx
from node.runtime.ledger import Ledger
from node.runtime.process import collect_cycles_rarely

PHASES = ("decode", "validate", "commit", "vote_record")


def _register(c: Consortium, i: int, height: int) -> Tx:
    owner = c.users[i % len(c.users)]
    args = {"asset_id": f"A-{i}", "class": "warehouse_receipt", "owner": owner.public, "doc_hash": f"{i:064x}", "meta": {}}
    return sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=height + 100, nonce=f"r{i}")


def _certificate(c: Consortium, ledger: Ledger, block: Block) -> Certificate:
    height, view = block.height, block.header.view
    signers = c.validator_keys[: ledger.validator_set_at(height).quorum]
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, view, block.block_hash) for k in signers}
    return Certificate.build(height, view, block.block_hash, sigs)


class Run:
    def __init__(self, c: Consortium, root: Path, setup: int, block: int) -> None:
        self.c, self.setup, self.block = c, setup, block
        self.primary = Ledger.open(root / "primary", c.genesis)
        self.replica = Ledger.open(root / "replica", c.genesis)
        self.owner: dict[int, int] = {}  # setup asset -> index of the user owning it now

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
        for txs in self.blocks(lambda i, h: _register(self.c, i, h), self.setup):
            block = self.propose(txs)
            cert = _certificate(self.c, self.primary, block)
            self.primary.commit(block, cert)
            self.replica.commit(block, cert, [t.tx_id for t in txs])

    def run_measured(self, total: int, profile: cProfile.Profile | None) -> dict[str, float]:
        spent = dict.fromkeys(PHASES, 0.0)
        for txs in self.blocks(self.measured_tx, total):
            ids = [parse_tx(t.to_plain()).tx_id for t in txs]  # as gossip parsed them (the memo)
            block = self.propose(txs)
            raw, cert = block.encode(), _certificate(self.c, self.primary, block)
            if profile is not None:
                profile.enable()
            t0 = time.process_time()
            got = Block.from_plain(decode(raw))
            t1 = time.process_time()
            self.replica.validate(got, ids)
            t2 = time.process_time()
            self.replica.commit(got, cert, ids)
            t3 = time.process_time()
            self.replica.store.put_meta("bench_votes", raw + bytes(200))
            self.replica.store.put_meta("bench_votes", bytes(300))
            t4 = time.process_time()
            if profile is not None:
                profile.disable()
            self.primary.commit(block, cert)
            for name, spent_s in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[name] += spent_s
        return spent

    def close(self) -> None:
        self.primary.close()
        self.replica.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", type=int, default=10_000)
    ap.add_argument("--txs", type=int, default=20_000)
    ap.add_argument("--block", type=int, default=440)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the replica's measured phases here")
    opts = ap.parse_args()
    collect_cycles_rarely()  # as the node does
    root = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    run = Run(make_consortium(), root, opts.setup, opts.block)
    try:
        run.run_setup()
        profile = cProfile.Profile() if opts.profile else None
        spent = run.run_measured(opts.txs, profile)
        if profile is not None:
            profile.dump_stats(opts.profile)
    finally:
        run.close()
        shutil.rmtree(root, ignore_errors=True)
    per_tx = {name: 1e6 * s / opts.txs for name, s in spent.items()}
    print(" ".join(f"{name} {us:.1f}" for name, us in per_tx.items()), f"total {sum(per_tx.values()):.1f} us/tx (process CPU)")


if __name__ == "__main__":
    main()
