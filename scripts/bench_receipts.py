"""Receipt-read benchmark: `GET /v1/txs/{id}` latency for committed txs, by the size of their block.

    python scripts/bench_receipts.py [--sizes 1,500,4000] [--samples 200] [--json-out FILE]

In one process, with the real ledger and store (no consortium): a chain with one block of each
size is built through Ledger.propose/validate/commit with real certificates (the commit of each
block is timed: the write cost of the store layout), then `--samples` txs spread over each block
are fetched through the real RPC app (node.rpc.make_app on a loopback socket, aiohttp's test
server) and through the ledger call the route uses (`Ledger.committed_tx_answer`). Every answer
is checked to be the committed tx, at its height, with its receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from ledger_fixtures import LedgerChain  # noqa: E402
from ledger_node import LedgerNode  # noqa: E402

from chain.block import Block  # noqa: E402
from chain.tx import Tx  # noqa: E402
from node.rpc import make_app  # noqa: E402


def build_block(chain: LedgerChain, size: int, tag: str) -> tuple[Block, float]:
    """A committed block of `size` asset registrations; and the seconds its commit took."""
    owner = chain.c.users[0]
    txs: list[Tx] = [chain.register(f"{tag}-{i}", owner) for i in range(size)]
    ledger = chain.ledger
    height = ledger.height + 1
    proposer = ledger.validator_set_at(height).primary(0).public
    block = ledger.propose(txs, 0, proposer, chain.c.genesis.time + height)
    ledger.validate(block, {t.tx_id for t in txs})
    cert = chain.certify(block)
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


async def measure_rpc(node: LedgerNode, blocks: list[Block], samples: int) -> dict[int, dict[str, float]]:
    client = TestClient(TestServer(make_app(node), host="127.0.0.1"))
    await client.start_server()
    try:
        await client.get("/v1/status")  # the first request sets up the connection: not measured
        out = {}
        for block in blocks:
            times = []
            for tx_id in sample_ids(block, samples):
                start = time.perf_counter()
                resp = await client.get(f"/v1/txs/{tx_id}")
                answer = await resp.json()
                times.append(time.perf_counter() - start)
                if resp.status != 200:
                    raise SystemExit(f"GET /v1/txs/{tx_id}: HTTP {resp.status}")
                check_answer(answer, block, tx_id)
            out[len(block.txs)] = percentiles(times)
        return out
    finally:
        await client.close()


def measure_ledger(chain: LedgerChain, blocks: list[Block], samples: int) -> dict[int, dict[str, float]]:
    out = {}
    for block in blocks:
        times = []
        for tx_id in sample_ids(block, samples):
            start = time.perf_counter()
            answer = json.loads(json.dumps(chain.ledger.committed_tx_answer(tx_id)))
            times.append(time.perf_counter() - start)
            check_answer(answer, block, tx_id)
        out[len(block.txs)] = percentiles(times)
    return out


def run(sizes: list[int], samples: int, workdir: Path) -> dict[str, Any]:
    chain = LedgerChain(workdir / "node")
    try:
        built = [build_block(chain, size, f"R{n}") for n, size in enumerate(sizes)]
        blocks = [b for b, _ in built]
        rpc = asyncio.run(measure_rpc(LedgerNode(chain), blocks, samples))
        ledger = measure_ledger(chain, blocks, samples)
        rows = [
            {"block_txs": len(b.txs), "commit_ms": round(t * 1000, 1), "rpc": rpc[len(b.txs)], "ledger": ledger[len(b.txs)]}
            for b, t in built
        ]
        return {"samples": samples, "rows": rows}
    finally:
        chain.ledger.close()


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
    print(f"{'block txs':>10} {'commit ms':>10} {'rpc p50':>9} {'rpc p99':>9} {'ledger p50':>11} {'ledger p99':>11}")
    for r in result["rows"]:
        print(f"{r['block_txs']:>10} {r['commit_ms']:>10} {r['rpc']['p50_ms']:>9} {r['rpc']['p99_ms']:>9} "
              f"{r['ledger']['p50_ms']:>11} {r['ledger']['p99_ms']:>11}")
    if opts.json_out:
        opts.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
