"""The bench's interval rows (node/devnet/bench_interval.py), fed client reports by hand; the process
read is this test's own, so CPU and memory are real /proc figures."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from node.devnet import bench_interval
from node.devnet.bench_interval import HEADER, Intervals, decay, format_decay, format_row
from node.devnet.bench_proc import STORE_THREADS, store_cpu_s


def test_a_row_every_n_committed_txs_and_one_for_the_rest(tmp_path: Path) -> None:
    printed: list[dict] = []
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "000001.sst").write_bytes(b"t" * (3 << 20))  # a node's data dir: 3 MiB of tables
    iv = Intervals(10, {"v0": os.getpid()}, printed.append, {"v0": tmp_path / "data"})
    iv.progress(0, 5, [0.1] * 5)  # before start(): the setup phase, not measured
    assert iv.rows == []
    iv.start()
    iv.progress(0, 6, [0.2] * 6)
    iv.progress(1, 3, [0.5, 0.3, 0.9])
    assert iv.rows == []
    burn_until = time.process_time() + 0.05  # some CPU for the interval: /proc counts 10 ms ticks
    while time.process_time() < burn_until:
        pass
    iv.progress(1, 5, [0.4, 0.4])  # 6 + 5 = 11 >= 10: a row
    assert len(iv.rows) == 1 and printed == iv.rows
    row = iv.rows[0]
    assert (row["committed"], row["txs"], row["partial"]) == (11, 11, False)
    assert row["p99_ms"] == 900.0 and row["tps"] > 0 and row["cpu_ms_per_tx"] > 0
    assert row["rss_mb"]["v0"] > 0
    assert 0 < row["rss_anon_mb"]["v0"] <= row["rss_mb"]["v0"]  # the heap, apart from mapped tables
    lo, hi = row["rss_span_mb"]["v0"]  # sampled at the start and the row's end at least
    assert 0 < lo <= row["rss_mb"]["v0"] <= hi
    assert f"({row['rss_anon_mb']['v0']:.0f}, {lo:.0f}-{hi:.0f})" in format_row(row)
    assert row["disk_mb"] == {"v0": 3.0} and format_row(row).endswith("| 3")  # bytes on disk, in MiB
    (tmp_path / "data" / "000002.sst").write_bytes(b"t" * (2 << 20))  # the store grows: the next row says so
    iv.progress(0, 9, [0.05] * 3)  # 14: not yet 20
    iv.progress(0, 9, [])  # the same total again: no row
    assert len(iv.rows) == 1
    iv.finish()
    rest = iv.rows[1]
    assert (rest["committed"], rest["txs"], rest["partial"], rest["p99_ms"]) == (14, 3, True, 50.0)
    assert rest["disk_mb"] == {"v0": 5.0}
    assert "(rest)" in format_row(rest) and "14" in format_row(rest) and "resident" in HEADER and "data dir" in HEADER


def test_no_rest_row_when_the_last_interval_was_full_and_a_gone_node_reads_as_none() -> None:
    iv = Intervals(4, {"gone": 2**22 + 12345}, lambda r: None)  # above the default pid_max: no such process
    iv.start()
    iv.progress(0, 13, [0.01] * 13)  # past three boundaries at once: one row
    iv.progress(0, 13, [])
    assert len(iv.rows) == 1 and iv.rows[0]["txs"] == 13
    iv.progress(0, 16, [0.01] * 3)  # the next boundary is 16
    iv.finish()
    assert [r["committed"] for r in iv.rows] == [13, 16] and iv.rows[0]["rss_mb"] == {"gone": None}
    assert iv.rows[0]["disk_mb"] == {} and "|" not in format_row(iv.rows[0])  # no data dirs given: no column
    assert iv.rows[0]["held_mb"] == {}  # no RPC given: nothing asked
    assert "-" in format_row(iv.rows[0])
    with pytest.raises(ValueError):
        Intervals(0, {}, lambda r: None)


def test_the_row_closes_when_the_first_client_is_done_and_the_rest_is_the_drain() -> None:
    iv = Intervals(10, {"v0": os.getpid()}, lambda r: None, shares={0: 12, 1: 12})
    iv.start()
    iv.progress(0, 6, [0.1] * 6)
    iv.progress(1, 5, [0.1] * 5)  # 11: a full row
    iv.progress(0, 12, [0.2] * 6)  # client 0 has committed its share at 17: the row closes there
    assert iv.drain_from == 17
    assert [(r["committed"], r["partial"], r["drain"]) for r in iv.rows] == [(11, False, False), (17, True, False)]
    iv.progress(1, 9, [0.3] * 4)  # 21: past the boundary of 20, in the drain
    iv.progress(1, 12, [0.3] * 3)  # 24, the other client done too
    iv.finish()
    assert [(r["committed"], r["drain"]) for r in iv.rows][2:] == [(21, True), (24, True)]
    assert "drain" in format_row(iv.rows[2]) and "drain" not in format_row(iv.rows[1])
    assert "first client" in format_row(iv.rows[1]) and "(rest)" not in format_row(iv.rows[1])
    assert [r["client_done"] for r in iv.rows] == [False, True, False, False]


def test_a_client_done_on_a_boundary_closes_one_row_only() -> None:
    iv = Intervals(10, {"v0": os.getpid()}, lambda r: None, shares={0: 10, 1: 20})
    iv.start()
    iv.progress(0, 10, [0.1] * 10)  # 10: a boundary and client 0's share at once
    assert [(r["committed"], r["partial"]) for r in iv.rows] == [(10, False)] and iv.drain_from == 10
    iv.progress(1, 20, [0.1] * 20)  # 30
    iv.finish()
    assert [(r["committed"], r["drain"]) for r in iv.rows] == [(10, False), (30, True)]


def test_a_node_that_does_not_answer_its_metrics_reads_as_none() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        iv = Intervals(1, {"v0": os.getpid()}, lambda r: None, rpcs={"v0": url})
        iv.start()
        iv.progress(0, 1, [0.1])
    assert iv.rows[0]["held_mb"] == {"v0": None}


def test_a_row_holds_the_lowest_and_highest_resident_seen_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the resident set read as the clients report: a swing between two rows' ends shows in the row
    readings = iter([500.0, 560.0, 530.0, 520.0, 510.0])
    monkeypatch.setattr(bench_interval, "rss_mb", lambda pid: next(readings))
    monkeypatch.setattr(bench_interval, "RSS_SAMPLE_S", 0.0)  # a sample at every report
    iv = Intervals(10, {"v0": 1}, lambda r: None)
    iv.start()  # 500
    iv.progress(0, 4, [0.1] * 4)  # 560
    iv.progress(0, 8, [0.1] * 4)  # 530
    iv.progress(0, 10, [0.1] * 2)  # 520 at the report, 510 at the row's end
    row = iv.rows[0]
    assert row["rss_mb"] == {"v0": 510.0} and row["rss_span_mb"] == {"v0": [500.0, 560.0]}
    assert "510 (" in format_row(row) and "500-560" in format_row(row)


def test_samples_between_rows_are_taken_no_more_often_than_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(bench_interval, "rss_mb", lambda pid: calls.append(pid) or 100.0)
    iv = Intervals(1000, {"v0": 1}, lambda r: None)
    iv.start()
    for n in range(1, 50):
        iv.progress(0, n, [0.1])  # 49 reports within far less than RSS_SAMPLE_S
    assert len(calls) == 1  # the start's only


def test_a_store_thread_s_cpu_is_read_by_its_pool_s_name() -> None:
    # a thread of this process named as RocksDB names its compaction pool's, burning CPU: /proc
    # counts it for that pool and not for the flush pool. RocksDB's own pools are process-wide and
    # outlive a database, so other tests' threads of those names may be here: differences only
    readings: list[dict[str, float]] = []

    def compaction() -> None:
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(STORE_THREADS["compaction"])
        readings.append(store_cpu_s(os.getpid()))
        start = time.thread_time()
        while time.thread_time() - start < 0.2:
            pass
        readings.append(store_cpu_s(os.getpid()))

    t = threading.Thread(target=compaction)
    t.start()
    t.join()
    before, after = readings
    assert after["compaction"] - before["compaction"] >= 0.15  # /proc counts 10 ms ticks
    assert after["flush"] - before["flush"] < 0.15


def test_a_row_gives_the_store_threads_share_of_its_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([{"flush": 1.0, "compaction": 2.0}, {"flush": 1.5, "compaction": 4.0}])
    monkeypatch.setattr(bench_interval, "store_cpu_s", lambda pid: next(readings))
    iv = Intervals(100, {"v0": 1}, lambda r: None)
    iv.start()
    iv.progress(0, 100, [0.1] * 100)
    row = iv.rows[0]
    assert row["store_cpu_ms_per_tx"] == {"flush": 5.0, "compaction": 20.0}  # 0.5 s and 2 s over 100 txs
    assert " (25.00)" in format_row(row) and "(store)" in HEADER


def _row(committed: int, txs: int, tps: float, span: tuple[float, float], *, drain: bool = False) -> dict:
    return {"committed": committed, "txs": txs, "tps": tps, "drain": drain, "rss_span_mb": {"v0": list(span)}}


def test_decay_compares_the_last_full_load_row_with_the_first_and_reads_memory_after_it() -> None:
    rows = [
        _row(100, 100, 800.0, (300.0, 560.0)),  # the warm-up: its memory is left out
        _row(200, 100, 760.0, (540.0, 570.0)),
        _row(300, 100, 720.0, (545.0, 594.0)),
        _row(340, 40, 900.0, (550.0, 560.0)),  # under half an interval: too small a sample
        _row(400, 60, 300.0, (530.0, 555.0), drain=True),  # the drain: memory counts, throughput not
    ]
    d = decay(rows, 100)
    assert d is not None
    assert (d["first_tps"], d["last_committed"], d["last_tps"], d["ratio"]) == (800.0, 300, 720.0, 0.9)
    assert d["rss_after_warmup_mb"] == {"v0": {"low": 530.0, "high": 594.0, "spread": 0.121}}
    lines = format_decay(d)
    assert "720 / 800 tx/s = 0.90" in lines[0] and "to 300" in lines[0]
    assert "530-594 (+12%)" in lines[1]
    assert decay(rows[:1], 100) is None  # nothing to compare the first row with
    assert decay([rows[0], rows[3]], 100) is None


def test_a_run_that_fails_late_keeps_its_rows_and_their_decay(tmp_path: Path) -> None:
    from node.cli.bench import _write_partial

    rows = [_row(100, 100, 800.0, (500.0, 520.0)), _row(200, 100, 640.0, (510.0, 580.0))]
    out = tmp_path / "bench.json"
    _write_partial(out, "node v2 exited", 100, rows)
    saved = json.loads(out.read_text())
    assert (saved["failed"], saved["interval"], saved["intervals"]) == ("node v2 exited", 100, rows)
    assert saved["decay"]["ratio"] == 0.8 and saved["decay"]["rss_after_warmup_mb"]["v0"]["spread"] == 0.137
    _write_partial(out, "interrupted", 100, [rows[0]])  # one row: nothing to compare it with
    assert json.loads(out.read_text())["decay"] is None
    _write_partial(tmp_path / "none.json", "interrupted", 100, [])  # no row: nothing written
    assert not (tmp_path / "none.json").exists()
