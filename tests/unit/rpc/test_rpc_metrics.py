"""node/runtime/metrics.py: what a scrape shows after the node's calls."""

from __future__ import annotations

import ctypes

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.runtime.memory import c_heap_bytes
from node.runtime.metrics import NodeMetrics


def samples(m: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_fresh_registry_shows_zeroes() -> None:
    s = samples(NodeMetrics())
    assert s[("titlechain_height", ())] == 0
    assert s[("titlechain_txs_committed_total", (("status", "ok"),))] == 0
    assert s[("titlechain_txs_committed_total", (("status", "rejected"),))] == 0
    assert s[("titlechain_commit_latency_seconds_count", ())] == 0


def test_commits_view_mempool_and_peers_are_reported() -> None:
    m = NodeMetrics()
    m.on_commit(1, n_ok=3, n_rejected=1, latencies=[0.02, 0.3, 7.0])
    m.on_commit(2, n_ok=2, latencies=[-0.001])  # a clock step backwards never makes a negative observation
    m.set_view(4)
    m.set_mempool(12, 3400)
    m.set_peers(3)
    s = samples(m)
    assert s[("titlechain_height", ())] == 2
    assert s[("titlechain_blocks_committed_total", ())] == 2
    assert s[("titlechain_txs_committed_total", (("status", "ok"),))] == 5
    assert s[("titlechain_txs_committed_total", (("status", "rejected"),))] == 1
    assert s[("titlechain_view", ())] == 4
    assert s[("titlechain_mempool_txs", ())] == 12 and s[("titlechain_mempool_bytes", ())] == 3400
    assert s[("titlechain_peers_connected", ())] == 3
    assert s[("titlechain_commit_latency_seconds_count", ())] == 4
    assert s[("titlechain_commit_latency_seconds_bucket", (("le", "0.025"),))] == 2
    assert s[("titlechain_commit_latency_seconds_bucket", (("le", "5.0"),))] == 3


def test_two_nodes_in_one_process_keep_their_own_figures() -> None:
    a, b = NodeMetrics(), NodeMetrics()
    a.set_height(10)
    assert samples(b)[("titlechain_height", ())] == 0


def test_the_largest_consensus_frame_is_a_high_water_mark() -> None:
    m = NodeMetrics()
    assert samples(m)[("titlechain_consensus_frame_max_bytes", ())] == 0
    for size in (300, 2100, 450):
        m.on_consensus_frame(size)
    assert samples(m)[("titlechain_consensus_frame_max_bytes", ())] == 2100


def test_held_memory_is_read_at_each_scrape() -> None:
    m = NodeMetrics()
    held = {"tree_nodes_cache": 100, "rocksdb_table_readers": 7}
    m.watch_held_memory(lambda: dict(held))
    assert samples(m)[("titlechain_memory_held_bytes", (("part", "rocksdb_table_readers"),))] == 7
    held["rocksdb_table_readers"] = 9000  # the store grew: the next scrape says so, with no call in between
    s = samples(m)
    assert s[("titlechain_memory_held_bytes", (("part", "rocksdb_table_readers"),))] == 9000
    assert s[("titlechain_memory_held_bytes", (("part", "tree_nodes_cache"),))] == 100


@pytest.mark.skipif(c_heap_bytes() is None, reason="glibc 2.33's mallinfo2 only: elsewhere the metric is absent")
def test_the_c_heap_in_use_is_read_at_each_scrape() -> None:
    m = NodeMetrics()
    key = ("titlechain_memory_c_heap_bytes", (("state", "in_use"),))
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
    before = samples(m)[key]
    block = libc.malloc(64 << 20)  # far above what another thread of the test process might free meanwhile
    try:
        assert samples(m)[key] - before >= 48 << 20
        assert samples(m)[("titlechain_memory_c_heap_bytes", (("state", "free"),))] >= 0
    finally:
        libc.free(block)
