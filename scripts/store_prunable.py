"""What a node's store holds, by key prefix, and how much of it a state retention would prune.

    python scripts/store_prunable.py DATA_DIR/store [--step 100]

For a STOPPED node's store (e.g. a bench run with --keep-dir): the keys and bytes (key + value)
under each two-byte prefix (docs/performance.md, "Store layout"), the txs held (t/ records), and,
for horizons every --step heights, the bytes a store pruned up to that horizon would have deleted:
the tree nodes and leaf data each z/ record names, the z/ records and the r/ roots below it
(chain/store.py `_prune` deletes exactly those). Logical bytes: on disk, RocksDB frees a deleted
key's space only when a compaction rewrites its table. Opens the store read-only in spirit (no
write is made), but RocksDB takes its lock: never point it at a running node's store.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from chain import smt
from chain.database import Database, open_db


def by_prefix(db: Database) -> tuple[Counter[bytes], Counter[bytes]]:
    keys: Counter[bytes] = Counter()
    size: Counter[bytes] = Counter()
    for key, value in db.iterator():
        keys[key[:2]] += 1
        size[key[:2]] += len(key) + len(value)
    return keys, size


def prunable_by_height(db: Database) -> dict[int, int]:
    """For each height with a z/ record: the bytes pruning that height's retirements frees."""
    out: dict[int, int] = {}
    for key, record in db.iterator(prefix=smt.STALE_PREFIX):
        freed = len(key) + len(record)
        for doomed in smt.retired_keys(record):
            value = db.get(doomed)
            if value is not None:
                freed += len(doomed) + len(value)
        out[smt.stale_height(key)] = freed
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path, help="a stopped node's data dir")
    ap.add_argument("--step", type=int, default=100, help="print the prunable bytes every this many heights")
    args = ap.parse_args()
    if not (args.store / "CURRENT").exists():
        ap.error(f"{args.store}: not a node's data dir (no CURRENT file)")
    db = open_db(args.store, create=False)
    try:
        keys, size = by_prefix(db)
        txs = keys[b"t/"]
        total = sum(size.values())
        print(f"{txs:,} txs, {total / 2**20:,.1f} MiB of keys and values ({total / max(txs, 1):,.0f} B a tx)")
        for prefix, n in size.most_common():
            print(f"  {prefix.decode(errors='replace'):<3} {keys[prefix]:>12,} keys {n / 2**20:>10,.1f} MiB {n / max(txs, 1):>8,.0f} B a tx")
        freed = prunable_by_height(db)
        heights = max(freed, default=0)
        print("horizon  prunable MiB (tree nodes retired below it, their z/ records and roots)")
        running, roots = 0, size[smt.ROOT_PREFIX[:2]] / max(heights, 1)
        for h in range(heights + 1):
            running += freed.get(h, 0)
            if h % args.step == 0 or h == heights:
                print(f"{h:>7,}  {(running + roots * h) / 2**20:>12,.1f}")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
