"""Run many random PBFT simulation schedules; exit 1 on the first violation, with its repro command.

    python tests/sim/soak.py --seeds 1000 [--start 0] [--validators 4|7] [--keep-going] [--progress 500]
    python tests/sim/soak.py --byzantine [--strategies ci|all|a,b,...] --seeds 1000 ...

--byzantine runs the adversary's schedules (tests/sim/sim_schedules.byzantine_world): exactly f
Byzantine validators with strategies from tests/sim/sim_adversary.STRATEGIES (all of them by
default; `ci` leaves out those aimed at defects still open, as CI does), on top of drops,
delays, partitions, crashes and mid-run validator-set changes.

It drives the simulator of this directory, so it lives beside it (not a test module: pytest does
not collect it); Python puts this directory on the path when it runs the file.
"""

from __future__ import annotations

import argparse
import sys
import time

from sim_adversary import STRATEGIES, ci_strategies, likely_defect
from sim_schedules import run_seed
from simnet import Violation


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--validators", type=int, choices=[4, 7], default=None, help="default: both 4 and 7")
    ap.add_argument("--keep-going", action="store_true", help="report every violating seed, not only the first")
    ap.add_argument("--progress", type=int, default=0, help="print a progress line every this many schedules")
    ap.add_argument("--byzantine", action="store_true", help="the adversary's schedules (exactly f Byzantine)")
    ap.add_argument("--strategies", default="all", help="with --byzantine: all, ci, or a comma-separated list")
    args = ap.parse_args()
    strategies = None
    if args.byzantine:
        strategies = _strategies(args.strategies)
        print(f"byzantine strategies: {', '.join(strategies)}", flush=True)
    sizes = [args.validators] if args.validators else [4, 7]
    began = time.perf_counter()
    runs = heights = views = 0
    failed: list[tuple[int, int]] = []
    for n in sizes:
        for seed in range(args.start, args.start + args.seeds):
            try:
                outcome = run_seed(seed, n, strategies)
            except Exception as e:  # a Violation names its oracle; anything else is a crash of the core or harness
                what = "VIOLATION" if isinstance(e, Violation) else f"CRASH ({type(e).__name__})"
                known = likely_defect(str(e)) if isinstance(e, Violation) else None
                hint = f" [looks like open defect {known!r}]" if known else " [NOT a known defect's symptom]"
                print(f"{what} after {runs} runs: {e}{hint if args.byzantine else ''}", flush=True)
                byz = f" --byzantine --strategies {args.strategies}" if args.byzantine else ""
                print(f"reproduce: python tests/sim/soak.py --seeds 1 --start {seed} --validators {n}{byz}", flush=True)
                if not args.keep_going:
                    return 1
                failed.append((seed, n))
                runs += 1
                continue
            runs += 1
            heights += outcome.heights
            views = max(views, outcome.views)
            if args.progress and runs % args.progress == 0:
                elapsed = time.perf_counter() - began
                print(f"... {runs} schedules (n={n}, seed {seed}), {len(failed)} failed, {elapsed:.0f}s", flush=True)
    elapsed = time.perf_counter() - began
    verdict = "no violation" if not failed else f"{len(failed)} VIOLATIONS (seed, n): {failed}"
    print(
        f"{runs} schedules (n={'/'.join(map(str, sizes))}, seeds {args.start}..{args.start + args.seeds - 1}): "
        f"{verdict}; {heights} heights committed, highest view {views}; {elapsed:.1f}s "
        f"({1000 * elapsed / max(runs, 1):.0f} ms/schedule)"
    )
    return 1 if failed else 0


def _strategies(spec: str) -> tuple[str, ...]:
    if spec == "all":
        return tuple(STRATEGIES)
    if spec == "ci":
        return ci_strategies()
    names = tuple(x for x in spec.split(",") if x)
    unknown = [x for x in names if x not in STRATEGIES]
    if unknown or not names:
        raise SystemExit(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    return names


if __name__ == "__main__":
    sys.exit(main())
