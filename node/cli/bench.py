"""`titlechain bench`: the command around node/devnet/bench.py (options, progress, the table, the JSON).

Kept apart from node/cli/main.py so that the CLI's start-up (every `node run` goes through it) imports
neither multiprocessing nor httpx; node/devnet/bench.py is imported only when the command runs.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from node.devnet.provision import BENCH_BASE_PORT, PORT_LAYOUT, PROVISIONED_FIELDS
from node.errors import EXIT_FAILED, LAYER_ERRORS
from node.rpc.models import MAX_BATCH_TXS

# BenchError, LocalnetError, ProvisionError, a StoreError, a busy port…; ValueError from the seed and params
_FAILURES: tuple[type[Exception], ...] = (*LAYER_ERRORS, ValueError)


@click.command("bench")
@click.option("--validators", default=4, show_default=True, type=click.IntRange(1, 100), help="validators of the local consortium")
@click.option("--txs", default=2000, show_default=True, type=click.IntRange(2, 10_000_000), help="measured txs (half registrations, half transfers)")
@click.option("--clients", default=2, show_default=True, type=click.IntRange(1, 64), help="client processes submitting")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), help="also write the result as JSON here")
@click.option("--base-port", default=None, type=click.IntRange(1024, 65000), help=f"{PORT_LAYOUT}  [default: {BENCH_BASE_PORT}]")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), help="the consortium dir (default: a temp dir, removed at the end)")
@click.option("--keep-dir", is_flag=True, help="keep the temp consortium dir (logs, data) for inspection")
@click.option("--chunk", default=None, type=click.IntRange(1, MAX_BATCH_TXS), help="txs per POST /v1/txs/batch  [default: 250]")
@click.option("--window", default=None, type=click.IntRange(1, 1_000_000), help="txs in flight (submitted, not committed) across all clients  [default: 1000]")
@click.option("--deadline", "deadline_s", default=None, type=click.FloatRange(1.0), help="seconds each phase may take before the run fails  [default: max(60, txs/100)]")
@click.option("--setup-window", default=None, type=click.IntRange(1, 1_000_000), help="txs in flight in the setup phase (registering the assets to transfer; not measured): larger blocks, but past ~1000 they may outrun the view timeout  [default: --window's]")
@click.option("--state-retention", default=None, type=click.IntRange(1), metavar="N", help="run the nodes keeping the state trees of the last N heights (docs/operations.md, Retention)  [default: archive nodes, every version kept]")
@click.option("--snapshot-interval", default=None, type=click.IntRange(1), metavar="N", help="with --state-retention: the nodes' `state_snapshot_interval`; the two latest multiples of N below the head are kept whatever --state-retention says, so a retention prunes nothing before height 2N  [default: the node's, 1000]")
@click.option("--node-setting", "node_settings", multiple=True, metavar="NAME=VALUE", help="a node config field for every node, VALUE as JSON (a bare word is a string), e.g. db_write_buffer_bytes=134217728 (repeatable; docs/operations.md lists the fields)")
@click.option("--interval", default=None, type=click.IntRange(1, 10_000_000), help="also report every N committed txs: tx/s, p99 latency, node CPU per tx, resident memory per node (at the row's end, of it heap, lowest-highest in the row), data dir on disk per node; rows after the first client finished are marked as the drain; at the end, the last full-load row's tx/s against the first's and each node's resident range after the first row")
@click.option("--param", "params", multiple=True, metavar="NAME=INT", help="a genesis param for the bench consortium, e.g. max_block_txs=4000 (repeatable)")
def bench(
    validators: int, txs: int, clients: int, json_out: Path | None, base_port: int | None, root: Path | None,
    keep_dir: bool, chunk: int | None, window: int | None, deadline_s: float | None, setup_window: int | None,
    state_retention: int | None, snapshot_interval: int | None, node_settings: tuple[str, ...], interval: int | None,
    params: tuple[str, ...],
) -> None:
    """The load benchmark: a local consortium driven by concurrent signed transactions.

    Starts its own consortium (stopped at the end, also on Ctrl-C or error), registers the assets
    to be transferred (setup, not measured), then measures TXS txs, half registrations and half
    transfers, submitted in batches to every node from CLIENTS separate processes. Reports
    committed TPS, submit-to-commit latency percentiles, CPU seconds per tx and peak memory per
    node. With --interval N, also a row every N committed txs as the run goes (tx/s, p99
    latency, node CPU per tx, resident memory per node, data dir on disk per node), kept in the
    JSON as `intervals`, so that decay as the chain grows shows in one run. When the first client
    has committed its share, the row closes there and the rows after it are marked as the drain
    (fewer clients load the chain: not its cost); the run ends with the last full-load row's tx/s
    against the first's and each node's resident range after the first row. Exit 0 when every tx
    committed, 1 when the run failed.
    """
    from node.devnet import bench as b

    opts = b.BenchOptions(
        validators=validators,
        txs=txs,
        clients=clients,
        base_port=base_port if base_port is not None else BENCH_BASE_PORT,
        root=root,
        keep_dir=keep_dir,
        chunk=chunk or b.DEFAULT_CHUNK,
        window=window or b.DEFAULT_WINDOW,
        deadline_s=deadline_s,
        params={**b.BENCH_PARAMS, **_parse_params(params)},
        interval=interval,
        setup_window=setup_window,
        state_retention=state_retention,
        snapshot_interval=snapshot_interval,
        settings=_parse_node_settings(node_settings),
    )
    sys.exit(_run(b, opts, json_out))


def _parse_params(items: tuple[str, ...]) -> dict[str, int]:
    from chain.genesis import Params

    known = set(Params.__dataclass_fields__)
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in known or not value.isdigit():
            raise click.BadParameter(f"{item!r}: NAME=INT with NAME one of {', '.join(sorted(known))}", param_hint="--param")
        out[name] = int(value)
    return out


def _parse_node_settings(items: tuple[str, ...]) -> dict[str, Any]:
    """NAME=VALUE pairs as NodeConfig fields; each value is checked when the configs are written."""
    from node.runtime.config import NodeConfig

    known = set(NodeConfig.model_fields) - PROVISIONED_FIELDS
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in known:
            raise click.BadParameter(f"{item!r}: NAME=VALUE with NAME one of {', '.join(sorted(known))}", param_hint="--node-setting")
        if name in out:
            raise click.BadParameter(f"{name}: given twice", param_hint="--node-setting")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text  # a bare word: a string (a path, a level); NodeConfig says if it fits
    return out


def _run(b: Any, opts: Any, json_out: Path | None) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    progress = Progress(TextColumn("{task.description:<6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=False)
    current: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []  # the interval rows so far: a run that fails late keeps them

    plain = PlainProgress(PLAIN_PROGRESS_EVERY_S)

    def phase(name: str, total: int) -> None:
        plain.phase(name, total, time.monotonic())
        if "task" in current:
            progress.update(current["task"], completed=progress.tasks[-1].total)
        current["task"] = progress.add_task(name, total=total)

    def advance(committed: int) -> None:
        progress.update(current["task"], completed=committed)
        if not err.is_terminal:  # no live bar in a log file: a line now and then instead
            line = plain.advance(committed, time.monotonic())
            if line:
                progress.console.print(line, soft_wrap=True)

    def row(r: dict[str, Any]) -> None:
        from node.devnet.bench_interval import HEADER, format_row

        if not current.get("header_shown"):  # soft_wrap: a row stays one line in a log file of any width
            progress.console.print(HEADER, soft_wrap=True)
            current["header_shown"] = True
        progress.console.print(format_row(r), soft_wrap=True)
        rows.append(r)

    ui = b.Ui(say=lambda s: progress.console.print(f"[dim]{s}[/dim]", soft_wrap=True), phase=phase, advance=advance, row=row)
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops the consortium and clients like Ctrl-C
    summary: dict[str, Any] | None = None
    code = 0
    with progress:
        try:
            summary = b.run_bench(opts, ui)
        except b.BenchFailed as e:
            summary, code = e.summary, EXIT_FAILED
            err.print(f"[red]bench failed:[/red] {e}")
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]: the consortium and the clients were stopped")
            _write_partial(json_out, "interrupted", opts.interval, rows)
            return EXIT_FAILED  # the CLI's exit codes are 0, 1 and 2 only (docs/cli.md)
        except _FAILURES as e:
            err.print(f"[red]bench failed:[/red] {e}")
            _write_partial(json_out, str(e), opts.interval, rows)
            return EXIT_FAILED
    if summary is not None:
        Console().print(table(summary))
        if summary.get("decay"):
            from node.devnet.bench_interval import format_decay

            for line in format_decay(summary["decay"]):
                Console().print(line, soft_wrap=True)
        if json_out is not None:
            json_out.write_text(json.dumps(summary, indent=2) + "\n")
    return code


def _write_partial(json_out: Path | None, failed: str, interval: int | None, rows: list[dict[str, Any]]) -> None:
    """A run stopped without a summary: the interval rows it reached and their `decay` (so that 30
    minutes of a long run are not lost with it), nothing when there is no row."""
    if json_out is not None and rows and interval is not None:
        from node.devnet.bench_interval import decay

        out = {"failed": failed, "interval": interval, "intervals": rows, "decay": decay(rows, interval)}
        json_out.write_text(json.dumps(out, indent=2) + "\n")


PLAIN_PROGRESS_EVERY_S = 30.0


class PlainProgress:
    """Progress lines for a log file: the phase's committed count and pace, at most one line every
    `every` seconds (a long run's setup and measured phase each take many minutes)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.name, self.total, self.t0, self.last = "", 0, 0.0, 0.0

    def phase(self, name: str, total: int, now: float) -> None:
        self.name, self.total, self.t0, self.last = name, total, now, now

    def advance(self, committed: int, now: float) -> str | None:
        if now - self.last < self.every:
            return None
        self.last = now
        elapsed = now - self.t0
        return f"{self.name}: {committed:,} of {self.total:,} committed after {elapsed:,.0f} s ({committed / elapsed:,.0f} tx/s)"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def table(s: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"titlechain bench: {s['validators']} validators, {s['clients']} clients", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    lat = s["latency_ms"]
    rows = [
        ("committed TPS", f"{s['tps']:,.0f}"),
        ("latency p50 / p95 / p99 (max)", f"{lat['p50']:,.0f} / {lat['p95']:,.0f} / {lat['p99']:,.0f} ms ({lat['max']:,.0f})"),
        ("txs committed / submitted", f"{s['committed']:,} / {s['txs']:,}"),
        ("rejected by the contracts", ", ".join(f"{k} {v}" for k, v in s["rejected"].items()) or "0"),
        ("seconds", f"{s['seconds']:.2f}"),
        ("blocks (mean txs per block)", f"{s['blocks']} ({s['committed'] / max(1, s['blocks']):,.0f})"),
        ("node CPU seconds per tx", f"{s['cpu_s_per_tx'] * 1000:.2f} ms" if s["cpu_s_per_tx"] else "-"),
        ("node CPU seconds (system share)", ", ".join(f"{v:.1f}" for v in s["cpu_s"].values()) + f" ({s['cpu_system_share']:.0%})"),
        ("of it RocksDB's flushes / compactions", _store_cpu(s.get("store_cpu_s"))),
        ("view at the end (0: no view change)", str(s["view"])),
        ("client CPU seconds (all clients)", f"{s['client_cpu_s']:.1f}"),
        ("peak memory per node (VmHWM)", ", ".join(f"{v:.0f} MiB" if v else "-" for v in s["peak_rss_mb"].values())),
        ("data dir per node at the end", _disk(s.get("disk_mb", {})) + _retention(s)),
        ("setup: registrations, seconds (tx/s)", _setup(s.get("setup"))),
        ("genesis params", ", ".join(f"{k}={v}" for k, v in s["params"].items())),
        ("load average (1 min) / CPUs", f"{s['load_avg_1m']} / {s['cpus']}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


def _store_cpu(parts: dict[str, dict[str, float]] | None) -> str:
    """The seconds every node's RocksDB threads took, flushes then compactions, summed over the nodes."""
    if not parts:
        return "-"
    return f"{sum(p['flush'] for p in parts.values()):.1f} / {sum(p['compaction'] for p in parts.values()):.1f} s"


def _disk(mb: dict[str, float | None]) -> str:
    return ", ".join(f"{v:,.0f} MiB" if v is not None else "-" for v in mb.values()) or "-"


def _retention(s: dict[str, Any]) -> str:
    n = s.get("state_retention")
    return " (archive)" if n is None else f" (state retention {n:,})"


def _setup(setup: dict[str, Any] | None) -> str:
    if not setup:
        return "-"
    cpu = f", {setup['cpu_ms_per_tx']:.2f} ms node CPU per tx" if setup.get("cpu_ms_per_tx") else ""
    return (f"{setup['txs']:,} in {setup['seconds']:,.1f} s ({setup['tps']:,.0f}), {setup['blocks']:,} blocks{cpu};"
            f" data dir {_disk(setup['disk_mb'])}")
