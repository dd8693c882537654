"""Full blocks on four real validator processes, the primary frozen (SIGSTOP) for 30 s (defect 5).

With blocks near `max_block_bytes`, a NEW-VIEW used to carry whole blocks in its proofs and
exceed the frame cap, so the consortium froze for good once a primary stopped. The genesis here
sets max_block_bytes to 1 MiB so the test fills blocks in seconds; that the consensus message
size does not depend on the block size at all (1 KiB and 8 MiB give the same bytes) is
tests/unit/consensus/test_pbft_message_size.py.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, wait_for

from chain.tx import Tx, new_nonce
from node.devnet.provision import DEFAULT_SEED
from node.sdk.client import RpcError, sign

MAX_BLOCK_BYTES = 1024 * 1024
META_BYTES = 4000  # per tx, under the 4,096-byte meta limit: ~4.3 KB a tx, ~240 a full block
BACKLOG_TXS = 1500  # ~6.5 MiB pending when the primary stops: several full blocks
STOP_S = 30
RESUME_BOUND_S = 10  # commits by the other three resume within this of the stop
CONSENSUS_FRAME_BOUND = 64 * 1024  # bytes; a full block is 16 times this
ISSUER = ("issuers", "northgate-receipts")
OWNER = ("parties", "riverside-foods")


@pytest.fixture
def full_blocks_cluster(tmp_path: Path) -> Iterator[Cluster]:
    seed = json.loads(Path(DEFAULT_SEED).read_text())
    seed["params"] = {**seed.get("params", {}), "max_block_bytes": MAX_BLOCK_BYTES}
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    c = Cluster.start(tmp_path / "net", seed=tmp_path / "seed.json")
    try:
        yield c
    finally:
        for i in range(len(c.nodes)):
            c.signal(i, signal.SIGCONT)  # a frozen node must be able to take localnet down's SIGTERM
        c.stop()
        assert not any(c.pids(i) for i in range(len(c.nodes))), "a node process outlived localnet down"


def _txs(c: Cluster, count: int, start: int) -> list[Tx]:
    """Registrations padded to ~4.3 KB each (the meta field), all of one size within a few bytes."""
    issuer, owner = c.key(*ISSUER), c.key(*OWNER)
    height = c.status(0)["height"]
    txs = []
    for i in range(start, start + count):
        doc = hashlib.sha256(f"WR-BIG-{i}/{new_nonce()}".encode()).hexdigest()
        args = {"asset_id": f"WR-BIG-{i}", "class": "warehouse_receipt", "owner": owner.public, "doc_hash": doc,
                "meta": {"pad": "x" * META_BYTES}}
        txs.append(sign(issuer, c.chain_id, "asset.register", args, expires=height + 5000))
    return txs


def _submit(c: Cluster, nodes: list[int], txs: list[Tx], errors: list[str]) -> None:
    for k in range(0, len(txs), 250):
        try:
            with c.client(nodes[(k // 250) % len(nodes)], timeout=30) as cl:
                cl.submit_batch(txs[k : k + 250])
        except (RpcError, OSError) as e:
            errors.append(str(e))


def test_full_blocks_and_a_frozen_primary_commits_resume_and_frames_stay_small(full_blocks_cluster: Cluster) -> None:
    c = full_blocks_cluster
    primary = c.index_of(c.status(0)["primary"])
    others = [i for i in range(4) if i != primary]
    backlog = _txs(c, BACKLOG_TXS, 0)
    errors: list[str] = []
    _submit(c, others, backlog[:250], errors)
    start_height = wait_for(lambda: (h := c.status(others[0])["height"]) >= 1 and h, 30, "a first block")
    loader = threading.Thread(target=_submit, args=(c, others, backlog[250:], errors), daemon=True)
    loader.start()
    wait_for(lambda: c.status(others[0])["height"] > start_height, 30, "a block of the backlog")
    c.signal(primary, signal.SIGSTOP)
    stopped_at = time.monotonic()
    stop_height = max(c.status(i)["height"] for i in others)
    # a block already prepared may still commit without the primary; the others must go on past it
    wait_for(lambda: min(c.status(i)["height"] for i in others) >= stop_height + 2, RESUME_BOUND_S,
             "two commits by the other three after the primary froze")
    resumed_after = time.monotonic() - stopped_at
    print(f"commits resumed {resumed_after:.2f} s after SIGSTOP of the primary")
    views = [c.status(i)["view"] for i in others]
    assert min(views) >= 1, f"no view change happened: views {views}"
    loader.join(60)
    assert not errors, errors[:3]
    time.sleep(max(0.0, STOP_S - (time.monotonic() - stopped_at)))  # the freeze itself is the scenario
    c.signal(primary, signal.SIGCONT)
    # thawed, the old primary first catches up on the blocks it missed and says so (503 until then)
    wait_for(lambda: c.status(primary)["ready"], 30, "the thawed primary ready again")
    more = _txs(c, 250, BACKLOG_TXS)
    _submit(c, [primary, *others], more, errors)
    assert not errors, errors[:3]
    for i in range(4):
        with c.client(i, timeout=10) as cl:
            wait_for(lambda cl=cl: all(cl.tx(t.tx_id)["status"] == "committed" for t in (backlog[-1], more[-1])), 60,
                     f"the last txs committed on node {i}")
    top = c.status(others[0])["height"]
    with c.client(others[0]) as cl:
        most = max(len(cl.block(h)["tx_ids"]) for h in range(1, top + 1))
    biggest = most * len(backlog[0].encode())  # the txs of this test are all one size, within bytes
    print(f"height {top}; largest block {most} txs, ~{biggest} bytes; max_block_bytes {MAX_BLOCK_BYTES}")
    assert biggest > 0.8 * MAX_BLOCK_BYTES, "the blocks were not near full: the test did not test its point"
    frames = [c.metric(i, "titlechain_consensus_frame_max_bytes") for i in range(4)]
    print(f"largest consensus frame per node: {frames}")
    assert 0 < max(frames) < CONSENSUS_FRAME_BOUND
