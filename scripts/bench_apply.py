"""Apply-path benchmark: signature check + execute + state root + synced commit, per 1,000-tx block.

    python scripts/bench_apply.py [--txs N] [--state N] [--batch N] [--workers N] [--json-out FILE]

The initial state (N assets) is produced by executing unsigned registrations straight into one
SMT batch update with the genesis state (the height-0 tree holds them all), not by committing
blocks, so the run starts in seconds (about a minute for 1,000,000). Then blocks of
register/transfer txs (half each) go through Ledger.propose/commit with a real certificate.
`--phases N` also reports the per-block times of N equal slices of the run, so that a cost that
grows with the store (the database's compactions) shows as a trend.
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
from contracts.genesis_state import genesis_writes
from node.runtime.ledger import Ledger

CLASS = "warehouse_receipt"


def _register_args(asset_id: str, owner: str) -> dict:
    return {"asset_id": asset_id, "class": CLASS, "owner": owner, "doc_hash": H(asset_id.encode()).hex(), "meta": {}}


def initial_writes(c: Consortium, n: int) -> tuple[dict[bytes, bytes], str]:
    """The genesis state plus n assets (owned round-robin by the users), with the tree of height 0
    holding them all; and that tree's root."""
    g = genesis_state(c.genesis)
    writes = {k: v for k, v in g.writes.items() if v is not None and not k.startswith(smt.PREFIXES)}
    view = MemoryView(base=_Bytes(writes))
    state: dict[str, object] = dict(genesis_writes(c.genesis))
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
    changes = {k.encode(): canonical(v) for k, v in state.items() if v is not None}
    root, nodes = smt.update(smt.EMPTY_REF_ROOT, changes, lambda key: None, 0)
    writes.update({state_key(k.decode()): v for k, v in changes.items()})
    writes.update(nodes)
    return writes, root


class _SeededLedger(Ledger):
    """A ledger whose height-0 state is the seeded one: Ledger takes the genesis state's root
    while no block is committed, and the seeded tree has another."""

    def __init__(self, store: Store, genesis: object, initial_root: str) -> None:
        super().__init__(store, genesis)  # type: ignore[arg-type]
        self._initial_root = initial_root

    @property
    def state_root(self) -> str:
        head = self.store.head
        return head.state_root if head is not None else self._initial_root


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
    held: dict[int, int] = {}  # asset j -> index of the user owning it now (a state smaller than the run's transfers moves some twice)
    for b in range(0, total, batch):
        txs = []
        height = start_height + b // batch
        for i in range(b, min(b + batch, total)):
            if i % 2 == 0:
                tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register",
                             args=_register_args(f"B-{i}", c.users[i % 8].public), expires=height + 100, nonce=f"r{i}")
            else:
                j = (i * 7919) % state_size
                owner = held.get(j, j % len(c.users))
                held[j] = (owner + 1) % len(c.users)
                tx = sign_tx(c.users[owner], chain_id=c.genesis.chain_id, op="asset.transfer",
                             args={"asset_id": f"A-{j}", "to": c.users[held[j]].public},
                             expires=height + 100, nonce=f"t{i}")
            txs.append(tx)
        blocks.append(txs)
    return blocks


def smt_updates_per_second(store: Store, batch: int, rounds: int = 10) -> float:
    """The tree's own cost: batches of fresh values for existing asset keys, nodes read from memory
    (every node the first round reads is loaded first)."""
    keys = [k[2:] for k, _ in store.iterate(b"s/asset/")][: batch * rounds]
    nodes: dict[bytes, bytes | None] = {}

    def read(key: bytes) -> bytes | None:
        if key not in nodes:
            nodes[key] = store.get(key)
        return nodes[key]

    height = store.height
    for r in range(rounds):  # warm: every node the timed rounds read is in memory
        smt.update(smt.root_at(read, height), {k: b"value-%d" % r for k in keys[r * batch : (r + 1) * batch]}, read, height + 1)
    root = smt.root_at(read, height)
    start = time.perf_counter()
    for r in range(rounds):
        changes = {k: b"value-%d" % r for k in keys[r * batch : (r + 1) * batch]}
        _, writes = smt.update(root, changes, read, height + 1 + r)
        nodes.update(writes)
        root = smt.root_at(read, height + 1 + r)
    return len(keys) / (time.perf_counter() - start)


def phase_rows(per_block: list[tuple[float, float, float, float, float]], phases: int, batch: int) -> list[dict]:
    """Mean per-block times, process CPU (all threads: the least disturbed by other work on a
    shared machine) and the database's compaction traffic (10 MB resolution) for `phases` equal slices of the run."""
    rows = []
    size = max(1, len(per_block) // max(1, phases))
    prev_read = prev_written = prev_cpu = 0.0
    for i in range(0, len(per_block), size):
        part = per_block[i : i + size]
        read, written, cpu = part[-1][2], part[-1][3], part[-1][4]
        rows.append({
            "blocks": f"{i + 1}-{i + len(part)}",
            "execute_ms": round(1000 * sum(p[0] for p in part) / len(part), 1),
            "commit_ms": round(1000 * sum(p[1] for p in part) / len(part), 1),
            "compaction_mb_read": round((read - prev_read) / len(part), 2),
            "compaction_mb_written": round((written - prev_written) / len(part), 2),
            "process_cpu_ms": round(1000 * (cpu - prev_cpu) / len(part), 1),
        })
        prev_read, prev_written, prev_cpu = read, written, cpu
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=20_000)
    ap.add_argument("--state", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=0, help="signature-verify processes overlapping execution (0: in line)")
    ap.add_argument("--phases", type=int, default=4, help="report per-block times for this many slices of the run")
    ap.add_argument("--json-out", type=Path)
    opts = ap.parse_args()

    c = make_consortium()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    pool = ProcessPoolExecutor(opts.workers) if opts.workers > 0 else None
    try:
        t0 = time.perf_counter()
        writes, root = initial_writes(c, opts.state)
        store = Store.create_or_open(tmp / "node", c.genesis, initial_writes=writes)
        del writes
        store.compact()  # the seeded state settled into the database's tables, as an aged store's is
        ledger = _SeededLedger(store, c.genesis, root)
        setup = time.perf_counter() - t0
        blocks = make_txs(c, opts.txs, opts.state, 1, opts.batch)
        if pool is not None:
            verify_batch(blocks[0][:8], pool, opts.workers)  # start the workers outside the timing

        t_verify = t_exec = t_commit = 0.0
        ok = rejected = 0
        # execute, commit, compaction MB read and written, process CPU (every thread: RocksDB compacts in its own)
        per_block: list[tuple[float, float, float, float, float]] = []
        cpu_start = time.process_time()
        base_read, base_written = store.compaction_mb()
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
            read_mb, written_mb = store.compaction_mb()
            per_block.append((d - b, e - d, read_mb - base_read, written_mb - base_written, time.process_time() - cpu_start))
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
            "phases": phase_rows(per_block, opts.phases, opts.batch),
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
        print(f"{'slice':<8}{'execute ms':>12}{'commit ms':>12}{'CPU ms':>10}{'compaction MB read/written per block':>40}")
        for row in result["phases"]:
            print(f"{row['blocks']:<8}{row['execute_ms']:>12}{row['commit_ms']:>12}{row['process_cpu_ms']:>10}"
                  f"{row['compaction_mb_read']:>28} / {row['compaction_mb_written']}")
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
