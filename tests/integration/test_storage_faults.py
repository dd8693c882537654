"""A real node process whose disk fails: a failed write stops it (critical log, exit 1) instead of
serving a stale height as `ready`."""

from __future__ import annotations

import resource
from datetime import UTC, datetime

from solo import Solo

from node.sdk.client import Client, RpcError

FSIZE_LIMIT = 256 << 10  # bytes any one file of the process may reach: the same EFBIG as a full disk


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_a_failed_write_stops_the_node_with_exit_1(solo: Solo) -> None:
    solo.start(preexec=_limit_file_size)
    solo.wait_ready()
    committed = 0
    with Client(solo.rpc, timeout=60) as client:
        # each register commits a block (~6 KB written with its votes record): the write-ahead log
        # reaches the limit within a few dozen; bounded in count, and stops as soon as the node does
        for i in range(2000):
            if solo.proc.poll() is not None:
                break
            try:
                solo.register(client, f"WR-fault-{i}", timeout=30)
                committed += 1
            except (RpcError, OSError):
                break  # the node stopped (or is stopping) under us
    assert committed > 0, solo.log_text()[-2000:]
    assert solo.wait_exit(20) == 1, solo.log_text()[-3000:]
    exited = datetime.now(UTC)
    critical = [line for line in solo.log_lines() if line.get("level") == "critical"]
    assert critical and "storage fault" in critical[0]["msg"] and "writing" in critical[0]["msg"], critical
    # within seconds of the fault, though a client was waiting for its tx (?wait=true, 30 s)
    fault_at = datetime.strptime(critical[0]["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert (exited - fault_at).total_seconds() < 5, (fault_at, exited)
