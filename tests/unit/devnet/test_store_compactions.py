"""scripts/store_compactions.py on a real RocksDB's LOG: a store made to flush and compact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from chain.database import DbMemory, open_db

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "store_compactions.py"


def test_the_flushes_and_compactions_of_a_store_are_summed_from_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = open_db(data, create=True, memory=DbMemory(write_buffer_bytes=1 << 20, block_cache_bytes=1 << 20))
    value = os.urandom(1000)
    for round_ in range(12):  # ~12 MB of random keys: flushes of a 1 MiB memtable, and compactions
        with db.write_batch() as batch:
            for i in range(1000):
                batch.put(os.urandom(16) + round_.to_bytes(2, "big") + i.to_bytes(4, "big"), value)
    db.compact_range()  # at least one compaction whatever RocksDB scheduled in the background
    db.close()
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(SCRIPT), str(data), "--minutes", "60", "--json-out", str(out)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())[str(data)]
    flushed = sum(row["flushed"] for row in rows)
    compacted = sum(row["compacted"] for row in rows)
    assert 8 << 20 < flushed < 16 << 20  # the ~12 MB written, less what stayed in the memtable at the close
    # the full compaction at the end rewrote everything flushed into the last level
    assert compacted >= flushed and 0 < sum(row["to_last_level"] for row in rows) <= compacted
    assert sum(row["compactions"] for row in rows) >= 1
    assert "ampl." in r.stdout and str(data) in r.stdout


def test_a_dir_without_a_log_and_a_bad_interval_are_refused(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "no RocksDB LOG here" in r.stderr
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--minutes", "7"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "--minutes must divide an hour" in r.stderr


def _event(micros: int, **fields: object) -> str:
    return "2026/12/01-05:00:00.000000 1 EVENT_LOG_v1 " + json.dumps({"time_micros": micros, **fields}) + "\n"


def test_view_changes_are_set_against_the_compactions_running_then(tmp_path: Path) -> None:
    # a node's dir as `titlechain bench --dir` leaves it: data/LOG beside node.log; times in UTC
    data = tmp_path / "nodes" / "v0" / "data"
    data.mkdir(parents=True)
    t0 = 1_796_101_200  # 2026-12-01 05:00:00 UTC
    (data / "LOG").write_text(
        _event(t0 * 10**6, event="compaction_started", job=1, input_data_size=2 << 30)
        + "a line of RocksDB's own\n"
        + _event((t0 + 40) * 10**6, event="compaction_finished", job=1, total_output_size=2 << 30)
        + _event((t0 + 90) * 10**6, event="compaction_started", job=2, input_data_size=300 << 20)
        + _event((t0 + 100) * 10**6, event="compaction_finished", job=2, total_output_size=300 << 20)
    )
    log_lines = [
        {"ts": "2026-12-01T05:00:20.000Z", "msg": "view 0 -> 1 at height 419 (view timer patience 0: docs/consensus.md, Timers)"},
        {"ts": "2026-12-01T05:00:30.000Z", "msg": "committed block 420 (3 txs, 0 rejected) ab… view 1"},
        {"ts": "2026-12-01T05:01:03.000Z", "msg": "view 1 -> 2 at height 500 (view timer patience 0: docs/consensus.md, Timers)"},
        {"ts": "2026-12-01T05:01:44.000Z", "msg": "view 2 -> 3 at height 600 (view timer patience 1: docs/consensus.md, Timers)"},
    ]
    noise = [{"msg": "view 9 -> 10 without a time"}, {"ts": "yesterday", "msg": "view 9 -> 10"}, ["a list"]]
    (data.parent / "node.log").write_text("\n".join(json.dumps(x) for x in log_lines + noise) + "\nnot json\n")
    out = tmp_path / "vc.json"
    r = subprocess.run([sys.executable, str(SCRIPT), str(data), "--view-changes", "--json-out", str(out)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    found = json.loads(out.read_text())[str(data)]
    # in the first; 23 s after the first ended (past the 5 s margin); 4 s after the second ended
    assert [v["compactions_mib"] for v in found["view_changes"]] == [[2048], [], [300]]
    assert found["view_changes"][0]["view_change"] == "view 0 -> 1 at height 419"
    assert found["compaction_share"] == round((45 + 15) / 105, 3)  # 0-45 and 90-105 of 0-105 s
    assert "2 of 3 view changes met a compaction" in r.stdout


def test_view_changes_need_the_node_log(tmp_path: Path) -> None:
    (tmp_path / "LOG").write_text(_event(10**6, event="flush_started", job=1))
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--view-changes"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "no node.log beside it" in r.stderr
