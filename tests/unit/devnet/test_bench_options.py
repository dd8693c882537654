"""`titlechain bench`'s long-run options, plumbed from the command line to what the clients and nodes
get: the setup's own window (`--setup-window`), the nodes' state retention (`--state-retention`),
the data dirs' size on disk, the setup's summary and the progress lines for a log file. Nothing here
starts a node or times anything (tests/integration/test_bench.py runs the bench end to end)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from chain.genesis import Genesis
from node.cli.bench import PlainProgress
from node.cli.main import main
from node.devnet import bench as b
from node.devnet.bench_client import SetupResult
from node.devnet.bench_proc import dir_bytes
from node.devnet.provision import DEFAULT_SEED, Consortium, ProvisionError, init_consortium
from node.runtime.config import NodeConfig


def _consortium(root: Path, **settings: Any) -> Consortium:
    return init_consortium(root, validators=4, seed_path=DEFAULT_SEED, base_port=46800, node_settings=settings or None)


def test_the_setup_window_is_the_setups_alone_and_split_between_the_clients(tmp_path: Path) -> None:
    cons = _consortium(tmp_path / "net")
    opts = b.BenchOptions(txs=10_000, clients=2, setup_window=6000)
    spool = tmp_path / "spool"
    spool.mkdir()
    jobs = b._jobs(opts, cons, Genesis.load(cons.genesis), 5, spool)
    # the measured phase keeps its defaults (chunk 250, window 1000: 500 a client)
    assert [(j.chunk, j.window, j.setup_window) for j in jobs] == [(250, 500, 3000), (250, 500, 3000)]
    assert [Path(j.spool_dir) for j in jobs] == [spool / "client-0", spool / "client-1"]
    assert all(Path(j.spool_dir).is_dir() for j in jobs)  # the parent's, so the parent removes them
    tiny = b._jobs(b.BenchOptions(txs=100, clients=4, chunk=250, setup_window=100), cons, Genesis.load(cons.genesis), 5, tmp_path)
    assert {j.setup_window for j in tiny} == {250}  # never below one chunk: a chunk must fit the window
    assert (b.DEFAULT_WINDOW, b.DEFAULT_CHUNK) == (1000, 250)
    same = b._jobs(b.BenchOptions(txs=100, clients=2, window=800), cons, Genesis.load(cons.genesis), 5, _dir(tmp_path / "s"))
    assert {(j.window, j.setup_window) for j in same} == {(400, 400)}  # no --setup-window: the measured window's


def test_state_retention_reaches_every_nodes_config_and_archive_is_the_default(tmp_path: Path) -> None:
    assert b.node_settings(b.BenchOptions()) == {}
    assert b.node_settings(b.BenchOptions(state_retention=100)) == {"state_retention": 100}
    assert b.node_settings(b.BenchOptions(state_retention=100, snapshot_interval=50)) == {
        "state_retention": 100, "state_snapshot_interval": 50}
    kept = _consortium(tmp_path / "kept", **b.node_settings(b.BenchOptions(state_retention=100)))
    assert [NodeConfig.load(n.config).state_retention for n in kept.nodes] == [100] * 4
    archive = _consortium(tmp_path / "archive")
    assert [NodeConfig.load(n.config).state_retention for n in archive.nodes] == [None] * 4
    with pytest.raises(ValueError, match="state_retention"):
        _consortium(tmp_path / "bad", state_retention=0)  # checked as any node config is
    files = _consortium(tmp_path / "files", **b.node_settings(b.BenchOptions(settings={"db_max_open_files": 4000})))
    assert [NodeConfig.load(n.config).db_max_open_files for n in files.nodes] == [4000] * 4
    snaps = _consortium(tmp_path / "snaps", **b.node_settings(b.BenchOptions(state_retention=10, snapshot_interval=50)))
    assert [NodeConfig.load(n.config).state_snapshot_interval for n in snaps.nodes] == [50] * 4
    assert [NodeConfig.load(n.config).state_snapshot_interval for n in archive.nodes] == [1000] * 4


def test_dir_bytes_counts_blocks_on_disk_under_every_subdir(tmp_path: Path) -> None:
    assert dir_bytes(tmp_path / "none") is None
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a").write_bytes(b"x" * 10_000)
    (tmp_path / "b").write_bytes(b"y" * 5_000)
    size = dir_bytes(tmp_path)
    assert size is not None and size >= 15_000 and size % 512 == 0  # allocated blocks, not apparent sizes
    (tmp_path / "sparse").open("wb").truncate(100 << 20)  # 100 MiB apparent, nothing allocated
    assert dir_bytes(tmp_path) == size


def test_the_setup_summary_spans_every_client_and_names_its_blocks_cpu_and_disk() -> None:
    setups = [SetupResult(0, first_submit=10.0, last_commit=30.0, committed=600, start_height=4),
              SetupResult(1, first_submit=11.0, last_commit=34.0, committed=400, start_height=5)]
    s = b.setup_summary(setups, end_height=14, cpu_s=2.5, disk={"v0": 12.5})
    assert s == {"txs": 1000, "seconds": 24.0, "tps": 41.7, "blocks": 10, "cpu_ms_per_tx": 2.5, "disk_mb": {"v0": 12.5}}
    assert b.setup_summary([SetupResult(0, 3.0, 3.0, 0, 7)], 7, 0.0, {})["tps"] == 0.0


def test_plain_progress_prints_a_line_per_period_with_the_phases_pace() -> None:
    p = PlainProgress(30.0)
    p.phase("setup", 1000, now=100.0)
    assert p.advance(10, now=110.0) is None  # within the period: nothing
    assert p.advance(600, now=130.0) == "setup: 600 of 1,000 committed after 30 s (20 tx/s)"
    assert p.advance(700, now=140.0) is None
    p.phase("run", 2000, now=200.0)  # a new phase: its own clock
    assert p.advance(1500, now=230.0) == "run: 1,500 of 2,000 committed after 30 s (50 tx/s)"


def test_the_command_passes_the_options_and_prints_setup_and_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[b.BenchOptions] = []

    def fake_run(opts: b.BenchOptions, ui: b.Ui) -> dict[str, Any]:
        seen.append(opts)
        return _summary(opts)

    monkeypatch.setattr(b, "run_bench", fake_run)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", "--txs", "20", "--setup-window", "3000", "--state-retention", "50", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert (seen[0].setup_window, seen[0].state_retention, seen[0].window, seen[0].chunk) == (3000, 50, 1000, 250)
    assert "state retention 50" in r.stdout and "1,234 MiB" in r.stdout and "99 blocks" in r.stdout
    assert "0.5 / 1.5 s" in r.stdout  # RocksDB's flushes / compactions over the nodes
    assert json.loads(out.read_text())["setup"]["disk_mb"] == {"v0": 7.0}
    r = CliRunner().invoke(main, ["bench", "--txs", "20"])
    assert (seen[1].setup_window, seen[1].setup_in_flight, seen[1].state_retention) == (None, 1000, None) and "(archive)" in r.stdout
    r = CliRunner().invoke(main, ["bench", "--state-retention", "0"])
    assert r.exit_code == 2 and len(seen) == 2


def _summary(opts: b.BenchOptions) -> dict[str, Any]:
    return {
        "tps": 1.0, "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0}, "txs": opts.txs, "committed": opts.txs,
        "rejected": {}, "refused": {}, "seconds": 1.0, "validators": 4, "clients": 2, "blocks": 2, "view": 0,
        "cpu_s_per_tx": 0.001, "cpu_s": {"v0": 1.0}, "client_cpu_s": 0.1,
        "store_cpu_s": {"v0": {"flush": 0.25, "compaction": 0.5}, "v1": {"flush": 0.25, "compaction": 1.0}}, "cpu_system_share": 0.1,
        "peak_rss_mb": {"v0": 100.0}, "params": {}, "load_avg_1m": 0.5, "cpus": 2,
        "state_retention": opts.state_retention, "disk_mb": {"v0": 1234.0},
        "setup": {"txs": 10, "seconds": 2.0, "tps": 5.0, "blocks": 99, "cpu_ms_per_tx": 1.5, "disk_mb": {"v0": 7.0}},
    }



def test_a_run_that_fails_after_some_rows_still_writes_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    row = {"committed": 10, "txs": 10, "seconds": 1.0, "tps": 10.0, "p99_ms": 5.0, "cpu_ms_per_tx": 1.0,
           "rss_mb": {"v0": 1.0}, "rss_anon_mb": {"v0": 1.0}, "disk_mb": {"v0": 2.0}, "partial": False}

    def failing_run(opts: b.BenchOptions, ui: b.Ui) -> dict[str, Any]:
        ui.row(row)
        raise b.BenchError("client 1: no start signal")

    monkeypatch.setattr(b, "run_bench", failing_run)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", "--interval", "10", "--json-out", str(out)])
    assert r.exit_code == 1 and "no start signal" in r.stderr
    saved = json.loads(out.read_text())  # one row: no decay to compute (tests/unit/devnet/test_bench_interval.py has one)
    assert saved == {"failed": "client 1: no start signal", "interval": 10, "intervals": [row], "decay": None}
    monkeypatch.setattr(b, "run_bench", lambda opts, ui: (_ for _ in ()).throw(b.BenchError("early")))
    out.unlink()
    assert CliRunner().invoke(main, ["bench", "--json-out", str(out)]).exit_code == 1 and not out.exists()  # no row: no file


def _dir(path: Path) -> Path:
    path.mkdir()
    return path


def test_any_node_setting_reaches_every_nodes_config_checked_as_a_config_is(tmp_path: Path) -> None:
    from node.cli.bench import _parse_node_settings

    settings = _parse_node_settings(("cache_tree_nodes_bytes=268435456", "log_level=debug", "state_retention=null"))
    assert settings == {"cache_tree_nodes_bytes": 268435456, "log_level": "debug", "state_retention": None}
    opts = b.BenchOptions(snapshot_interval=50, settings={"cache_tree_nodes_bytes": 1 << 28})
    assert b.node_settings(opts) == {"state_snapshot_interval": 50, "cache_tree_nodes_bytes": 1 << 28}
    cons = _consortium(tmp_path / "net", **b.node_settings(opts))
    assert [NodeConfig.load(n.config).cache_tree_nodes_bytes for n in cons.nodes] == [1 << 28] * 4
    with pytest.raises(b.BenchError, match="state_retention: set twice"):
        b.node_settings(b.BenchOptions(state_retention=5, settings={"state_retention": 10}))
    with pytest.raises(ValueError, match="cache_tree_nodes_bytes"):
        _consortium(tmp_path / "bad", cache_tree_nodes_bytes=-1)
    with pytest.raises(ProvisionError, match="data_dir: set by provisioning"):
        _consortium(tmp_path / "mine", data_dir="/elsewhere")  # each node's own, never one for all


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("cache_tree_nodes_bytes", "NAME=VALUE"),  # no value
        ("no_such_field=1", "NAME=VALUE with NAME one of"),
        ("data_dir=/elsewhere", "NAME=VALUE with NAME one of"),  # provisioning's, not the bench's
    ],
)
def test_a_bad_node_setting_is_refused_before_anything_starts(arg: str, words: str) -> None:
    result = CliRunner().invoke(main, ["bench", "--node-setting", arg, "--node-setting", "log_level=info"])
    assert result.exit_code == 2 and words in result.output, result.output
    twice = CliRunner().invoke(main, ["bench", "--node-setting", "log_level=info", "--node-setting", "log_level=debug"])
    assert twice.exit_code == 2 and "log_level: given twice" in twice.output
