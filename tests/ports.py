"""Where the integration tests put their nodes' ports, movable with TITLECHAIN_TEST_BASE_PORT.

The default base 27000 keeps clear of a developer's localnet on 26600. Each kind of test gets
its own range above the base, so concurrent runs of different kinds never collide:

    base + 0    .. base + 1500   tests/integration/cluster.py (four-node consortia)
    base + 1500 .. base + 2600   tests/integration/test_bench.py
    base + 2600 .. base + 3600   tests/integration/test_demo.py
    base + 3600 .. base + 4300   tests/integration/solo.py (one-node consortia)
    base + 4300 .. base + 5000   tests/integration/test_ceremony.py
    base + 5000 .. base + 5600   tests/unit/cli (a one-node bench)

The first three are wider than the spread of starting points the tests pick by process id (up
to 1,000 ports above its start), so every starting point leaves room for a consortium; the
narrower ones rely on free_base_port wrapping its starting point within the range.

With the default base every range ends at 32600, below Linux's ephemeral ports (32768-60999 by
default, /proc/sys/net/ipv4/ip_local_port_range). A range inside them is a flaky test: a node's
outgoing connection to a peer not yet listening takes a random local port from that range, and
if that is the port a later node of the same test is about to listen on, that node cannot bind
and exits (a CI run lost the ceremony test's fourth node so, when it used 46000-46999).
"""

from __future__ import annotations

import os

SPAN = 5600


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
SOLO = (BASE + 3600, BASE + 4300)
CEREMONY = (BASE + 4300, BASE + 5000)
CLI = (BASE + 5000, BASE + 5600)
