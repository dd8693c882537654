"""Every in-memory cache and memo of the node stays within its named cap (docs/performance.md,
Memory), exercised past the cap with the caps made small."""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_fixtures import LedgerChain
from pydantic import ValidationError

import chain.tx as chain_tx
import node.runtime.ledger as ledger_mod
from chain import smt
from chain.bytecache import bytes_size
from chain.database import FD_MARGIN, DbMemory, open_db
from chain.tx import parse_tx, sign_tx
from node.p2p.peers import Peer, PerPeerRate, TransportConfig
from node.rpc.ratelimit import RateLimiter
from node.runtime.config import NodeConfig
from node.runtime.ledger import LedgerMemory


def test_the_ledgers_caches_stay_within_their_byte_caps(tmp_path: Path) -> None:
    memory = LedgerMemory(tree_node_bytes=80_000, standing_bytes=400)
    ch = LedgerChain(tmp_path / "node", memory=memory)
    try:
        written = 0
        for b in range(30):  # each block writes dozens of tree nodes, each cached on commit
            ch.block([ch.register(f"M-{b}-{i}", ch.c.users[(2 * b + i) % 5]) for i in range(2)])
            written += sum(bytes_size(k, v) for k, v in ch.ledger.store.iterate(smt.NODE_PREFIX + smt.version_bytes(ch.ledger.height)))
            nodes = ch.ledger.cache_stats()["tree_nodes"]
            assert 0 < nodes.bytes <= 80_000 and nodes.cap_bytes == 80_000
        assert written > 80_000  # the cap was passed: generations were dropped
        known = [u.public for u in ch.c.users[:5]]  # owners of assets: each has standing
        assert all(ch.ledger.has_standing(a) for a in known)
        standing = ch.ledger.cache_stats()["standing"]
        assert 0 < standing.entries < 5 and standing.bytes <= 400
        assert len(ch.ledger._results) <= ledger_mod.RESULT_CACHE
    finally:
        ch.ledger.close()


def test_the_tree_node_cache_drops_the_nodes_a_block_replaced(tmp_path: Path) -> None:
    # the replaced nodes belong to older states only: kept, they would crowd out the current tree
    ch = LedgerChain(tmp_path / "node", memory=LedgerMemory(tree_node_bytes=1 << 20))
    try:
        ch.block([ch.register(f"M-{i}", ch.c.users[i % 3]) for i in range(20)])
        height = ch.ledger.height
        ch.block([ch.register(f"N-{i}", ch.c.users[i % 3]) for i in range(5)])
        record = ch.ledger.store.get(smt.stale_key(height + 1))
        assert record is not None
        retired = [k for k in smt.retired_keys(record) if k.startswith(smt.NODE_PREFIX)]
        assert len(retired) >= 5  # at least the root and the path to each new key
        cached = ch.ledger._nodes
        assert not any(k in cached for k in retired)
        new = [k for k, _ in ch.ledger.store.iterate(smt.NODE_PREFIX + smt.version_bytes(height + 1))]
        assert new and all(k in cached for k in new)
        assert ch.ledger.cache_stats()["tree_nodes"].bytes == sum(bytes_size(k, v) for gen in cached._gens for k, v in gen.items())
    finally:
        ch.ledger.close()


def test_the_node_config_sets_every_cap(tmp_path: Path) -> None:
    cfg = NodeConfig(
        node_id="v0", genesis=tmp_path / "g.json", key=tmp_path / "k.json", data_dir=tmp_path / "d",
        peer_listen="127.0.0.1:1", cache_tree_nodes_bytes=1_000, cache_standing_bytes=2_000,
        db_write_buffer_bytes=2 << 20, db_block_cache_bytes=3 << 20, db_max_open_files=80,
    )
    assert cfg.memory == LedgerMemory(1_000, 2_000, DbMemory(2 << 20, 3 << 20, 80))
    with pytest.raises(ValidationError):
        NodeConfig(node_id="v0", genesis=tmp_path / "g.json", key=tmp_path / "k.json", data_dir=tmp_path / "d",
                   peer_listen="127.0.0.1:1", db_max_open_files=20)  # too few for a store's tables


def test_the_databases_memory_is_its_buffers_and_a_small_share_of_its_tables(tmp_path: Path) -> None:
    # the block cache and the memtables share a cap; the open tables' indexes and bloom
    # filters are held beside them, a few per cent of the tables' bytes
    memory = DbMemory(write_buffer_bytes=1 << 20, block_cache_bytes=2 << 20)
    db = open_db(tmp_path / "db", create=True, memory=memory)
    try:
        keys = [hashlib.sha256(b"%d" % i).digest() for i in range(14_000)]
        for start in range(0, len(keys), 500):
            with db.write_batch() as wb:
                for k in keys[start : start + 500]:
                    wb.put(k, k * 256)  # 8 KB a record: ~112 MB of tables, 50 times the cache
        db.compact_range()
        for k in keys[::7]:
            assert db.get(k) == k * 256
        held = db.memory_bytes()
        cache = db.int_property("rocksdb.block-cache-usage")
        readers = db.int_property("rocksdb.estimate-table-readers-mem")
    finally:
        db.close()
    tables = sum(p.stat().st_size for p in (tmp_path / "db").glob("*.sst"))
    assert tables > 100 << 20
    # the cache holds the blocks and the memtables' reservations within the buffers' one budget
    # (its shards may each overshoot a little)
    assert 0 < cache <= memory.buffers_bytes * 1.05
    assert 0 < readers < tables // 50
    assert held <= memory.buffers_bytes * 1.05 + readers


def test_the_parse_memo_stays_within_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from factories import make_consortium

    c = make_consortium()
    monkeypatch.setattr(chain_tx, "RECENT_TXS", 4)
    monkeypatch.setattr(chain_tx, "_recent", type(chain_tx._recent)())
    for i in range(10):
        tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args={"asset_id": f"p{i}"},
                     expires=10, nonce=f"p{i}")
        assert parse_tx(tx.to_plain()) == tx
        assert len(chain_tx._recent) <= 4


def test_a_peers_queue_stays_within_frames_and_bytes() -> None:
    async def fill() -> Peer:
        peer = Peer("v1", "00" * 32, None, TransportConfig(queue_frames=5, queue_bytes=1000))
        for i in range(50):
            peer.enqueue(bytes([i]) * 300)
            assert len(peer.queue) <= 5 and peer.queued_bytes <= 1000
        return peer

    peer = asyncio.run(fill())
    assert peer.dropped > 0 and peer.queued_bytes == sum(len(f) for f in peer.queue)


def test_the_rate_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = RateLimiter(10, 10, max_clients=3)
    for i in range(20):
        limiter.take(f"client-{i}")
        assert len(limiter._buckets) <= 3


def test_the_per_peer_serve_rate_remembers_a_bounded_number_of_peers() -> None:
    # a joining node may link with any key: each new key must not stay remembered for ever
    rate = PerPeerRate(per_s=2, max_peers=4)
    for i in range(50):
        assert rate.allow(f"key-{i}", now=float(i))  # one request a second from a new key each
        assert len(rate) <= 4
    # within its second a busy peer is still held to its rate, whatever else arrives
    assert rate.allow("busy", 100.0) and rate.allow("busy", 100.1) and not rate.allow("busy", 100.2)
    for i in range(10):
        rate.allow(f"other-{i}", 100.3)
    assert not rate.allow("busy", 100.4)
    assert rate.allow("busy", 101.2)


def _limit_after_raise(soft: int, hard: int, max_open_files: int) -> tuple[int, str | None]:
    """In a child process started with RLIMIT_NOFILE (soft, hard): raise_fd_limit's effect."""
    code = (
        "import json, resource\n"
        "from chain.database import DbMemory, raise_fd_limit\n"
        f"why = raise_fd_limit(DbMemory(max_open_files={max_open_files}))\n"
        "print(json.dumps([resource.getrlimit(resource.RLIMIT_NOFILE)[0], why]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    new_soft, why = json.loads(out.stdout)
    return new_soft, why


def test_the_open_files_limit_is_raised_to_hold_the_table_cache_open() -> None:
    # RocksDB keeps up to max_open_files tables open besides the process's own descriptors
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    need = 2000 + FD_MARGIN
    if hard != resource.RLIM_INFINITY and hard < need + 10:
        pytest.skip(f"the hard open-files limit {hard} is below {need + 10}")
    assert _limit_after_raise(256, need + 10, 2000) == (need, None)
    assert _limit_after_raise(need + 10, need + 10, 2000) == (need + 10, None)  # never lowered
    assert _limit_after_raise(256 + 64 + FD_MARGIN, need, 64) == (256 + 64 + FD_MARGIN, None)  # enough already
    short, why = _limit_after_raise(256, 1024, 2000)
    assert short == 1024  # as far as the hard limit allows, and the node is told why that is short
    assert why is not None and "1,024" in why and "db_max_open_files 2,000" in why and f"{need:,}" in why
