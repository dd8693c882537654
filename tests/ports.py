"""Where the integration tests put their nodes' ports, movable with TITLECHAIN_TEST_BASE_PORT.

The default base 27000 keeps clear of a developer's localnet on 26600. Each kind of test gets
its own range above the base, so concurrent runs of different kinds never collide:

    base + 0    .. base + 1500   tests/integration/cluster.py (four-node consortia)
    base + 1500 .. base + 2600   tests/integration/test_bench.py
    base + 2600 .. base + 3600   tests/integration/test_demo.py

Each range is wider than the spread of starting points the tests pick by process id (up to
1,000 ports above its start), so every starting point leaves room for a consortium.
"""

from __future__ import annotations

import os

SPAN = 3600


def _base() -> int:
    raw = os.environ.get("TITLECHAIN_TEST_BASE_PORT", "27000")
    try:
        base = int(raw)
    except ValueError:
        raise SystemExit(f"TITLECHAIN_TEST_BASE_PORT={raw!r}: not a port number") from None
    if not 1024 <= base <= 65535 - SPAN:
        raise SystemExit(f"TITLECHAIN_TEST_BASE_PORT={base}: the tests need {SPAN} ports from it, within 1024..65535")
    return base


BASE = _base()
CLUSTER = (BASE, BASE + 1500)
BENCH = (BASE + 1500, BASE + 2600)
DEMO = (BASE + 2600, BASE + 3600)
