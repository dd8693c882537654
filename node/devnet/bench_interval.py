"""`titlechain bench --interval N`: the measured phase cut into intervals of N committed txs.

Decay as the chain grows (throughput falling, latency or memory climbing) is invisible in one
whole-run average, so every N committed txs the bench records one row: the interval's committed
tx/s, its p99 latency, the nodes' CPU per tx over it and each node's resident memory at its end.
Rows are printed as they happen and kept in the JSON output (`intervals`).

An interval is the txs the clients REPORTED committed since the previous row (clients report
every PROGRESS_EVERY_S with the latencies of the txs committed since their last report), so its
boundaries lag the commits by at most that; throughput and CPU are over the same wall-clock span
(the parent's CLOCK_MONOTONIC, which the clients read too). CPU is utime + stime of every node
process from /proc/<pid>/stat, and of it what RocksDB's own threads took (`store_cpu_ms_per_tx`:
its flushes and its compactions, which run beside the node's thread and grow with the store, not
with the txs: a row whose CPU per tx rises says whether the store or the node did); memory is
VmRSS from /proc/<pid>/status (the current resident set, not the peak: a bounded node's rows level
off) and its range over the row (`rss_span_mb`: the
lowest and highest of samples every RSS_SAMPLE_S, taken as the clients report, and the row's end):
a reading every row misses the swings between them (RocksDB's memtables fill and flush in
seconds). Beside it is what each node says it holds, by part
(`held_mb`: its caches, its mempool, RocksDB's memtables, block cache and table readers, from its
/metrics), so that a row whose memory swings says where. Disk is each node's data dir at the row's end, in
bytes on disk (bench_proc.dir_bytes), so a store's growth per interval, archive or pruned
(`--state-retention`), shows beside its memory.

The end of a run is not the chain's cost: each client submits its own share of the txs, and one that
finishes first leaves the others alone to load the chain, with fewer txs in flight, so throughput
falls while the nodes idle (docs/performance.md, "The 1,000,000-tx run repeated": a last row at
half the rate of the one before, the machine half idle). So when the first client has committed
its whole share, the current row is closed there, and every row after it is marked as the drain
(`drain`); a comparison of the chain's intervals leaves the drain out.

`decay` reads a run's rows as the issue's long-run figures: the last full-load row's throughput
against the first row's, and each node's resident range after the first row (the warm-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from node.devnet.bench_proc import (
    STORE_THREADS,
    cpu_times,
    dir_bytes,
    held_mb,
    percentile,
    rss_anon_mb,
    rss_mb,
    store_cpu_s,
)

MIB = 1024 * 1024
RSS_SAMPLE_S = 2.0  # a row's resident range is sampled this often (the clients report every 0.25 s)


def disk_mb(data_dirs: Mapping[str, Path]) -> dict[str, float | None]:
    """Each node's data dir on disk, in MiB (None if it is gone)."""
    return {node: (round(b / MIB, 1) if (b := dir_bytes(d)) is not None else None) for node, d in data_dirs.items()}


class Intervals:
    """Rows of the measured phase, one per `every` committed txs (and one for the remainder); a row
    spans more than `every` when one report crosses several boundaries."""

    def __init__(
        self, every: int, pids: Mapping[str, int], on_row: Callable[[dict[str, Any]], None],
        data_dirs: Mapping[str, Path] | None = None, shares: Mapping[int, int] | None = None,
        rpcs: Mapping[str, str] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("the interval must be at least one tx")
        self.every = every
        self.pids = dict(pids)
        self.data_dirs = dict(data_dirs or {})
        self.rpcs = dict(rpcs or {})  # node -> its RPC's base URL, for what it holds (`held_mb`)
        self.on_row = on_row
        self.rows: list[dict[str, Any]] = []
        self._counts: dict[int, int] = {}  # client -> txs it reported committed
        self._latencies: list[float] = []  # of the txs reported since the last row
        # (time, committed, node CPU s, of it RocksDB's threads by pool) at the last row
        self._start: tuple[float, int, float, dict[str, float]] | None = None
        self._next = every  # the committed total that closes the current row
        self.shares = dict(shares or {})  # client -> the txs it submits in the measured phase
        self.drain_from: int | None = None  # the committed total when the first client had committed its share
        self._rss_span: dict[str, tuple[float, float]] = {}  # node -> lowest, highest resident in the row so far
        self._sampled_at = 0.0

    def start(self) -> None:
        """The measured phase begins: the first interval's clock and CPU start here."""
        self._start = (time.monotonic(), 0, self._cpu(), self._store_cpu())
        self._rss_span = {}
        self._sample_rss()

    def progress(self, client: int, committed: int, latencies: Sequence[float]) -> None:
        """A client's report: its committed total and the latencies (s) of its txs since its last one."""
        if self._start is None:
            return
        if time.monotonic() - self._sampled_at >= RSS_SAMPLE_S:
            self._sample_rss()
        self._counts[client] = committed
        self._latencies.extend(latencies)
        first_done = self.drain_from is None and client in self.shares and committed >= self.shares[client]
        if first_done:
            self.drain_from = self.total  # what follows is the drain, not the chain's cost
        crossed = self.total >= self._next
        if crossed:
            # a report may jump past several boundaries (a block holds many txs): one row for all
            self._next = (self.total // self.every + 1) * self.every
        if crossed or (first_done and self.total > self._start[1]):
            self._row(partial=not crossed, client_done=first_done)

    def finish(self) -> None:
        """The phase ended: a last row for txs committed since the last full interval."""
        if self._start is not None and self.total > self._start[1]:
            self._row(partial=True)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def _sample_rss(self) -> dict[str, float | None]:
        """Each node's resident set now (MiB), folded into the row's range."""
        self._sampled_at = time.monotonic()
        now = {node: rss_mb(pid) for node, pid in self.pids.items()}
        for node, v in now.items():
            if v is not None:
                lo, hi = self._rss_span.get(node, (v, v))
                self._rss_span[node] = (min(lo, v), max(hi, v))
        return now

    def _cpu(self) -> float:
        total = 0.0
        for pid in self.pids.values():
            try:
                user, system = cpu_times(pid)
            except OSError:  # a node that died: the run fails on its own; count what is left
                continue
            total += user + system
        return total

    def _store_cpu(self) -> dict[str, float]:
        """CPU seconds of every node's RocksDB threads, by pool (flush, compaction)."""
        total = dict.fromkeys(STORE_THREADS, 0.0)
        for pid in self.pids.values():
            try:
                for part, s in store_cpu_s(pid).items():
                    total[part] += s
            except OSError:  # a node that died, as in _cpu
                continue
        return total

    def _row(self, *, partial: bool, client_done: bool = False) -> None:
        assert self._start is not None
        t0, n0, cpu0, store0 = self._start
        now, n, cpu, store = time.monotonic(), self.total, self._cpu(), self._store_cpu()
        txs, seconds = n - n0, max(now - t0, 1e-9)
        lat = sorted(self._latencies)
        rss = self._sample_rss()
        row = {
            "committed": n,
            "txs": txs,
            "seconds": round(seconds, 3),
            "tps": round(txs / seconds, 1),
            "p99_ms": round(percentile(lat, 99.0) * 1000, 1) if lat else None,
            "cpu_ms_per_tx": round((cpu - cpu0) * 1000 / txs, 3) if txs else None,
            "store_cpu_ms_per_tx": {part: round((store[part] - store0[part]) * 1000 / txs, 3) for part in store} if txs else None,
            "rss_mb": {node: (round(v, 1) if v is not None else None) for node, v in rss.items()},
            "rss_span_mb": {node: [round(lo, 1), round(hi, 1)] for node, (lo, hi) in self._rss_span.items()},
            "rss_anon_mb": {node: (round(v, 1) if (v := rss_anon_mb(pid)) is not None else None) for node, pid in self.pids.items()},
            "held_mb": {node: held_mb(rpc) for node, rpc in self.rpcs.items()},
            "disk_mb": disk_mb(self.data_dirs),
            "partial": partial,
            "drain": self.drain_from is not None and n0 >= self.drain_from,
            "client_done": client_done,  # closed when the first client had committed its share
        }
        self.rows.append(row)
        self._latencies = []
        self._start = (now, n, cpu, store)
        self._rss_span = {}
        self.on_row(row)


def decay(rows: Sequence[Mapping[str, Any]], every: int) -> dict[str, Any] | None:
    """A long run's decay, as the issue measures it: the throughput of the last full-load row (the
    last before the drain that holds at least half an interval: a shorter one is too small a
    sample) against the first row's, and each node's resident range over every row after the first
    (the warm-up; the drain's rows included: the node holds the chain then too), with its spread
    (highest over lowest, less one). None when there is no second row to compare."""
    load = [r for r in rows if not r.get("drain")]
    later = [r for r in load[1:] if 2 * r["txs"] >= every]
    if not later:
        return None
    first, last = load[0], later[-1]
    spans: dict[str, tuple[float, float]] = {}
    for r in rows[1:]:
        for node, (lo, hi) in r.get("rss_span_mb", {}).items():
            old = spans.get(node, (lo, hi))
            spans[node] = (min(old[0], lo), max(old[1], hi))
    return {
        "first_tps": first["tps"],
        "last_committed": last["committed"],
        "last_tps": last["tps"],
        "ratio": round(last["tps"] / first["tps"], 3) if first["tps"] else None,
        "rss_after_warmup_mb": {
            node: {"low": lo, "high": hi, "spread": round(hi / lo - 1, 3)} for node, (lo, hi) in spans.items()
        },
    }


def format_decay(d: Mapping[str, Any]) -> list[str]:
    """Two lines for a run's end: the throughput ratio, and the resident ranges after warm-up."""
    mem = ", ".join(f"{v['low']:.0f}-{v['high']:.0f} (+{v['spread']:.0%})" for v in d["rss_after_warmup_mb"].values())
    return [
        f"last full-load row (to {d['last_committed']:,}) against the first: {d['last_tps']:,.0f} / {d['first_tps']:,.0f} tx/s"
        + (f" = {d['ratio']:.2f}" if d["ratio"] is not None else ""),
        f"resident MiB per node after the first row, lowest-highest (spread): {mem or '-'}",
    ]


HEADER = (f"{'committed':>10} {'tx/s':>8} {'p99 ms':>8} {'CPU ms/tx (store)':>17}  resident MiB per node (of it heap,"
          " lowest-highest in the row) | data dir MiB per node")


def format_row(row: Mapping[str, Any]) -> str:
    p99 = f"{row['p99_ms']:,.0f}" if row["p99_ms"] is not None else "-"
    cpu = f"{row['cpu_ms_per_tx']:.2f}" if row["cpu_ms_per_tx"] is not None else "-"
    if store := row.get("store_cpu_ms_per_tx"):  # of it RocksDB's flushes and compactions
        cpu += f" ({sum(store.values()):.2f})"
    anon = row.get("rss_anon_mb", {})
    span = row.get("rss_span_mb", {})

    def resident(node: str, v: float | None) -> str:
        if v is None:
            return "-"
        inner = [f"{a:.0f}"] if (a := anon.get(node)) is not None else []
        if node in span:
            inner.append(f"{span[node][0]:.0f}-{span[node][1]:.0f}")
        return f"{v:.0f} ({', '.join(inner)})" if inner else f"{v:.0f}"

    rss = ", ".join(resident(node, v) for node, v in row["rss_mb"].items())
    disk = ", ".join(f"{v:,.0f}" if v is not None else "-" for v in row.get("disk_mb", {}).values())
    if row.get("drain"):
        mark = " (drain: a client had committed its share)"
    elif row.get("client_done"):
        mark = " (to where the first client had committed its share)"
    else:
        mark = " (rest)" if row["partial"] else ""
    return f"{row['committed']:>10,} {row['tps']:>8,.0f} {p99:>8} {cpu:>17}  {rss}" + (f" | {disk}" if disk else "") + mark
