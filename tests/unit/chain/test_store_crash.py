"""Crash safety: SIGKILL a writer at random moments; every reopen finds a consistent store.

The child appends blocks as fast as it can and reports each height once `append` returned
(a synced batch, so that block is durable). The kill lands at a uniformly random moment of an
append cycle (signing the block's 50 txs, then the write). After each
kill the store must reopen with a head at least as high as the last reported height, every
block up to the head intact and linked, and nothing above the head: a block is all there or
not there at all.
"""

import multiprocessing as mp
import os
import random
import signal
import time

from factories import make_block, make_consortium

from chain.block import Certificate
from chain.store import BlockCommit, Store
from chain.tx import sign_tx

C = make_consortium(4)
KILLS = 60
TXS_PER_BLOCK = 50


def _txs(height: int) -> list:
    # each block's own txs: the store keeps a tx in one record (t/<tx_id>), and a chain never
    # commits a tx twice (the ledger refuses duplicates), so blocks must not share txs
    return [
        sign_tx(C.issuer, chain_id=C.genesis.chain_id, op="asset.register", args={"asset_id": f"a{height}-{i}", "meta": "m" * 200},
                expires=10**6, nonce=f"{height}-{i}")
        for i in range(TXS_PER_BLOCK)
    ]


def _writer(path: str, conn) -> None:
    store = Store.create_or_open(path, C.genesis)
    while True:
        h = store.height + 1
        block, cert = make_block(C, h, store.head.block_hash if store.head else C.genesis.hash, _txs(h))
        writes = {b"s/h%d/%d" % (h, i): b"v" * 100 for i in range(TXS_PER_BLOCK)}
        store.append(BlockCommit(block, cert, [{"tx_id": t} for t in block.tx_ids], writes))
        conn.send((store.height, time.monotonic()))


def check_intact(store: Store) -> None:
    prev = C.genesis.hash
    for h in range(1, store.height + 1):
        block = store.get_block(h)
        assert block is not None and block.header.prev_hash == prev, h
        block.check_tx_root()
        cert = store.get_certificate(h)
        assert isinstance(cert, Certificate)
        cert.verify(C.genesis.chain_id, h, block.block_hash, C.genesis.validators)
        assert len(store.get_receipts(h)) == len(block.txs)
        assert store.get(b"s/h%d/%d" % (h, TXS_PER_BLOCK - 1)) is not None
        assert store.tx_location(block.tx_ids[-1]) is not None
        prev = block.block_hash
    assert store.get_block(store.height + 1) is None
    assert store.get_certificate(store.height + 1) is None
    assert next(store.iterate(b"s/h%d/" % (store.height + 1)), None) is None


def test_sigkill_at_random_moments(tmp_path):
    ctx = mp.get_context("fork")
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    path = str(tmp_path / "db")
    acked = 0
    for _ in range(KILLS):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_writer, args=(path, child))
        proc.start()
        child.close()
        stamps = []
        for _ in range(3):
            assert parent.poll(30), "writer made no progress"
            acked, t = parent.recv()
            stamps.append(t)
        cycle = (stamps[-1] - stamps[0]) / 2
        time.sleep(rng.uniform(0, cycle))  # the kill's random moment within the next append
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        try:
            while parent.poll(0):
                acked, _ = parent.recv()
        except EOFError:  # the pipe's end after the kill
            pass
        parent.close()
        with Store.create_or_open(path, C.genesis) as store:
            assert store.height >= acked, (store.height, acked)
            check_intact(store)
