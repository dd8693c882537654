"""What a read of the state tree's lower nodes from RocksDB costs, in a stopped node's store.

    python scripts/store_tree_reads.py DIR/nodes/NAME/data [--paths 6000] [--min-depth 3] [--block-cache-mib 64]

A block's tree update reads every node on its changed paths that the tree-node cache does not
hold, and in a state larger than that cache those are the lower levels (docs/performance.md,
"What a read of a tree node from RocksDB costs"). This walks `--paths` random paths down the newest
tree the store holds, takes each node at depth `--min-depth` or below, and reads them all back in
a random order, `--passes` times, through the store's own options with a block cache of
`--block-cache-mib`: the CPU time (this thread's) per read, and the block cache's fill. Then, for
comparison, a read of one key again and again (a block-cache hit, nothing searched) and reads of
absent keys (what the bloom filters answer). RocksDB takes the store's lock: never point it at a
running node's store. The OS's page cache is not dropped: the first pass may include disk reads.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chain import smt
from chain.database import Database, DbMemory, open_db


@dataclass(frozen=True)
class PassResult:
    us_per_read: float
    block_cache_mib: float


def newest_root(db: Database) -> tuple[int, smt.RootRef]:
    for key, _ in db.iterator(prefix=smt.ROOT_PREFIX, reverse=True):
        height = int(key[len(smt.ROOT_PREFIX):])
        return height, smt.root_at(db.get, height)
    raise SystemExit("the store holds no state-tree root (r/ record)")


def lower_node_keys(db: Database, root: smt.RootRef, paths: int, min_depth: int, rng: random.Random) -> list[bytes]:
    """The n/ keys of the nodes at depth >= min_depth on `paths` random paths from root (repeats kept:
    a node two paths share is read twice, as two blocks' updates would)."""
    keys: list[bytes] = []
    for _ in range(paths):
        path = rng.getrandbits(256).to_bytes(32, "big")
        h, version = root
        depth = 0
        while h != smt.EMPTY:
            raw = smt.load_node(db.get, h, version)
            if depth >= min_depth:
                keys.append(smt.node_key(h, version))
            if raw[:1] == smt.LEAF:
                break
            h, version = smt.child(raw, smt.nibble(path, depth))
            depth += 1
    return keys


def cpu_us_per_call(calls: Sequence[bytes], read: Callable[[bytes], object]) -> float:
    start = time.thread_time()
    for key in calls:
        read(key)
    return (time.thread_time() - start) / max(len(calls), 1) * 1e6


def read_passes(db: Database, keys: list[bytes], passes: int, rng: random.Random) -> list[PassResult]:
    out = []
    for _ in range(passes):
        rng.shuffle(keys)
        us = cpu_us_per_call(keys, db.get)
        out.append(PassResult(us, db.int_property("rocksdb.block-cache-usage") / 2**20))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path, help="a stopped node's data dir (the dir holding RocksDB's CURRENT; a bench run's DIR/nodes/NAME/data)")
    ap.add_argument("--paths", type=int, default=6000, help="random paths walked down the newest tree")
    ap.add_argument("--min-depth", type=int, default=3, help="read back the nodes at this depth and below")
    ap.add_argument("--block-cache-mib", type=int, default=64, help="RocksDB's block cache for this run (the node's default: 64)")
    ap.add_argument("--passes", type=int, default=3, help="times the nodes are read back, each in a new random order")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if not (args.store / "CURRENT").exists():
        ap.error(f"{args.store}: not a node's data dir (no CURRENT file)")
    if args.paths < 1 or args.passes < 1 or args.min_depth < 0 or args.block_cache_mib < 1:
        ap.error("--paths and --passes at least 1, --min-depth at least 0, --block-cache-mib at least 1")
    rng = random.Random(args.seed)
    db = open_db(args.store, create=False, memory=DbMemory(block_cache_bytes=args.block_cache_mib << 20))
    try:
        height, root = newest_root(db)
        keys = lower_node_keys(db, root, args.paths, args.min_depth, rng)
        if not keys:
            ap.error(f"no node at depth {args.min_depth} or below on {args.paths} paths: the tree is shallower")
        print(f"height {height}: {len(keys):,} nodes at depth >= {args.min_depth} on {args.paths:,} random paths "
              f"({len(keys) / args.paths:.2f} a path); block cache {args.block_cache_mib} MiB")
        for i, r in enumerate(read_passes(db, keys, args.passes, rng)):
            print(f"  pass {i}: {r.us_per_read:6.1f} us of CPU a read; block cache holds {r.block_cache_mib:,.0f} MiB")
        same = [keys[0]] * len(keys)
        print(f"  one key again and again (a block-cache hit): {cpu_us_per_call(same, db.get):.2f} us")
        absent = [b"t/" + rng.getrandbits(256).to_bytes(32, "big") for _ in range(len(keys))]
        print(f"  absent keys (t/ ids no tx has): {cpu_us_per_call(absent, db.get):.2f} us")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
