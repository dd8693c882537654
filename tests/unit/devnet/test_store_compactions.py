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
