"""scripts/bench_receipts.py end to end on small blocks: it builds the chain, answers every sampled
tx as the route does, checks each answer, and reports each block's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def _bench(tmp_path: Path, sizes: str, samples: int) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "receipts.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_receipts.py"), "--sizes", sizes, "--samples", str(samples),
         "--json-out", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r, json.loads(out.read_text())


def test_bench_receipts_reports_every_block_size(tmp_path: Path) -> None:
    r, result = _bench(tmp_path, "1,40", 8)
    assert result["samples"] == 8 and [row["block_txs"] for row in result["rows"]] == [1, 40]
    for row in result["rows"]:
        assert row["commit_ms"] > 0
        assert 0 < row["answer"]["p50_ms"] <= row["answer"]["p99_ms"]
    assert "block txs" in r.stdout


def test_bench_receipts_builds_a_block_above_the_default_limit(tmp_path: Path) -> None:
    # the bench is for a 4,000-tx block; the genesis' default admits 2,000 (a rule of block
    # validity), so a bench on the default genesis failed at its largest block
    _, result = _bench(tmp_path, "2001", 4)
    assert [row["block_txs"] for row in result["rows"]] == [2001]


def test_bench_receipts_refuses_repeated_sizes() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_receipts.py"), "--sizes", "5,5"],
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "distinct" in r.stderr
