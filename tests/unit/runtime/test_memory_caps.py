"""Every in-memory cache and memo of the node stays within its named cap (docs/performance.md,
Memory), exercised past the cap with the caps made small."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ledger_fixtures import LedgerChain

import chain.tx as chain_tx
import node.runtime.ledger as ledger_mod
from chain.tx import parse_tx, sign_tx
from node.p2p.peers import Peer, TransportConfig
from node.rpc.ratelimit import RateLimiter


def test_the_ledgers_caches_stay_within_their_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_mod, "NODE_CACHE", 40)
    monkeypatch.setattr(ledger_mod, "STANDING_CACHE", 2)
    ch = LedgerChain(tmp_path / "node")
    try:
        for b in range(4):  # each block writes dozens of tree nodes, each cached on commit
            ch.block([ch.register(f"M-{b}-{i}", ch.c.users[i]) for i in range(5)])
            assert 0 < len(ch.ledger._nodes) <= 40
        known = [u.public for u in ch.c.users[:5]]  # owners of assets: each has standing
        assert all(ch.ledger.has_standing(a) for a in known)
        assert len(ch.ledger._standing) <= 2
        assert len(ch.ledger._results) <= ledger_mod.RESULT_CACHE
    finally:
        ch.ledger.close()


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
