"""The state tree alone: key updates per CPU second and node reads per block, nodes in memory.

    python scripts/bench_smt.py [--keys 200000] [--batch 1000] [--rounds 20]

Builds a tree of `--keys` keys at height 0, then applies `--rounds` batches of `--batch` changes
(half new values for existing keys, half new keys), one height each, reading nodes from a dict
and counting the reads. CPU time (time.process_time), so that other work on a shared machine
disturbs the figure less than it would a wall-clock one.
"""

from __future__ import annotations

import argparse
import random
import time

from chain import smt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=20)
    opts = ap.parse_args()
    nodes: dict[bytes, bytes] = {}
    reads = 0

    def read(key: bytes) -> bytes | None:
        nonlocal reads
        reads += 1
        return nodes.get(key)

    changes = {b"asset/K-%d" % i: b"v0-%d" % i for i in range(opts.keys)}
    _, writes = smt.update(smt.EMPTY_REF_ROOT, changes, read, 0)
    nodes.update(writes)
    rnd = random.Random(1)
    batches = []
    for r in range(opts.rounds):
        old = {b"asset/K-%d" % k: b"v%d" % r for k in rnd.sample(range(opts.keys), opts.batch // 2)}
        new = {b"asset/N-%d-%d" % (r, i): b"x" for i in range(opts.batch - opts.batch // 2)}
        batches.append(old | new)
    reads = 0
    start = time.process_time()
    for r, batch in enumerate(batches):
        root, writes = smt.update(smt.root_at(read, r), batch, read, r + 1)
        nodes.update(writes)
    cpu = time.process_time() - start
    print(f"{opts.rounds * opts.batch / cpu:,.0f} key updates per CPU second, "
          f"{reads / opts.rounds:,.0f} node reads per {opts.batch}-key block (root {root[:16]}…)")


if __name__ == "__main__":
    main()
