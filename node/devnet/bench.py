"""`titlechain bench`: the load benchmark (docs/cli.md; results in docs/performance.md).

Theory of operation
-------------------
The bench starts its own local consortium (`node.devnet.localnet.up`, in a temp dir unless `--dir` is
given) and always stops it at the end, on success, error or Ctrl-C. Load comes from C client
PROCESSES (multiprocessing, spawn), separate from the node processes, so the nodes' CPU figures
hold only node work.

Workload, per client: the seed's issuers register assets to the seed's parties, and owners
transfer them. A transfer needs a committed asset, so each client first registers the assets it
will transfer (setup, not measured), then the measured phase interleaves registrations of new
assets with one transfer of each setup asset: half and half. Every tx is signed in the client
and its JSON pre-encoded before the clock starts, so the measured phase costs the client only
the HTTP requests: what is measured is the consortium, not the load generator. The encoded txs
wait in a file (node/devnet/bench_spool.py), so a client's memory does not grow with `--txs`.

Submission: `POST /v1/txs/batch` in chunks of `--chunk` txs, one submitter task per node, so
every node's RPC takes a share. A client keeps at most its share of `--window` txs in flight
(submitted, not yet seen committed): a closed loop, so the consortium runs at its own pace and
the latency measured is that of a loaded but not overrun consortium. An open loop faster than the
chain would only measure the length of the queue it builds. The setup may have a window of its
own (`--setup-window`; by default `--window`'s): a closed loop of W txs in flight commits about
W/2.5 a block (a tx waits for the block in consensus when it arrives, then its own, then the
event), and a block has a fixed cost whatever its size, so larger blocks cost less node CPU per
tx; but a block that outruns the 1.5 s view timeout changes views, and after a view change the
whole window lands in one block, which outruns it again: at 2,000 a loaded machine's setup went
from view 0 to 14 in 30 blocks and ran a third slower (docs/performance.md, "A 1,000,000-tx run").

Disk: each node's data dir in bytes on disk at the end of the setup, in every `--interval` row and
at the end; `--state-retention N` runs the nodes with that retention (docs/operations.md,
Retention) instead of as archives.

Latency: each client follows one node's `GET /v1/events` from the height before its first
submission (a replay covers anything committed before the stream is up) and takes, for each of
its txs, the time from the POST that carried it to the block event that holds its receipt. Txs
are never polled. All processes read CLOCK_MONOTONIC (system-wide on Linux), so the phase's
duration runs from the first client's first POST to the last client's last commit.

CPU: utime + stime of every node process from /proc/<pid>/stat, before and after the measured
phase. Peak memory: VmHWM from /proc/<pid>/status at the end.

Progress: the UI is told the committed count of the phase every 0.25 s (a bar on a terminal; the
CLI prints a line every 30 s when its output goes to a file, so a 40-minute run logs its pace).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import queue as queue_mod
import secrets
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chain.crypto import load_key_file
from chain.genesis import Genesis
from chain.limits import EXPIRY_WINDOW
from node.devnet.bench_client import PROGRESS_EVERY_S, BenchError, ClientJob, ClientResult, SetupResult, client_main
from node.devnet.bench_interval import Intervals, decay, disk_mb
from node.devnet.bench_proc import cpu_times, peak_rss_mb, percentile, store_cpu_s
from node.devnet.localnet import down, manifest_path, up
from node.devnet.provision import BENCH_BASE_PORT, DEFAULT_SEED, Consortium, consortium_ports, load_seed
from node.sdk.client import Client

# Genesis params for a bench consortium (recorded with every result): the demo seed's values,
# spelled out so that an edit of the demo never silently changes what the bench measures.
# `--param NAME=INT` overrides one (docs/performance.md, consortium benchmark).
BENCH_PARAMS: dict[str, int] = {"view_timeout_ms": 1500, "max_view_timeout_ms": 12000, "batch_delay_ms": 10, "max_block_txs": 4000}
DEFAULT_CHUNK = 250
DEFAULT_WINDOW = 1000  # txs in flight: Little: latency ≈ window / throughput (docs/performance.md)
EXPIRY_MARGIN = 1000  # heights the chain may advance between planning and the last submission
STAGE_DEADLINE_S = 60.0  # for clients to start, sign and report ready
STOP_JOIN_S = 5.0


@dataclass(frozen=True)
class BenchOptions:
    validators: int = 4
    txs: int = 2000
    clients: int = 2
    base_port: int = BENCH_BASE_PORT
    root: Path | None = None  # the consortium dir; a temp dir when None
    keep_dir: bool = False
    chunk: int = DEFAULT_CHUNK
    window: int = DEFAULT_WINDOW
    deadline_s: float | None = None  # per phase; from the tx count when None
    seed: Path = DEFAULT_SEED
    params: dict[str, int] = field(default_factory=lambda: dict(BENCH_PARAMS))
    interval: int | None = None  # a row every this many committed txs (node/devnet/bench_interval.py)
    setup_window: int | None = None  # txs in flight in the setup phase, across all clients; None: `window`
    state_retention: int | None = None  # the nodes' `state_retention`; None: archives (the node's default)
    snapshot_interval: int | None = None  # the nodes' `state_snapshot_interval`; None: the node's default
    settings: dict[str, Any] = field(default_factory=dict)  # any other NodeConfig fields for every node

    @property
    def setup_in_flight(self) -> int:
        return self.setup_window if self.setup_window is not None else self.window

    def phase_deadline(self) -> float:
        # generous: at 100 tx/s something is badly wrong, and the run says so instead of hanging
        return self.deadline_s if self.deadline_s is not None else max(60.0, self.txs / 100)


# ---------------------------------------------------------------------------- the node side


def ports_free(base_port: int, validators: int) -> list[int]:
    """The ports of the consortium that something already listens on."""
    busy = []
    for port in consortium_ports(base_port, validators):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def write_seed(src: Path, params: dict[str, int], dest: Path) -> Path:
    seed = load_seed(src)
    seed["params"] = {**seed.get("params", {}), **params}
    dest.write_text(json.dumps(seed, indent=2) + "\n")
    return dest


# ---------------------------------------------------------------------------- orchestration


@dataclass
class Ui:
    """What the bench tells the user while it runs (the CLI plugs rich in; tests plug nothing)."""

    say: Callable[[str], None] = lambda s: None
    phase: Callable[[str, int], None] = lambda name, total: None  # a new phase with its tx count
    advance: Callable[[int], None] = lambda committed: None  # committed so far in the phase
    row: Callable[[dict[str, Any]], None] = lambda row: None  # an interval's row (--interval)


# (phase, client, committed so far, latencies in s of its txs committed since its last report)
ProgressSink = Callable[[str, int, int, list[float]], None]


def _jobs(opts: BenchOptions, cons: Consortium, genesis: Genesis, height: int, spool: Path) -> list[ClientJob]:
    issuers = []
    for path in cons.key_paths("issuers"):
        grants = genesis.roles.get(load_key_file(path).public, ())
        issuers += [(str(path.resolve()), g["classes"][0]) for g in grants if g["role"] == "issuer"]
    parties = tuple(str(p.resolve()) for p in cons.key_paths("parties"))
    if not issuers or len(parties) < 2:
        raise BenchError("the seed needs at least one issuer and two parties to register and transfer assets")
    rpcs = tuple(n.rpc for n in cons.nodes)
    tag = secrets.token_hex(3)
    jobs = []
    for k in range(opts.clients):
        (spool / f"client-{k}").mkdir()
        share = opts.txs // opts.clients + (1 if k < opts.txs % opts.clients else 0)
        jobs.append(ClientJob(
            index=k, chain_id=cons.chain_id, rpcs=rpcs, events_rpc=rpcs[k % len(rpcs)], issuers=tuple(issuers),
            parties=parties, registers=share - share // 2, transfers=share // 2,
            expires=height + EXPIRY_WINDOW - EXPIRY_MARGIN, tag=tag, chunk=opts.chunk,
            window=max(opts.chunk, opts.window // opts.clients), deadline_s=opts.phase_deadline(),
            setup_window=max(opts.chunk, opts.setup_in_flight // opts.clients), spool_dir=str(spool / f"client-{k}"),
        ))
    return jobs


class _Clients:
    """The client processes and their message queue."""

    def __init__(self, jobs: list[ClientJob]) -> None:
        ctx = mp.get_context("spawn")
        self.go = ctx.Event()
        self.out = ctx.Queue()
        self.procs = [ctx.Process(target=client_main, args=(j, self.go, self.out), name=f"bench-client-{j.index}") for j in jobs]
        for p in self.procs:
            p.start()

    def wait_for(self, kind: str, deadline_s: float, on_progress: ProgressSink) -> dict[int, Any]:
        """Collect one `kind` message from every client; progress meanwhile; raise on error or deadline."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + deadline_s
        while len(got) < len(self.procs):
            try:
                msg = self.out.get(timeout=min(PROGRESS_EVERY_S, max(0.0, deadline - time.monotonic())))
            except queue_mod.Empty:
                self._check_alive(got)
                if time.monotonic() > deadline:
                    raise BenchError(f"clients {sorted(set(range(len(self.procs))) - set(got))} did not report {kind!r} within {deadline_s:.0f} s") from None
                continue
            if msg[0] == "error":
                raise BenchError(msg[2])
            if msg[0] == "progress":
                on_progress(msg[2], msg[1], msg[3], msg[4])
            elif msg[0] == kind:
                got[msg[1]] = msg[2] if len(msg) > 2 else None
        return got

    def _check_alive(self, got: dict[int, Any]) -> None:
        for i, p in enumerate(self.procs):
            if i not in got and p.exitcode is not None:
                raise BenchError(f"client {i} exited with {p.exitcode} before reporting")

    def stop(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(STOP_JOIN_S)
            if p.is_alive():
                p.kill()
                p.join()
        self.out.close()


def _progress_sink(ui: Ui, phase: str, intervals: Intervals | None = None) -> ProgressSink:
    counts: dict[int, int] = {}

    def on_progress(msg_phase: str, client: int, committed: int, latencies: list[float]) -> None:
        if msg_phase == phase:
            counts[client] = committed
            ui.advance(sum(counts.values()))
            if intervals is not None:
                intervals.progress(client, committed, latencies)

    return on_progress


def _node_pids(manifest: dict[str, Any]) -> dict[str, int]:
    return {n["node_id"]: int(n["pid"]) for n in manifest["nodes"]}


def _data_dirs(manifest: dict[str, Any]) -> dict[str, Path]:
    return {n["node_id"]: Path(n["data_dir"]) for n in manifest["nodes"]}


def _cpu_total(pids: dict[str, int]) -> float:
    return sum(u + s for u, s in (cpu_times(p) for p in pids.values()))


def node_settings(opts: BenchOptions) -> dict[str, Any]:
    """What the bench sets in every node's config beyond provisioning's defaults."""
    named = {
        "state_retention": opts.state_retention,
        "state_snapshot_interval": opts.snapshot_interval,
    }
    both = sorted(k for k, v in named.items() if v is not None and k in opts.settings)
    if both:
        raise BenchError(f"{', '.join(both)}: set twice (by its own option and as a node setting)")
    return {**{k: v for k, v in named.items() if v is not None}, **opts.settings}


def setup_summary(
    setups: list[SetupResult], end_height: int, cpu_s: float, disk: dict[str, float | None],
) -> dict[str, Any]:
    """The setup phase's pace (not measured: it decides how long a long run takes), the nodes' CPU
    over it (from the clients' start, so their idle time while the clients sign counts too) and each
    node's data dir when it ended."""
    committed = sum(r.committed for r in setups)
    seconds = max(r.last_commit for r in setups) - min(r.first_submit for r in setups) if committed else 0.0
    blocks = end_height - min(r.start_height for r in setups)
    return {
        "txs": committed,
        "seconds": round(seconds, 3),
        "tps": round(committed / seconds, 1) if seconds > 0 else 0.0,
        "blocks": blocks,
        "cpu_ms_per_tx": round(cpu_s * 1000 / committed, 3) if committed else None,
        "disk_mb": disk,
    }


def _summarise(
    opts: BenchOptions, results: list[ClientResult], cpu: dict[str, tuple[float, float]], rss: dict[str, float | None],
    genesis: Genesis, blocks: int, view: int, store_cpu: dict[str, dict[str, float]],
) -> dict[str, Any]:
    lat = sorted(x for r in results for x in r.latencies)
    committed = sum(r.committed for r in results)
    seconds = max(r.last_commit for r in results) - min(r.first_submit for r in results) if committed else math.nan
    rejected: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for r in results:
        rejected.update(r.rejected)
        refused.update(r.refused)
    cpu_total = sum(u + s for u, s in cpu.values())
    return {
        "tps": round(committed / seconds, 1) if committed else 0.0,
        "latency_ms": {q: round(percentile(lat, float(q[1:])) * 1000, 1) for q in ("p50", "p95", "p99")}
        | {"max": round(lat[-1] * 1000, 1) if lat else math.nan},
        "txs": sum(r.submitted for r in results),
        "committed": committed,
        "rejected": dict(rejected),
        "refused": dict(refused),
        "seconds": round(seconds, 3),
        "validators": opts.validators,
        "clients": opts.clients,
        "chunk": opts.chunk,
        "window": opts.window,
        "setup_window": opts.setup_in_flight,
        "state_retention": opts.state_retention,  # None: archive nodes
        "state_snapshot_interval": opts.snapshot_interval,  # None: the node's default
        "node_settings": node_settings(opts),  # every setting the bench put in the nodes' configs
        "blocks": blocks,
        "view": view,  # the consortium's view at the end: above 0, view changes happened
        "cpu_s_per_tx": round(cpu_total / committed, 6) if committed else None,
        "cpu_s": {k: round(u + s, 2) for k, (u, s) in cpu.items()},
        # of it, RocksDB's own threads (bench_proc.store_cpu_s): flushes and compactions
        "store_cpu_s": {k: {part: round(v, 2) for part, v in parts.items()} for k, parts in store_cpu.items()},
        "client_cpu_s": round(sum(r.cpu_s for r in results), 2),
        "cpu_system_share": round(sum(s for _, s in cpu.values()) / cpu_total, 3) if cpu_total else None,
        "peak_rss_mb": {k: (round(v, 1) if v is not None else None) for k, v in rss.items()},
        "params": {
            "max_block_txs": genesis.params.max_block_txs,
            "batch_delay_ms": genesis.params.batch_delay_ms,
            "view_timeout_ms": genesis.params.view_timeout_ms,
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


@contextmanager
def _consortium_dir(opts: BenchOptions, ui: Ui) -> Iterator[Path]:
    """The consortium dir (a fresh temp dir unless given); removed at the end unless kept or given."""
    if opts.root is not None:
        yield opts.root
        return
    tmp = Path(tempfile.mkdtemp(prefix="titlechain-bench-"))
    try:
        yield tmp / "net"
    finally:
        if opts.keep_dir:
            ui.say(f"kept the consortium dir {tmp / 'net'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_bench(opts: BenchOptions, ui: Ui | None = None) -> dict[str, Any]:
    """Run the benchmark; the summary dict (the JSON). Raises BenchError if the run failed."""
    ui = ui or Ui()
    busy = ports_free(opts.base_port, opts.validators)
    if busy:
        raise BenchError(f"ports {busy} are in use; choose another --base-port")
    # the seed, and the clients' spools of signed txs (~0.6 KB a tx): removed on every way out
    with _consortium_dir(opts, ui) as root, tempfile.TemporaryDirectory(prefix="titlechain-bench-work-") as work:
        seed = write_seed(opts.seed, opts.params, Path(work) / "seed.json")
        try:
            manifest = up(
                root, validators=opts.validators, base_port=opts.base_port, seed=seed, say=ui.say,
                node_settings=node_settings(opts),
            )
            return _run_on(opts, ui, root, manifest, Path(work))
        finally:
            # also when interrupted while `up` was still waiting for the nodes to be ready
            if manifest_path(root).exists():
                ui.say("stopping the consortium")
                down(root, say=ui.say)


def _run_on(opts: BenchOptions, ui: Ui, root: Path, manifest: dict[str, Any], work: Path) -> dict[str, Any]:
    cons = Consortium.load(root)
    genesis = Genesis.load(cons.genesis)
    pids, dirs = _node_pids(manifest), _data_dirs(manifest)
    with Client(cons.nodes[0].rpc) as c:
        height = c.height()
    jobs = _jobs(opts, cons, genesis, height, work)
    ui.say(f"{opts.clients} client processes: signing {opts.txs} txs plus {sum(j.transfers for j in jobs)} setup registrations")
    shares = {j.index: j.registers + j.transfers for j in jobs}
    rpcs = {n.node_id: n.rpc for n in cons.nodes}
    intervals = Intervals(opts.interval, pids, ui.row, dirs, shares, rpcs) if opts.interval else None
    cpu_start = _cpu_total(pids)
    clients = _Clients(jobs)
    try:
        ui.phase("setup", sum(j.transfers for j in jobs))
        ready = clients.wait_for("ready", STAGE_DEADLINE_S + opts.phase_deadline(), _progress_sink(ui, "setup"))
        cpu0 = {n: cpu_times(p) for n, p in pids.items()}
        store0 = {n: store_cpu_s(p) for n, p in pids.items()}
        with Client(cons.nodes[0].rpc) as c:
            st = c.status()
        h0 = int(st["height"])
        setup = setup_summary([ready[k] for k in sorted(ready)], h0, _cpu_total(pids) - cpu_start, disk_mb(dirs))
        setup["view"] = int(st["view"])  # above 0: the setup's blocks outran the view timeout
        ui.say(f"setup: {setup['txs']:,} registrations in {setup['seconds']:.1f} s ({setup['tps']:,.0f} tx/s, "
               f"{setup['blocks']:,} blocks, node CPU {setup['cpu_ms_per_tx']} ms per tx, view {setup['view']})")
        ui.phase("run", opts.txs)
        if intervals is not None:
            intervals.start()
        clients.go.set()
        done = clients.wait_for("done", opts.phase_deadline() + STAGE_DEADLINE_S, _progress_sink(ui, "run", intervals))
        if intervals is not None:
            intervals.finish()
        cpu1 = {n: cpu_times(p) for n, p in pids.items()}
        store1 = {n: store_cpu_s(p) for n, p in pids.items()}
        rss = {n: peak_rss_mb(p) for n, p in pids.items()}
        with Client(cons.nodes[0].rpc) as c:
            status = c.status()
        blocks, view = int(status["height"]) - h0, int(status["view"])
    finally:
        clients.stop()
    results = [done[k] for k in sorted(done)]
    cpu = {n: (cpu1[n][0] - cpu0[n][0], cpu1[n][1] - cpu0[n][1]) for n in pids}
    store_cpu = {n: {part: store1[n][part] - store0[n][part] for part in store1[n]} for n in pids}
    summary = _summarise(opts, results, cpu, rss, genesis, blocks, view, store_cpu)
    summary["setup"], summary["disk_mb"] = setup, disk_mb(dirs)
    if intervals is not None:
        summary["interval"], summary["intervals"] = opts.interval, intervals.rows
        summary["drain_from"] = intervals.drain_from  # committed when the first client had committed its share
        summary["decay"] = decay(intervals.rows, intervals.every)
    missing = summary["txs"] - summary["committed"]
    if missing:
        raise BenchFailed(
            f"{missing} of {summary['txs']} txs not committed within {opts.phase_deadline():.0f} s"
            + (f" ({summary['refused']} refused by the RPC)" if summary["refused"] else ""),
            summary,
        )
    return summary


class BenchFailed(BenchError):
    """The run completed but not every tx committed; carries the partial summary."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary
