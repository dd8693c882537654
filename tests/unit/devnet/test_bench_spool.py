"""The bench's txs wait on disk (node/devnet/bench_spool.py): read back whole, in order, in chunks."""

from __future__ import annotations

import json
from pathlib import Path

from factories import make_consortium

from chain.crypto import write_key_file
from chain.tx import parse_tx
from node.devnet.bench_client import ClientJob
from node.devnet.bench_spool import plan_txs


def test_spooled_txs_read_back_in_order_and_chunks(tmp_path: Path) -> None:
    c = make_consortium()
    keys = []
    for i, key in enumerate([c.issuer, *c.users[:3]]):
        keys.append(tmp_path / f"k{i}.json")
        write_key_file(keys[-1], key)
    job = ClientJob(
        index=0, chain_id=c.genesis.chain_id, rpcs=("http://x",), events_rpc="http://x",
        issuers=((str(keys[0]), "warehouse_receipt"),), parties=tuple(str(k) for k in keys[1:]),
        registers=5, transfers=3, expires=99, tag="t", chunk=2, window=10, deadline_s=1.0,
        spool_dir=str(tmp_path),
    )
    setup, measured = plan_txs(job, tmp_path)
    assert (setup.count, measured.count) == (3, 8)
    rows = [row for chunk in measured.chunks(3) for row in chunk]
    assert [len(chunk) for chunk in measured.chunks(3)] == [3, 3, 2]
    txs = [parse_tx(json.loads(body)) for _, body in rows]
    assert [tx_id for tx_id, _ in rows] == [t.tx_id for t in txs]  # each line's id is its tx's
    assert all(t.signature_valid() for t in txs)
    # registrations and transfers interleaved, the leftover registrations last
    assert [t.op for t in txs] == ["asset.register", "asset.transfer"] * 3 + ["asset.register"] * 2
    setup_ids = [parse_tx(json.loads(b)).args["asset_id"] for chunk in setup.chunks(10) for _, b in chunk]
    assert [t.args["asset_id"] for t in txs if t.op == "asset.transfer"] == setup_ids
