"""node/runtime/memory.py: the resident set read apart (heap, mapped files) and the
TITLECHAIN_MEMLOG probe that found the growers of docs/performance.md (Memory)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from node.runtime.memory import malloc_trim, probe_interval, rss_bytes, rss_parts, run_probe


def test_the_resident_set_and_its_parts_are_read() -> None:
    parts = rss_parts()
    assert parts["anon"] > 0 and parts["file"] > 0
    assert rss_bytes() >= parts["anon"]
    assert malloc_trim() in (True, False)


def test_the_probe_interval_comes_from_the_environment_and_a_bad_one_is_refused() -> None:
    assert probe_interval({}) is None and probe_interval({"TITLECHAIN_MEMLOG": ""}) is None
    assert probe_interval({"TITLECHAIN_MEMLOG": "30"}) == 30.0
    for bad in ("0", "-1", "soon", "1e9"):
        with pytest.raises(ValueError, match="TITLECHAIN_MEMLOG"):
            probe_interval({"TITLECHAIN_MEMLOG": bad})


def test_the_probe_logs_the_sizes_it_is_given(caplog: pytest.LogCaptureFixture) -> None:
    async def two_lines() -> None:
        task = asyncio.get_running_loop().create_task(run_probe(0.01, lambda: {"mempool": 7}))
        deadline = asyncio.get_running_loop().time() + 10
        while sum("memory:" in r.message for r in caplog.records) < 2:
            assert asyncio.get_running_loop().time() < deadline, "no memory line"
            await asyncio.sleep(0.01)
        task.cancel()

    with caplog.at_level(logging.INFO, logger="titlechain.memory"):
        asyncio.run(two_lines())
    line = next(r.message for r in caplog.records if "memory:" in r.message)
    assert "rss heap" in line and "mapped files" in line and "mempool 7" in line
