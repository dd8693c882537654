"""One validator's CPU per tx BEFORE execution, in one process: what a replica does to each tx as it
arrives by RPC, by gossip and again inside the primary's proposal.

    python scripts/bench_admission.py [--txs 4400] [--frame 440] [--rounds 5] [--profile FILE]

Txs of the consortium bench's mix (half registrations by the issuer, half transfers by users; all
signed) are built first. Each round then runs, on a fresh mempool over a real store (its
committed-tx lookups are database reads):

- rpc:    `--txs` txs as 250-tx JSON batches (`POST /v1/txs/batch` bodies): JSON, parse, admit
          (as the tree's batch handler does: one mempool pass per chunk, or a submit per tx), answer.
- gossip: the same txs as transport frames of `--frame` txs (`{"kind": "msg", "body": {"t": "txs"}}`)
          through `decode`, `parse_wire` and `Mempool.add_many` (gossip=False), as the read loop does.
The parse memo (chain/tx.py) is cleared before `rpc` and before `gossip`: a node meets each tx
first by one of them, then again in a proposal.

- block:  the same txs again as block pushes of `--frame` txs: `decode`, `parse_wire` and the
          pre-execution checks of `Ledger.validate` (chain.validity.check_block: header, limits, tx
          root, each tx's chain, signature trust and committed-already lookup).

Prints process CPU per tx for each phase (median over rounds and the spread), then the signature
checks' share, measured alone: Ed25519 is most of `gossip` and of `rpc` (once per tx per node,
which stays), and "all else" is what admission costs beyond it. Run it on two code trees
alternately (PYTHONPATH, from outside either tree) to compare them.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from chain import tx as tx_module
from chain.block import Block
from chain.devnet import Consortium, make_consortium
from chain.encoding import canonical, canonical_map, decode
from chain.tx import Tx, TxError, sign_tx
from chain.validity import Parent, check_block
from contracts import validate_args
from node.p2p.messages import BlockPush, TxGossip, parse_wire
from node.rpc.api import NodeApi
from node.rpc.base import ApiError, dumps, tx_from_json
from node.runtime.ledger import Ledger
from node.runtime.mempool import Mempool, verify_signatures
from node.runtime.process import collect_cycles_rarely

PHASES = ("rpc", "gossip", "block")
SKIPS_PENDING = "pending" in inspect.signature(Ledger.validate).parameters
BATCHED = hasattr(NodeApi, "submit_many")
RPC_BATCH = 250


def make_txs(c: Consortium, n: int, height: int) -> list[Tx]:
    """The bench's mix: even i a registration, odd i a transfer; all signed by the issuer, the one
    signer with standing on a fresh chain (admission does not look at who owns an asset)."""
    cid = c.genesis.chain_id
    out = []
    for i in range(n):
        if i % 2 == 0:
            owner = c.users[i % len(c.users)].public
            args = {"asset_id": f"A-{i}", "class": "warehouse_receipt", "owner": owner, "doc_hash": f"{i:064x}", "meta": {}}
            out.append(sign_tx(c.issuer, chain_id=cid, op="asset.register", args=args, expires=height + 100, nonce=f"r{i}"))
        else:
            to = c.users[(i + 1) % len(c.users)].public
            out.append(sign_tx(c.issuer, chain_id=cid, op="asset.transfer", args={"asset_id": f"A-{i}", "to": to},
                               expires=height + 100, nonce=f"t{i}"))
    return out


def frame(body: bytes) -> bytes:
    """The plaintext of a transport msg frame (node/p2p/transport.py, `_frame`)."""
    return canonical_map({"kind": canonical("msg"), "body": body})


class Round:
    def __init__(self, ledger: Ledger, c: Consortium, txs: list[Tx], size: int) -> None:
        self.ledger, self.c, self.txs = ledger, c, txs
        chunks = [txs[i : i + size] for i in range(0, len(txs), size)]
        self.gossip_frames = [frame(TxGossip(tuple(chunk), 0).encode()) for chunk in chunks]
        self.block_frames = [frame(BlockPush(self._propose(chunk)).encode()) for chunk in chunks]
        self.rpc_bodies = [
            json.dumps({"txs": [t.to_plain() for t in txs[i : i + RPC_BATCH]]}).encode()
            for i in range(0, len(txs), RPC_BATCH)
        ]

    def _propose(self, txs: list[Tx]) -> Block:
        height = self.ledger.height + 1
        return self.ledger.propose(txs, 0, self.ledger.validator_set_at(height).primary(0).public, height)

    def mempool(self) -> Mempool:
        store = self.ledger.store
        return Mempool(
            self.c.genesis.chain_id,
            arg_validator=validate_args,
            is_committed=lambda tx_id: store.tx_location(tx_id) is not None,
            has_standing=self.ledger.has_standing,
            max_per_signer=len(self.txs) + 1,
            on_admitted=lambda txs: None,
        )


def run_rpc(r: Round) -> None:
    """The RPC batch handler's work per tx once the body is read: JSON, parse, admit, answer. A
    tree whose NodeApi has `submit_many` admits each parsed chunk in one mempool pass; an older
    one admits tx by tx (node/rpc/handlers.py, `submit_batch`, as each tree has it)."""
    pool = r.mempool()
    height = r.ledger.height + 1
    for body in r.rpc_bodies:
        results: list[dict[str, Any]] = []
        parsed: list[Tx] = []
        for raw in json.loads(body)["txs"]:
            try:
                tx = tx_from_json(raw)
                if not BATCHED:
                    pool.add(tx, height)
            except (ApiError, TxError) as e:
                results.append({"error": {"code": e.code, "message": e.message}})
            else:
                parsed.append(tx)
                results.append({"tx_id": tx.tx_id, "status": "pending"})
        if BATCHED:
            assert not any(pool.add_many(parsed, height))
        dumps({"results": results})


def run_gossip(r: Round) -> Mempool:
    pool = r.mempool()
    height = r.ledger.height + 1
    for raw in r.gossip_frames:
        msg = parse_wire(decode(raw)["body"])
        assert isinstance(msg, TxGossip) and not msg.refused
        results = pool.add_many(msg.txs, height, gossip=False)
        assert all(e is None for e in results), [e for e in results if e is not None][:1]
    return pool


def run_block(r: Round, pool: Mempool) -> None:
    for raw in r.block_frames:
        msg = parse_wire(decode(raw)["body"])
        assert isinstance(msg, BlockPush)
        check_before_execution(r, msg.block, pool)


def check_before_execution(r: Round, block: Block, pool: Mempool) -> None:
    """Ledger.validate's checks before execution, as this tree makes them: a tree whose validate
    takes `pending` skips the committed-already lookup of the mempool's txs."""
    trusted = {t.tx_id for t in block.txs if pool.verified(t)}
    pending = trusted if SKIPS_PENDING else frozenset()
    committed_at = r.ledger._committed_at
    check_block(
        block, Parent(r.c.genesis.chain_id, r.ledger.height, r.ledger.prev_hash),
        r.ledger.validator_set_at(block.height), r.c.genesis.params,
        signature_ok=lambda _, tx: tx.tx_id in trusted or tx.signature_valid(),
        committed_at=lambda tx_id: None if tx_id in pending else committed_at(tx_id),
    )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=4400)
    ap.add_argument("--frame", type=int, default=440)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the measured phases here")
    opts = ap.parse_args()
    collect_cycles_rarely()  # as the node does
    root = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    c = make_consortium()
    ledger = Ledger.open(root / "node", c.genesis)
    try:
        r = Round(ledger, c, make_txs(c, opts.txs, ledger.height + 1), opts.frame)
        # the signature checks alone (the same in every tree: once per tx per node, which stays)
        verify_us = statistics.median(1e6 * timed(partial(verify_signatures, r.txs))[0] / opts.txs for _ in range(3))
        profile = cProfile.Profile() if opts.profile else None
        spent: dict[str, list[float]] = {name: [] for name in PHASES}
        for _ in range(opts.rounds):
            if profile is not None:
                profile.enable()
            # a node meets each tx first by RPC or by gossip, so neither finds it in the parse memo
            tx_module._recent.clear()
            s_rpc, _ = timed(lambda: run_rpc(r))
            tx_module._recent.clear()
            s_gossip, pool = timed(lambda: run_gossip(r))
            s_block, _ = timed(partial(run_block, r, pool))  # type: ignore[arg-type]
            if profile is not None:
                profile.disable()
            for name, s in zip(PHASES, (s_rpc, s_gossip, s_block), strict=True):
                spent[name].append(1e6 * s / opts.txs)
        if profile is not None:
            profile.dump_stats(opts.profile)
    finally:
        ledger.close()
        shutil.rmtree(root, ignore_errors=True)
    parts = [f"{name} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" for name, v in spent.items()]
    total = sum(statistics.median(v) for v in spent.values())
    print(" ".join(parts), f"total {total:.1f} us/tx (process CPU, median of {opts.rounds} rounds)")
    rest = total - 2 * verify_us
    print(f"of which Ed25519: {verify_us:.1f} us/tx in rpc and again in gossip; all else {rest:.1f} us/tx")


if __name__ == "__main__":
    main()
