"""The full-chain audit in process: wall time of its phases and the CPU time of its own process and
of its workers (the figure a shared machine disturbs least).

    python scripts/bench_audit.py DATA_DIR GENESIS [--workers 2]

On 2 idle cores the audit can take no less than max(its own CPU, all CPU / 2): the line "bound"
says what that allows.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from chain.audit import verify_chain
from chain.genesis import Genesis
from chain.store import Store
from contracts.apply import reexecute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("genesis", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args()
    genesis = Genesis.load(opts.genesis)
    t0 = time.perf_counter()
    store = Store.open_read_only(opts.data_dir, genesis.hash)
    t1 = time.perf_counter()
    loop_end = t1

    def progress(height: int, head: int, txs: int) -> None:
        nonlocal loop_end
        loop_end = time.perf_counter()

    try:
        report = verify_chain(store, genesis, reexecute, progress, workers=opts.workers)
    finally:
        store.close()
    t2 = time.perf_counter()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_own, cpu_kids = own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime
    bound = max(cpu_own, (cpu_own + cpu_kids) / 2)
    print(f"ok={report.ok} {report.reason} blocks={report.blocks} txs={report.txs}; {report.coverage}")
    print(f"wall: copy {t1 - t0:.2f} s, block loop {loop_end - t1:.2f} s, records {t2 - loop_end:.2f} s, "
          f"total {t2 - t0:.2f} s -> {report.txs / (t2 - t0):,.0f} tx/s")
    print(f"CPU: own {cpu_own:.2f} s, workers {cpu_kids:.2f} s; bound on 2 idle cores {bound:.2f} s "
          f"-> {report.txs / bound:,.0f} tx/s")


if __name__ == "__main__":
    main()
