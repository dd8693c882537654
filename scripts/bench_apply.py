"""Apply-path benchmark: signature check + execute + state root + synced commit, per 1,000-tx block.

    python scripts/bench_apply.py [--txs N] [--state N] [--batch N] [--workers N] [--json-out FILE]

The initial state (N assets) is produced by executing unsigned registrations straight into one
SMT batch update, not by committing blocks, so the run starts in seconds. Then blocks of
register/transfer txs (half each) go through Ledger.propose/commit with a real certificate.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from chain import smt
from chain.block import Certificate, sign_commit
from chain.crypto import Domain, verify
from chain.devnet import Consortium, make_consortium
from chain.encoding import H, canonical
from chain.store import Store
from chain.tx import Tx, parse_tx, sign_tx
from contracts import MemoryView, execute
from contracts.apply import OWNER_PREFIX, genesis_state, owner_key, state_key
from node.runtime.ledger import Ledger

CLASS = "warehouse_receipt"


def _register_args(asset_id: str, owner: str) -> dict:
    return {"asset_id": asset_id, "class": CLASS, "owner": owner, "doc_hash": H(asset_id.encode()).hex(), "meta": {}}


def initial_writes(c: Consortium, n: int) -> dict[bytes, bytes]:
    """The genesis state plus n assets (owned round-robin by the users), with their tree nodes."""
    g = genesis_state(c.genesis)
    writes = {k: v for k, v in g.writes.items() if v is not None}
    view = MemoryView(base=_Bytes(writes))
    state: dict[str, object] = {}
    for i in range(n):
        body = {
            "chain_id": c.genesis.chain_id,
            "signer": c.issuer.public,
            "op": "asset.register",
            "args": _register_args(f"A-{i}", c.users[i % len(c.users)].public),
            "nonce": f"init-{i}",
            "expires": 1,
        }
        tx = parse_tx({"body": body, "sig": "00" * 64})  # execute does not look at signatures
        w, receipt = execute(view, tx, 0, i)
        assert receipt["status"] == "ok", receipt
        state.update(w)
        writes[owner_key(c.users[i % len(c.users)].public, f"A-{i}")] = b""
    changes = {k.encode(): canonical(v) for k, v in state.items()}
    root, nodes = smt.update(g.state_root, changes, lambda h: writes.get(smt.node_key(h)))
    writes.update({state_key(k.decode()): v for k, v in changes.items()})
    writes.update(nodes)
    return writes


class _Bytes:
    """Decoded view of state values inside a raw write dict (initial state only)."""

    def __init__(self, raw: dict[bytes, bytes]) -> None:
        from chain.encoding import decode

        self._raw, self._decode = raw, decode

    def get(self, key: str) -> object:
        v = self._raw.get(state_key(key))
        return None if v is None else self._decode(v)


def _verify_chunk(items: list[tuple[str, bytes, str]]) -> bool:
    return all(verify(signer, Domain.TX, body, sig) for signer, body, sig in items)


def submit_verify(txs: list[Tx], pool: ProcessPoolExecutor, workers: int) -> list[Future[bool]]:
    items = [(t.signer, t.body_bytes, t.sig) for t in txs]
    size = (len(items) + workers - 1) // workers
    return [pool.submit(_verify_chunk, items[i : i + size]) for i in range(0, len(items), size)]


def verify_batch(txs: list[Tx], pool: ProcessPoolExecutor | None, workers: int) -> bool:
    if pool is None:
        return _verify_chunk([(t.signer, t.body_bytes, t.sig) for t in txs])
    return all(f.result() for f in submit_verify(txs, pool, workers))


def make_txs(c: Consortium, total: int, state_size: int, start_height: int, batch: int) -> list[list[Tx]]:
    """Blocks of txs: even ones register new assets, odd ones transfer a pre-built asset once."""
    blocks = []
    owners = {u.public: u for u in c.users}
    for b in range(0, total, batch):
        txs = []
        height = start_height + b // batch
        for i in range(b, min(b + batch, total)):
            if i % 2 == 0:
                tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register",
                             args=_register_args(f"B-{i}", c.users[i % 8].public), expires=height + 100, nonce=f"r{i}")
            else:
                j = (i * 7919) % state_size
                owner = owners[c.users[j % len(c.users)].public]
                tx = sign_tx(owner, chain_id=c.genesis.chain_id, op="asset.transfer",
                             args={"asset_id": f"A-{j}", "to": c.users[(j + 1) % len(c.users)].public},
                             expires=height + 100, nonce=f"t{i}")
            txs.append(tx)
        blocks.append(txs)
    return blocks


def smt_updates_per_second(store: Store, batch: int, rounds: int = 10) -> float:
    """The tree's own cost: batches of fresh values for existing asset keys, nodes read from memory."""
    nodes = dict(store.iterate(smt.NODE_PREFIX))
    root = store.head.state_root if store.head else smt.EMPTY_ROOT
    keys = [k[2:] for k, _ in store.iterate(b"s/asset/")][: batch * rounds]
    start = time.perf_counter()
    for r in range(rounds):
        changes = {k: b"value-%d" % r for k in keys[r * batch : (r + 1) * batch]}
        root, writes = smt.update(root, changes, lambda h: nodes.get(smt.node_key(h)))
        nodes.update(writes)
    return len(keys) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=20_000)
    ap.add_argument("--state", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=0, help="signature-verify processes overlapping execution (0: in line)")
    ap.add_argument("--json-out", type=Path)
    opts = ap.parse_args()

    c = make_consortium()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    pool = ProcessPoolExecutor(opts.workers) if opts.workers > 0 else None
    try:
        t0 = time.perf_counter()
        writes = initial_writes(c, opts.state)
        store = Store.create_or_open(tmp / "node", c.genesis, initial_writes=writes)
        ledger = Ledger(store, c.genesis)
        setup = time.perf_counter() - t0
        blocks = make_txs(c, opts.txs, opts.state, 1, opts.batch)
        if pool is not None:
            verify_batch(blocks[0][:8], pool, opts.workers)  # start the workers outside the timing

        t_verify = t_exec = t_commit = 0.0
        ok = rejected = 0
        start = time.perf_counter()
        # with a pool, block k+1's signatures are checked while block k executes and commits
        pending = submit_verify(blocks[0], pool, opts.workers) if pool is not None else []
        for k, txs in enumerate(blocks):
            a = time.perf_counter()
            if pool is None:
                assert verify_batch(txs, None, 1)
            else:
                assert all(f.result() for f in pending)
                if k + 1 < len(blocks):
                    pending = submit_verify(blocks[k + 1], pool, opts.workers)
            b = time.perf_counter()
            height = ledger.height + 1
            block = ledger.propose(txs, 0, ledger.validator_set_at(height).primary(0).public, height)
            d = time.perf_counter()
            vset = ledger.validator_set_at(height)
            signers = c.validator_keys[: vset.quorum]
            view = block.header.view
            sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, view, block.block_hash) for k in signers}
            ledger.commit(block, Certificate.build(height, view, block.block_hash, sigs))
            e = time.perf_counter()
            t_verify, t_exec, t_commit = t_verify + b - a, t_exec + d - b, t_commit + e - d
            receipts = store.get_receipts(height) or []
            ok += sum(r["status"] == "ok" for r in receipts)
            rejected += sum(r["status"] != "ok" for r in receipts)
        elapsed = time.perf_counter() - start
        n = sum(len(t) for t in blocks)

        flat = [t for txs in blocks for t in txs]
        v0 = time.perf_counter()
        assert verify_batch(flat, pool, opts.workers)
        verify_only = n / (time.perf_counter() - v0)
        assert ok == n and rejected == 0, (ok, rejected)
        owned = sum(1 for _ in store.iterate(OWNER_PREFIX))
        smt_rate = smt_updates_per_second(store, opts.batch)

        result = {
            "tps": round(n / elapsed),
            "verify_only_tps": round(verify_only),
            "batch": opts.batch,
            "state_size": opts.state,
            "txs": n,
            "blocks": len(blocks),
            "seconds": round(elapsed, 3),
            "workers": opts.workers,
            "ms_per_block": {
                "verify_wait": round(1000 * t_verify / len(blocks), 2),
                "execute_and_root": round(1000 * t_exec / len(blocks), 2),
                "commit": round(1000 * t_commit / len(blocks), 2),
            },
            "smt_updates_per_s": round(smt_rate),
            "setup_seconds": round(setup, 2),
            "assets_at_end": owned,
        }
        print(f"apply path: {n} txs in {len(blocks)} blocks of {opts.batch} on a state of {opts.state:,} assets")
        print(f"{'stage':<22}{'ms/block':>10}")
        for k, v in result["ms_per_block"].items():
            print(f"{k:<22}{v:>10}")
        print(f"{'end to end':<22}{1000 * elapsed / len(blocks):>10.2f}   -> {result['tps']:,} tx/s")
        print(f"{'verify only':<22}{'':>10}   -> {result['verify_only_tps']:,} tx/s ({opts.workers} worker(s))")
        print(f"state tree alone: {smt_rate:,.0f} key updates/s in batches of {opts.batch} (nodes in memory)")
        print(f"setup (initial state): {setup:.1f} s")
        if opts.json_out:
            opts.json_out.write_text(json.dumps(result, indent=2) + "\n")
        store.close()
    finally:
        if pool is not None:
            pool.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
