"""Memory against the chain's length, for the ledger alone (no consensus, no network).

    python scripts/bench_memory.py [--txs N] [--batch N] [--every N] [--tracemalloc] [--trim]

Commits blocks of txs (half registrations of new assets, half transfers of assets registered
earlier in the run, as `titlechain bench` does) through Ledger.propose/commit with a real
certificate, in a temporary data dir; every `--every` txs prints the process's resident memory
(VmRSS), the ledger's cache sizes, RocksDB's own count of its memory
(memtables and block cache) and, with `--tracemalloc`, the bytes Python holds live
(so live growth shows apart from the allocator keeping freed arenas). With `--tracemalloc` the
run ends with the 15 source lines whose live bytes grew most between the first row and the last.
`--trim` runs gc and glibc's malloc_trim before each row (what the node's `memory_trim_s` does).
Txs are signed a block at a time, so the script's own memory does not grow with `--txs`.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from chain.block import Certificate, sign_commit
from chain.database import DbMemory
from chain.devnet import Consortium, make_consortium
from chain.encoding import H
from chain.tx import Tx, sign_tx
from node.runtime.ledger import Ledger, LedgerMemory
from node.runtime.memory import malloc_trim, rss_bytes, rss_parts

CLASS = "warehouse_receipt"


def block_txs(c: Consortium, start: int, n: int, height: int) -> list[Tx]:
    """Txs start..start+n-1: even ones register asset R-i, odd ones move R-(i-1)'s... predecessor
    registered at least one block earlier (R-j, j = i - n - 1 when there is one) to another user."""
    txs = []
    for i in range(start, start + n):
        j = i - n - 1  # registered a block earlier (j even when i is odd)
        if i % 2 == 0 or j < 0:
            owner = c.users[i % len(c.users)].public
            args = {"asset_id": f"R-{i}", "class": CLASS, "owner": owner, "doc_hash": H(b"%d" % i).hex(), "meta": {}}
            txs.append(sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args,
                               expires=height + 100, nonce=f"r{i}"))
        else:
            held = c.users[j % len(c.users)]
            to = c.users[(j + 1) % len(c.users)].public
            txs.append(sign_tx(held, chain_id=c.genesis.chain_id, op="asset.transfer",
                               args={"asset_id": f"R-{j}", "to": to}, expires=height + 100, nonce=f"t{i}"))
    return txs


def commit_block(c: Consortium, ledger: Ledger, txs: list[Tx]) -> None:
    height = ledger.height + 1
    vset = ledger.validator_set_at(height)
    block = ledger.propose(txs, 0, vset.primary(0).public, height)
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, 0, block.block_hash) for k in c.validator_keys[: vset.quorum]}
    ledger.commit(block, Certificate.build(height, 0, block.block_hash, sigs))


def row(ledger: Ledger, committed: int, seconds: float, traced: bool, trim: bool) -> str:
    if trim:
        gc.collect()
        malloc_trim()
    live = f"{tracemalloc.get_traced_memory()[0] / 2**20:>8.1f}" if traced else f"{'-':>8}"
    db = ledger.store.db_memory() / 2**20
    caches = "  ".join(f"{k} {v.entries:,}/{v.bytes / 2**20:.1f}" for k, v in ledger.cache_stats().items())
    parts = rss_parts()
    anon, mapped = parts["anon"] / 2**20, parts["file"] / 2**20
    return f"{committed:>10,} {seconds:>7.1f} {time.process_time():>7.1f} {rss_bytes() / 2**20:>8.1f} {anon:>8.1f} {mapped:>8.1f} {live} {db:>8.1f}  {caches}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=500, help="txs per block (the bench's blocks hold ~450)")
    ap.add_argument("--every", type=int, default=25_000)
    ap.add_argument("--tracemalloc", action="store_true", help="also trace Python's live bytes (slower)")
    ap.add_argument("--trim", action="store_true", help="gc and malloc_trim before each row")
    ap.add_argument("--tree-node-mib", type=int, default=64, help="the ledger's tree-node cache cap")
    ap.add_argument("--max-open-files", type=int, default=1000, help="RocksDB's max_open_files")
    opts = ap.parse_args()
    c = make_consortium()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        memory = LedgerMemory(tree_node_bytes=opts.tree_node_mib << 20, db=DbMemory(max_open_files=opts.max_open_files))
        ledger = Ledger.open(tmp / "node", c.genesis, memory=memory)
        if opts.tracemalloc:
            tracemalloc.start(1)
        print(f"{'committed':>10} {'s':>7} {'CPU s':>7} {'RSS MiB':>8} {'anon':>8} {'file':>8} {'live MiB':>8} {'LDB MiB':>8}  caches entries/MiB")
        first: tracemalloc.Snapshot | None = None
        start, done = time.perf_counter(), 0
        while done < opts.txs:
            n = min(opts.batch, opts.txs - done)
            commit_block(c, ledger, block_txs(c, done, n, ledger.height + 1))
            done += n
            if done % opts.every == 0 or done == opts.txs:
                print(row(ledger, done, time.perf_counter() - start, opts.tracemalloc, opts.trim), flush=True)
                if opts.tracemalloc:
                    snap = tracemalloc.take_snapshot()
                    first = first or snap
                    last = snap
        if opts.tracemalloc and first is not None:
            print("live growth by source line, first row to last:")
            for stat in last.compare_to(first, "lineno")[:15]:
                print(f"  {stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+9,}  {stat.traceback}")
        ledger.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
