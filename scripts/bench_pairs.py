"""The flat-cost pair protocol: `titlechain bench` at a small and a large size, alternating, back to
back, judged by the medians.

    python scripts/bench_pairs.py [--small 20000] [--large 100000] [--pairs 3] [--base-port 23000]
                                  [--out-dir DIR] [--json-out FILE] [-- MORE BENCH OPTIONS]

Each pair runs `titlechain bench --txs SMALL --clients 2` and then the same with `--txs LARGE`, each on
ports of its own (a finished run's ports may linger), each writing its JSON into --out-dir. The
machine drifts (docs/performance.md: the same command has run at 1,064 and 1,500 tx/s within ten
minutes), so the pairs alternate and the verdict is on medians; and before each run a short CPU probe
(a pure-Python loop, a dict of 200,000 entries, an Ed25519 verify) is printed beside its figures, so
that runs of different sessions can be told apart from the code's changes.

The verdict is the flat-cost target (docs/performance.md, "The pairs on a drifting machine"): the
large median at least --ratio of the small one, and both medians at least --min-tps with a median
p99 of at most --max-p99-ms. Exit 0 when every run completed, whatever the verdict (it is printed and in
--json-out); 1 when a run failed; 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PORTS_PER_RUN = 20  # a run of 4 validators uses 8 ports from its base; the next run starts past them


@dataclass(frozen=True)
class Run:
    txs: int
    tps: float
    p99_ms: float
    cpu_ms_per_tx: float
    peak_mib: float  # the largest node's peak resident memory
    # the kernel's part of the nodes' CPU: a young run's turns on it (the huge-page sweeper's
    # collapses, docs/performance.md "The pairs five ways on one fast hour"); None if not measured
    kernel_share: float | None
    view: int
    probe: dict[str, float]

    @classmethod
    def from_bench(cls, summary: dict[str, Any], probe: dict[str, float]) -> Run:
        peaks = [v for v in summary["peak_rss_mb"].values() if v is not None]
        return cls(
            txs=int(summary["txs"]), tps=float(summary["tps"]), p99_ms=float(summary["latency_ms"]["p99"]),
            cpu_ms_per_tx=round(float(summary["cpu_s_per_tx"]) * 1000, 3), peak_mib=max(peaks, default=float("nan")),
            kernel_share=summary.get("cpu_system_share"), view=int(summary["view"]), probe=probe,
        )


@dataclass(frozen=True)
class Verdict:
    small_tps: float
    large_tps: float
    small_p99_ms: float
    large_p99_ms: float
    ratio: float
    ratio_met: bool
    throughput_met: bool
    latency_met: bool

    @property
    def met(self) -> bool:
        return self.ratio_met and self.throughput_met and self.latency_met


def judge(small: list[Run], large: list[Run], ratio: float, min_tps: float, max_p99_ms: float) -> Verdict:
    """The medians of each size's runs against the target."""
    if not small or not large:
        raise ValueError("a verdict needs at least one run of each size")
    s_tps, l_tps = statistics.median(r.tps for r in small), statistics.median(r.tps for r in large)
    s_p99, l_p99 = statistics.median(r.p99_ms for r in small), statistics.median(r.p99_ms for r in large)
    got = l_tps / s_tps
    return Verdict(
        small_tps=s_tps, large_tps=l_tps, small_p99_ms=s_p99, large_p99_ms=l_p99, ratio=round(got, 3),
        ratio_met=got >= ratio, throughput_met=min(s_tps, l_tps) >= min_tps, latency_met=max(s_p99, l_p99) <= max_p99_ms,
    )


def cpu_probe() -> dict[str, float]:
    """A few fixed pieces of work, timed in CPU seconds: what the machine gives a Python process now.
    Not a benchmark of the code, and not the whole of the machine (memory, disk): a run whose probe
    is twice as slow as another's ran on a slower machine, whatever its code."""
    from chain.crypto import Domain, KeyPair, verify  # the node's own signature check

    t = time.process_time()
    total = 0
    for i in range(2_000_000):
        total += i
    loop_ns = (time.process_time() - t) / 2_000_000 * 1e9
    keys = [i.to_bytes(8, "big") * 5 for i in range(200_000)]
    dropped = keys[::7]
    t = time.process_time()
    table = dict.fromkeys(keys, b"")
    for key in dropped:
        table.pop(key)
    dict_ns = (time.process_time() - t) / (len(keys) + len(dropped)) * 1e9
    signer = KeyPair.from_seed(bytes(32))
    message = b"probe" * 40
    sig = signer.sign(Domain.TX, message)
    if not verify(signer.public, Domain.TX, message, sig):  # time the check that passes, as a node's does
        raise RuntimeError("the probe's own signature does not verify")
    t = time.process_time()
    for _ in range(300):
        verify(signer.public, Domain.TX, message, sig)
    verify_us = (time.process_time() - t) / 300 * 1e6
    return {"loop_ns": round(loop_ns, 1), "dict_ns": round(dict_ns, 1), "verify_us": round(verify_us, 1)}


def run_bench(txs: int, port: int, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "node", "bench", "--txs", str(txs), "--clients", "2", "--base-port", str(port),
           "--json-out", str(out), *extra]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {done.returncode}:\n{tail}")
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary


def _row(label: str, run: Run) -> str:
    p = run.probe
    kernel = "?" if run.kernel_share is None else f"{run.kernel_share:.0%}"
    return (f"{label:>14} {run.tps:>8,.0f} tx/s  p99 {run.p99_ms:>6,.0f} ms  {run.cpu_ms_per_tx:.2f} ms CPU/tx "
            f"(kernel {kernel})  peak {run.peak_mib:,.0f} MiB  view {run.view}  | probe: loop {p['loop_ns']} ns, "
            f"dict {p['dict_ns']} ns, verify {p['verify_us']} us")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Options after -- go to every `titlechain bench`.")
    ap.add_argument("--small", type=int, default=20_000, help="txs of the small run (default 20,000)")
    ap.add_argument("--large", type=int, default=100_000, help="txs of the large run (default 100,000)")
    ap.add_argument("--pairs", type=int, default=3, help="pairs, alternating (default 3)")
    # below Linux's ephemeral range (32768-60999), where an outgoing connection's port can take one
    # of a run's while the set runs, and apart from the bench's own default (26800) and the tests'
    ap.add_argument("--base-port", type=int, default=23000,
                    help="the first run's base port (default 23000); each run takes the next 20")
    ap.add_argument("--out-dir", type=Path, help="keep each run's JSON here (default: a temp dir, removed)")
    ap.add_argument("--json-out", type=Path, help="write the runs and the verdict here")
    ap.add_argument("--ratio", type=float, default=0.9, help="the large median over the small one (default 0.9)")
    ap.add_argument("--min-tps", type=float, default=2000.0, help="each median's committed tx/s (default 2,000)")
    ap.add_argument("--max-p99-ms", type=float, default=1000.0, help="each median p99 latency (default 1,000 ms)")
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    opts = ap.parse_args(argv)
    if opts.small < 2 or opts.large <= opts.small or opts.pairs < 1:
        ap.error("needs 2 <= --small < --large and --pairs >= 1")
    if not 1024 <= opts.base_port <= 65000 - PORTS_PER_RUN * 2 * opts.pairs:
        ap.error("--base-port leaves no room for every run's ports below 65000")

    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as tmp:
        out_dir = opts.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs: dict[int, list[Run]] = {opts.small: [], opts.large: []}
        port = opts.base_port
        try:
            for pair in range(1, opts.pairs + 1):
                for txs in (opts.small, opts.large):
                    probe = cpu_probe()
                    summary = run_bench(txs, port, out_dir / f"pair{pair}-{txs}.json", extra)
                    port += PORTS_PER_RUN
                    run = Run.from_bench(summary, probe)
                    runs[txs].append(run)
                    print(_row(f"{pair}: {txs:,}", run), flush=True)
        except (RuntimeError, KeyError, ValueError) as e:
            print(f"bench_pairs: a run failed: {e}", file=sys.stderr)
            return 1
    verdict = judge(runs[opts.small], runs[opts.large], opts.ratio, opts.min_tps, opts.max_p99_ms)
    print(f"medians: {opts.small:,} txs {verdict.small_tps:,.0f} tx/s (p99 {verdict.small_p99_ms:,.0f} ms), "
          f"{opts.large:,} txs {verdict.large_tps:,.0f} tx/s (p99 {verdict.large_p99_ms:,.0f} ms), ratio {verdict.ratio}")
    print(f"target: ratio >= {opts.ratio} {'met' if verdict.ratio_met else 'NOT met'}; both >= {opts.min_tps:,.0f} tx/s "
          f"{'met' if verdict.throughput_met else 'NOT met'}; p99 <= {opts.max_p99_ms:,.0f} ms "
          f"{'met' if verdict.latency_met else 'NOT met'}")
    if opts.json_out:
        doc = {"runs": {str(k): [asdict(r) for r in v] for k, v in runs.items()}, "verdict": asdict(verdict) | {"met": verdict.met},
               "bench_options": extra}
        opts.json_out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
