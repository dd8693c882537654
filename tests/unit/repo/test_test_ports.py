"""tests/ports.py: the integration tests' port ranges, movable with TITLECHAIN_TEST_BASE_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ports

TESTS = Path(__file__).resolve().parents[2]


def test_ranges_are_disjoint_and_hold_every_starting_point() -> None:
    # cluster.py and test_bench.py start at (pid % 50) * 20 above their range, test_demo.py at (pid % 40) * 20
    for (start, stop), spread in ((ports.CLUSTER, 49 * 20), (ports.BENCH, 49 * 20), (ports.DEMO, 39 * 20)):
        assert start + spread + 2 * 8 <= stop, (start, stop)
    assert ports.CLUSTER[1] <= ports.BENCH[0] and ports.BENCH[1] <= ports.DEMO[0]
    assert ports.DEMO[1] - ports.BASE == ports.SPAN


def base_in_subprocess(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import ports; print(ports.BASE, ports.DEMO[1])"], cwd=TESTS,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TITLECHAIN_TEST_BASE_PORT": value})


def test_the_base_moves_with_the_environment() -> None:
    r = base_in_subprocess("40000")
    assert r.returncode == 0 and r.stdout.split() == ["40000", str(40000 + ports.SPAN)]
    bad = base_in_subprocess("64000")
    assert bad.returncode != 0 and "need 3600 ports" in bad.stderr
    assert "not a port number" in base_in_subprocess("x").stderr
