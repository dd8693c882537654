"""`titlechain bench` end to end at a tiny size: it runs, every tx commits, the JSON has its keys,
and nothing it started outlives it. Not a timed test: nothing here asserts a speed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import ports
from factories import free_base_port

from node.devnet.bench_interval import decay
from node.devnet.provision import consortium_ports

VALIDATORS = 4
PORTS = len(consortium_ports(0, VALIDATORS))
BENCH_PORTS = ports.BENCH  # apart from the other integration tests' ranges (tests/ports.py)


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", "bench", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def ports_bindable(base: int) -> bool:
    for port in range(base, base + PORTS):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_bench_commits_every_tx_and_writes_the_json(tmp_path: Path) -> None:
    base = free_base_port(PORTS, *BENCH_PORTS)
    out = tmp_path / "bench.json"
    r = bench("--txs", "200", "--clients", "1", "--base-port", str(base), "--json-out", str(out),
              "--interval", "80", "--chunk", "20", "--window", "40")  # small chunks: several blocks, several rows
    assert r.returncode == 0, r.stderr + r.stdout
    s = json.loads(out.read_text())
    assert {"tps", "latency_ms", "txs", "seconds", "validators"} <= s.keys()
    assert {"p50", "p95", "p99"} <= s["latency_ms"].keys()
    assert s["validators"] == VALIDATORS
    assert s["txs"] == s["committed"] == 200
    assert s["rejected"] == {} and s["refused"] == {}
    assert s["tps"] > 0 and s["seconds"] > 0
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]
    assert set(s["cpu_s"]) == set(s["peak_rss_mb"]) and len(s["cpu_s"]) == VALIDATORS
    assert set(s["store_cpu_s"]) == set(s["cpu_s"]) and all(set(p) == {"flush", "compaction"} for p in s["store_cpu_s"].values())
    assert "committed TPS" in r.stdout  # the table
    assert ports_bindable(base), "a node of the bench still listens after it returned"
    # --interval: a row per 80 committed txs and one for the rest, printed as they came
    rows = s["intervals"]
    # one row per poll that crossed a multiple of 80 (on an idle machine 200 txs may all commit
    # between two polls, making a single row), and the last row for the whole 200
    assert s["interval"] == 80 and rows and rows[-1]["committed"] == 200
    assert [r["committed"] for r in rows] == sorted({r["committed"] for r in rows})
    assert sum(row["txs"] for row in rows) == 200
    # one client: it is done when the run is, so nothing is the drain (two clients: test_bench_interval)
    assert s["drain_from"] == 200 and not any(row["drain"] for row in rows) and rows[-1]["client_done"]
    # each row but the last closes on the first report that reaches the next multiple of 80 past
    # the previous row; a report that overshot one boundary makes the next row shorter than 80
    assert not any(row["partial"] for row in rows[:-1])
    assert all(b["committed"] // 80 > a["committed"] // 80 for a, b in zip([{"committed": 0}, *rows], rows[:-1]))
    assert any(row["cpu_ms_per_tx"] > 0 for row in rows)  # /proc counts in 10 ms ticks: a short row may read 0
    for row in rows:
        assert row["tps"] > 0 and row["p99_ms"] > 0 and row["cpu_ms_per_tx"] >= 0
        assert set(row["store_cpu_ms_per_tx"]) == {"flush", "compaction"}
        assert 0 <= sum(row["store_cpu_ms_per_tx"].values()) <= row["cpu_ms_per_tx"]  # a part of the nodes' CPU
        assert set(row["rss_mb"]) == set(s["cpu_s"]) and all(v > 0 for v in row["rss_mb"].values())
        assert set(row["rss_span_mb"]) == set(s["cpu_s"])
        assert all(0 < lo <= row["rss_mb"][n] <= hi for n, (lo, hi) in row["rss_span_mb"].items())
        assert set(row["disk_mb"]) == set(s["cpu_s"]) and all(v > 0 for v in row["disk_mb"].values())
        # what each node says it holds, from its /metrics: RocksDB's parts among its caches
        assert set(row["held_mb"]) == set(s["cpu_s"])
        assert all({"tree_nodes_cache", "rocksdb_memtables", "rocksdb_table_readers"} <= held.keys()
                   for held in row["held_mb"].values()), row["held_mb"]
    assert "resident MiB per node" in r.stderr and f"{rows[0]['committed']:>10,}" in r.stderr
    # the decay read from those rows: None when no row after the first holds half an interval (an
    # idle machine may commit all 200 txs between two polls)
    assert s["decay"] == decay(rows, 80)
    assert ("against the first" in r.stdout) == (s["decay"] is not None)
    # the setup (100 registrations, one per measured transfer) and the data dirs at its end and the run's
    setup = s["setup"]
    assert setup["txs"] == 100 and setup["blocks"] >= 1 and setup["seconds"] > 0 and setup["view"] >= 0
    assert all(0 < setup["disk_mb"][n] <= s["disk_mb"][n] for n in s["cpu_s"])
    assert s["state_retention"] is None and s["setup_window"] == 40  # archives; the setup's window is the measured one's (--window 40)


def test_bench_keeps_the_dir_when_asked_and_two_clients_share_the_work(tmp_path: Path) -> None:
    base = free_base_port(PORTS, *BENCH_PORTS)
    root = tmp_path / "net"
    r = bench("--txs", "41", "--clients", "2", "--base-port", str(base), "--dir", str(root), "--json-out", str(tmp_path / "b.json"),
              "--state-retention", "5", "--setup-window", "300")
    assert r.returncode == 0, r.stderr + r.stdout
    s = json.loads((tmp_path / "b.json").read_text())
    assert s["txs"] == s["committed"] == 41
    assert (s["state_retention"], s["setup_window"]) == (5, 300)
    # the nodes ran with that retention: each node's config says so
    assert all(json.loads(c.read_text())["state_retention"] == 5 for c in root.glob("nodes/*/config.json"))
    assert (root / "localnet.json").exists()  # a given dir is the caller's: left in place, nodes stopped
    assert ports_bindable(base)


def test_bench_fails_with_1_when_its_ports_are_taken() -> None:
    base = free_base_port(PORTS, *BENCH_PORTS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        r = bench("--txs", "10", "--base-port", str(base), timeout=60)
    assert r.returncode == 1
    assert "in use" in r.stderr


def test_bench_usage_errors_exit_2() -> None:
    assert bench("--clients", "0", timeout=60).returncode == 2
    assert bench("--param", "no_such_param=3", timeout=60).returncode == 2
