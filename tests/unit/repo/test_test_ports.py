"""tests/ports.py: the integration tests' port ranges, movable with TITLECHAIN_TEST_BASE_PORT."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import ports

TESTS = Path(__file__).resolve().parents[2]
RANGES = [ports.CLUSTER, ports.BENCH, ports.DEMO, ports.SOLO, ports.CEREMONY, ports.CLI]


def test_ranges_are_disjoint_and_hold_every_starting_point() -> None:
    # cluster.py and test_bench.py start at (pid % 50) * 20 above their range, test_demo.py at (pid % 40) * 20
    for (start, stop), spread in ((ports.CLUSTER, 49 * 20), (ports.BENCH, 49 * 20), (ports.DEMO, 39 * 20)):
        assert start + spread + 2 * 8 <= stop, (start, stop)
    # the others wrap their starting point within the range (tests/factories.py free_base_port): room for a few runs
    for start, stop in (ports.SOLO, ports.CEREMONY, ports.CLI):
        assert stop - start >= 500, (start, stop)
    assert [r[0] for r in RANGES] == sorted(r[0] for r in RANGES)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(RANGES))
    assert RANGES[0][0] == ports.BASE and RANGES[-1][1] - ports.BASE == ports.SPAN


def test_the_default_ranges_lie_below_the_ephemeral_ports() -> None:
    # a range among the ephemeral ports is a flaky test: a node's outgoing connection can take the
    # port a later node of the same test is about to listen on (a CI run lost a node so)
    if "TITLECHAIN_TEST_BASE_PORT" in os.environ:
        return  # moved on purpose by whoever runs the suite
    first_ephemeral = 32768  # Linux's default, and what this machine's /proc says unless changed
    proc = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if proc.exists():
        first_ephemeral = int(proc.read_text().split()[0])
    assert ports.BASE + ports.SPAN <= first_ephemeral, (
        f"the tests' ports reach {ports.BASE + ports.SPAN}, into the ephemeral ports from {first_ephemeral}: "
        f"set TITLECHAIN_TEST_BASE_PORT to a base at most {first_ephemeral - ports.SPAN}")


def base_in_subprocess(value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import ports; print(ports.BASE, ports.CLI[1])"], cwd=TESTS, check=False,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TITLECHAIN_TEST_BASE_PORT": value})


def test_the_base_moves_with_the_environment() -> None:
    r = base_in_subprocess("40000")
    assert r.returncode == 0 and r.stdout.split() == ["40000", str(40000 + ports.SPAN)]
    bad = base_in_subprocess("64000")
    assert bad.returncode != 0 and f"need {ports.SPAN} ports" in bad.stderr
    assert "not a port number" in base_in_subprocess("x").stderr
