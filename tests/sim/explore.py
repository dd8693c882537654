"""Explore delivery orders systematically (tests/sim/sim_explore.py) for a small scope.

    python tests/sim/explore.py [--txs 2] [--max-view 1] [--byzantine 1] [--strategies all|ci|a,b]
                                  [--states 200000] [--seconds 3600] [--keep-going] [--out FILE]
    python tests/sim/explore.py --replay FILE

Scope: n = 4 validators, one of them Byzantine (index --byzantine: 1 is the primary of view 1)
with the adversary's strategies, --txs txs of one block each (the heights), timers that may fire
only in views below --max-view (the view changes). Every state the search reaches is checked by
the simulator's oracles; a violation prints the schedule that reaches it (and writes it to
--out as JSON for --replay). Exit 1 on a violation, 0 otherwise; the last line says whether the
scope was explored completely or a budget ran out.

It drives the simulator of this directory, so it lives beside it (not a test module: pytest does
not collect it); Python puts this directory on the path when it runs the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sim_adversary import STRATEGIES, ci_strategies
from sim_explore import Explorer, Report, Scope, replay
from simnet import Violation

EXPLORED_STRATEGIES = tuple(s for s in STRATEGIES if s not in ("withhold", "oversized"))  # loss is the search's


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=2, help="txs, one block each: the heights in scope")
    ap.add_argument("--max-view", type=int, default=1, help="timers fire only in views below this")
    ap.add_argument("--byzantine", type=int, default=1, help="index of the Byzantine validator (of 4)")
    ap.add_argument("--strategies", default="all", help="all, ci, or a comma-separated list")
    ap.add_argument("--states", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--max-depth", type=int, default=80)
    ap.add_argument("--consume", action="store_true", help="a delivered message leaves the network (no duplication)")
    ap.add_argument("--keep-going", action="store_true", help="go on past a violation")
    ap.add_argument("--out", type=Path, help="write the first violation's schedule here (JSON)")
    ap.add_argument("--replay", type=Path, help="run a schedule written by --out and report its violation")
    args = ap.parse_args()
    if args.replay:
        return _replay(args.replay)
    scope = Scope(
        byzantine=((args.byzantine, frozenset(_strategies(args.strategies))),),
        txs=args.txs,
        max_view=args.max_view,
        max_depth=args.max_depth,
        soup=not args.consume,
    )
    print(f"scope: {scope}", flush=True)
    report = Explorer(scope).run(args.states, args.seconds, stop_at_first=not args.keep_going, progress=_progress)
    for i, (violation, schedule) in enumerate(report.violations):
        print(f"VIOLATION: {violation}\nschedule ({len(schedule)} events):")
        print("\n".join(f"  {e}" for e in schedule))
        if args.out and i == 0:
            args.out.write_text(json.dumps({"scope": _scope_plain(scope), "schedule": schedule}, indent=1))
            print(f"schedule written to {args.out}; rerun with --replay {args.out}")
    print(_summary(report), flush=True)
    return 1 if report.violations else 0


def _progress(r: Report) -> None:
    print(f"... {r.states} states, {r.transitions} transitions, depth {r.max_depth_seen}, {r.seconds:.0f}s", flush=True)


def _summary(r: Report) -> str:
    verdict = f"{len(r.violations)} violation(s)" if r.violations else "no violation"
    coverage = "the whole scope explored" if r.complete else "budget ran out before the scope was exhausted"
    return (
        f"{r.states} states, {r.transitions} transitions, {r.pruned_noop} no-op deliveries skipped, "
        f"deepest schedule {r.max_depth_seen} events; {verdict}; {coverage}; {r.seconds:.1f}s"
    )


def _strategies(spec: str) -> tuple[str, ...]:
    if spec == "all":
        return EXPLORED_STRATEGIES
    if spec == "ci":
        return tuple(s for s in ci_strategies() if s in EXPLORED_STRATEGIES)
    names = tuple(x for x in spec.split(",") if x)
    if not names or any(x not in STRATEGIES for x in names):
        raise SystemExit(f"strategies must be all, ci or names from: {', '.join(STRATEGIES)}")
    return names


def _scope_plain(scope: Scope) -> dict:
    return {
        "byzantine": [[i, sorted(s)] for i, s in scope.byzantine],
        "txs": scope.txs,
        "max_view": scope.max_view,
        "max_depth": scope.max_depth,
        "soup": scope.soup,
    }


def _replay(path: Path) -> int:
    doc = json.loads(path.read_text())
    sc = doc["scope"]
    scope = Scope(
        byzantine=tuple((i, frozenset(s)) for i, s in sc["byzantine"]),
        txs=sc["txs"],
        max_view=sc["max_view"],
        max_depth=sc["max_depth"],
        soup=sc["soup"],
    )
    began = time.perf_counter()
    try:
        replay(scope, doc["schedule"])
    except Violation as e:
        print(f"VIOLATION reproduced: {e} ({time.perf_counter() - began:.2f}s)")
        return 1
    print("schedule ran without a violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
