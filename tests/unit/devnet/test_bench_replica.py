"""scripts/bench_replica.py end to end on a tiny chain: phases at two state sizes, pruning counted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "bench_replica.py"
LINE = re.compile(
    r"^~([\d,]+) assets, phase (\d): decode [\d.]+ validate [\d.]+ commit ([\d.]+) vote_record [\d.]+ total [\d.]+"
    r" \| of the commit: prune ([\d.]+) batch_write ([\d.]+) cache_upkeep ([\d.]+) \| (\d+) of (\d+) commits pruned"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)


def test_a_pruning_replica_reports_each_phase_and_the_commits_that_pruned() -> None:
    # a snapshot interval of 5 and 10 blocks a phase: each phase holds whole pruning cycles
    done = _run("--setup", "300", "--txs", "200", "--block", "20", "--phases", "2", "--grow", "300",
                "--state-retention", "3", "--snapshot-interval", "5")
    assert done.returncode == 0, done.stderr
    rows = [LINE.match(line) for line in done.stdout.splitlines()]
    assert all(rows) and len(rows) == 4, done.stdout
    assets = [int(m.group(1).replace(",", "")) for m in rows]  # type: ignore[union-attr]
    assert assets == [300, 400, 800, 900]  # each phase registers 100; the growth 300
    for m in rows:
        commit, prune, write, upkeep = (float(m.group(i)) for i in (3, 4, 5, 6))  # type: ignore[union-attr]
        assert 0 < prune and 0 < write and prune + write + upkeep <= commit
        assert int(m.group(8)) == 10 and 0 < int(m.group(7)) < 10  # type: ignore[union-attr]


def test_an_archive_replica_prunes_nothing() -> None:
    done = _run("--setup", "100", "--txs", "100", "--block", "20")
    assert done.returncode == 0, done.stderr
    m = LINE.match(done.stdout.strip())
    assert m is not None, done.stdout
    assert float(m.group(4)) == 0 and int(m.group(7)) == 0 and int(m.group(8)) == 5


def test_bad_figures_are_refused_with_a_message() -> None:
    for args, word in ((("--grow", "-1"), "--grow"), (("--state-retention", "0"),  "--state-retention"),
                       (("--txs", "x"), "--txs")):
        done = _run(*args)
        assert done.returncode == 2 and word in done.stderr, done.stderr
