"""Receipt-read benchmark: `GET /v1/txs/{id}` latency for committed txs, by the size of their block.

    python scripts/bench_receipts.py [--sizes 1,500,4000] [--samples 200] [--json-out FILE]

In one process, with the real ledger and store (no consortium): a chain with one block of each
size (asset registrations) is built through Ledger.propose/validate/commit with real
certificates (the commit of each block is timed: the write cost of the store layout), then
`--samples` txs spread over each block are answered the way the route answers them: the ledger
call it makes (`node.rpc.views.committed_tx_answer`) and the answer's JSON. Every answer is checked to be
the committed tx, at its height, with its receipt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from chain.block import Block, Certificate, sign_commit
from chain.devnet import Consortium, make_consortium
from chain.encoding import H
from chain.genesis import Params
from chain.tx import Tx, sign_tx
from node.rpc import views
from node.runtime.ledger import Ledger


def _register(c: Consortium, asset_id: str, expires: int) -> Tx:
    args = {"asset_id": asset_id, "class": "warehouse_receipt", "owner": c.users[0].public,
            "doc_hash": H(b"doc/" + asset_id.encode()).hex(), "meta": {}}
    return sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=expires,
                   nonce=asset_id)


def build_block(c: Consortium, ledger: Ledger, size: int, tag: str) -> tuple[Block, float]:
    """A committed block of `size` asset registrations; and the seconds its commit took."""
    height = ledger.height + 1
    txs = [_register(c, f"{tag}-{i}", height + 50) for i in range(size)]
    vset = ledger.validator_set_at(height)
    block = ledger.propose(txs, 0, vset.primary(0).public, c.genesis.time + height)
    ledger.validate(block, {t.tx_id for t in txs})
    keys = [k for k in c.validator_keys if k.public in vset.publics][: vset.quorum]
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, 0, block.block_hash) for k in keys}
    cert = Certificate.build(height, 0, block.block_hash, sigs)
    start = time.perf_counter()
    ledger.commit(block, cert)
    return block, time.perf_counter() - start


def sample_ids(block: Block, samples: int) -> list[str]:
    """`samples` tx ids spread evenly over the block (a small block's ids are fetched again)."""
    ids = block.tx_ids
    step = max(1, len(ids) // samples)
    return [ids[(i * step) % len(ids)] for i in range(samples)]


def check_answer(answer: Any, block: Block, tx_id: str) -> None:
    index = block.tx_ids.index(tx_id)
    ok = (
        answer["status"] == "committed"
        and answer["height"] == block.height
        and answer["tx"] == block.txs[index].to_plain()
        and answer["receipt"]["tx_id"] == tx_id
        and answer["receipt"]["status"] == "ok"
    )
    if not ok:
        raise SystemExit(f"wrong answer for tx {tx_id} of block {block.height}: {answer}")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(p99, 3)}


def measure_ledger(ledger: Ledger, blocks: list[Block], samples: int) -> dict[int, dict[str, float]]:
    out = {}
    for block in blocks:
        times = []
        for tx_id in sample_ids(block, samples):
            start = time.perf_counter()
            body = json.dumps(views.committed_tx_answer(ledger.store, tx_id))  # what the route answers, as JSON
            times.append(time.perf_counter() - start)
            answer = json.loads(body)
            check_answer(answer, block, tx_id)
        out[len(block.txs)] = percentiles(times)
    return out


def run(sizes: list[int], samples: int, workdir: Path) -> dict[str, Any]:
    # the genesis admits the largest block asked for: the block size is a rule of block validity,
    # and the default (2,000 txs) is below the 4,000-tx block this bench is for
    c = make_consortium(params={"max_block_txs": max(max(sizes), Params().max_block_txs)})
    ledger = Ledger.open(workdir / "node", c.genesis)
    try:
        built = [build_block(c, ledger, size, f"R{n}") for n, size in enumerate(sizes)]
        answers = measure_ledger(ledger, [b for b, _ in built], samples)
        rows = [{"block_txs": len(b.txs), "commit_ms": round(t * 1000, 1), "answer": answers[len(b.txs)]} for b, t in built]
        return {"samples": samples, "rows": rows}
    finally:
        ledger.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,500,4000", help="comma-separated block sizes (txs), distinct")
    ap.add_argument("--samples", type=int, default=200, help="txs fetched per block")
    ap.add_argument("--json-out", type=Path)
    opts = ap.parse_args(argv)
    sizes = [int(s) for s in opts.sizes.split(",")]
    if len(set(sizes)) != len(sizes) or min(sizes) < 1 or opts.samples < 1:
        ap.error("--sizes must be distinct positive counts and --samples positive")
    with tempfile.TemporaryDirectory(prefix="bench-receipts-") as tmp:
        result = run(sizes, opts.samples, Path(tmp))
    print(f"{'block txs':>10} {'commit ms':>10} {'answer p50 ms':>14} {'answer p99 ms':>14}")
    for r in result["rows"]:
        print(f"{r['block_txs']:>10} {r['commit_ms']:>10} {r['answer']['p50_ms']:>14} {r['answer']['p99_ms']:>14}")
    if opts.json_out:
        opts.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
