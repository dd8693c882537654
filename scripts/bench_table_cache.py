"""Point reads of state-tree nodes on a large store, with LevelDB's table cache at different sizes.

    python scripts/bench_table_cache.py DATA_DIR [--reads 20000] [--open-files 1000 4000]

For a STOPPED node's store (a node's data dir is its LevelDB: e.g. DIR/nodes/NAME/data after
`titlechain bench --dir DIR`).
Picks --reads random state-tree node keys (a seek to a random point of the `n/` range each), then,
for each --open-files value, opens the store with that `max_open_files` (the node's other LevelDB
options as chain/leveldb.py sets them) and reads every picked key twice: the second pass is the
steady state, with the table cache as warm as its size allows. Prints process CPU µs per read.
When a store holds more tables than the cache (max_open_files less 10), a read of a table not in it
opens that table again (footer, index and bloom filter read and checked): docs/performance.md,
"The 1,000,000-tx run". Opens the store read-only in spirit, but LevelDB takes its lock: never
point it at a running node's store.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from chain import smt
from chain.leveldb import DbMemory, open_db

_NODE_END = smt.NODE_PREFIX[:-1] + bytes([smt.NODE_PREFIX[-1] + 1])  # the first key past the n/ range


def pick_keys(store: Path, n: int, seed: int) -> list[bytes]:
    """n keys of the n/ range, each the first at or after a random point between its first and
    last key (tree nodes are keyed by the height that wrote them: the points spread over heights)."""
    rng = random.Random(seed)
    db = open_db(store, create=False)
    try:
        first = next(db.iterator(start=smt.NODE_PREFIX, stop=_NODE_END, include_value=False), None)
        last = next(db.iterator(start=smt.NODE_PREFIX, stop=_NODE_END, include_value=False, reverse=True), None)
        if first is None or last is None:
            raise SystemExit(f"{store}: no state-tree nodes")
        lo, hi = (int.from_bytes(k[2:10], "big") for k in (first, last))  # smt.node_key: the version first
        keys = []
        for _ in range(n):
            start = smt.NODE_PREFIX + smt.version_bytes(rng.randint(lo, hi))
            key = next(db.iterator(start=start, stop=_NODE_END, include_value=False), None)
            keys.append(key if key is not None else last)
        return keys
    finally:
        db.close()


def reads_us(store: Path, keys: list[bytes], open_files: int) -> tuple[float, float]:
    """CPU µs per read on the first (cold cache) and the second pass."""
    db = open_db(store, create=False, memory=DbMemory(max_open_files=open_files))
    try:
        out = []
        for _ in range(2):
            t0 = time.process_time()
            for key in keys:
                if db.get(key) is None:
                    raise SystemExit(f"key {key.hex()} vanished: is a node running on this store?")
            out.append((time.process_time() - t0) / len(keys) * 1e6)
        return out[0], out[1]
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path, help="a stopped node's data dir (its LevelDB)")
    ap.add_argument("--reads", type=int, default=20_000)
    ap.add_argument("--open-files", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()
    tables = len(list(opts.store.glob("*.ldb")))
    keys = pick_keys(opts.store, opts.reads, opts.seed)
    print(f"{opts.store}: {tables} tables; {len(keys)} state-tree node keys picked")
    for n in opts.open_files:
        cold, warm = reads_us(opts.store, keys, n)
        print(f"max_open_files {n:>6}: {cold:7.1f} µs a read cold, {warm:7.1f} µs warm (process CPU)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
