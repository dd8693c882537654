"""Join by replay vs join by state sync, on a chain of at least 100,000 committed txs.

    python scripts/bench_state_sync.py [--txs 100000] [--assets 2000] [--block-txs 2000]
                                       [--base-port 27500] [--dir DIR] [--json-out FILE]

1. A 4-validator consortium is provisioned (`titlechain init`), and its chain is built in this
   process, not through consensus: `--assets` registrations, then transfers of those assets among
   eight parties until `--txs` txs are committed, in blocks of `--block-txs`, each proposed,
   validated and committed by a Ledger with a certificate signed by a quorum of the validator keys
   (the fast path scripts/bench_apply.py also takes). The data dir is copied to every validator.
2. Validators 0-2 are started; validator 3 joins with an empty data dir twice: by replay (the
   ordinary catch-up: every block fetched, every signature checked, every tx re-executed), then,
   its data dir emptied again, with `--state-sync`. Each join is timed from the process start to
   the moment its RPC reports the chain's height and ready.

The chain is a title registry's usual shape: many txs over a bounded set of assets, so the state
at the head is far smaller than the history; both figures are printed with the state's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from chain.block import Block, Certificate, sign_commit
from chain.crypto import KeyPair, load_key_file
from chain.encoding import H
from chain.genesis import Genesis
from chain.tx import Tx, sign_tx
from node.devnet.localnet import node_command, start_node, stop_pid, wait_ready
from node.devnet.provision import init_consortium
from node.runtime.config import NodeConfig
from node.runtime.ledger import Ledger
from node.sdk.client import Client

PARTIES = 8


def build_chain(root: Path, txs: int, assets: int, block_txs: int) -> tuple[int, int]:
    """Commit the chain into validator 0's data dir; returns (height, committed txs)."""
    genesis = Genesis.load(root / "genesis.json")
    vkeys = [load_key_file(p) for p in sorted((root / "keys" / "validators").glob("*.json"))]
    issuer = load_key_file(root / "keys" / "issuers" / "northgate-receipts.json")  # issues warehouse_receipt
    parties = [KeyPair.generate() for _ in range(PARTIES)]
    ledger = Ledger.open(_config(root, 0).data_dir, genesis)
    owners: list[int] = []
    done = 0
    try:
        while done < txs:
            height = ledger.height + 1
            batch: list[Tx] = []
            while len(batch) < block_txs and done + len(batch) < txs:
                if len(owners) < assets:
                    batch.append(_register(genesis, issuer, len(owners), parties[len(owners) % PARTIES], height))
                    owners.append(len(owners) % PARTIES)
                    if len(owners) == assets:
                        break  # an owner has standing from the block after its asset's (contracts/standing.py)
                    continue
                a = (done + len(batch)) % assets  # in order: each asset's owner is known when it is signed
                src, dst = owners[a], (owners[a] + 1) % PARTIES
                batch.append(_transfer(genesis, parties[src], a, parties[dst], height))
                owners[a] = dst
            _commit(ledger, genesis, vkeys, batch)
            if len(owners) < assets or done == 0:  # every registration must have gone through
                _check_all_ok(ledger)
            done += len(batch)
            if ledger.height % 10 == 0:
                print(f"  built height {ledger.height}: {done} txs", flush=True)
        return ledger.height, done
    finally:
        ledger.close()


def _check_all_ok(ledger: Ledger) -> None:
    receipts = ledger.store.get_receipts(ledger.height) or []
    bad = [r for r in receipts if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"block {ledger.height}: {len(bad)} txs rejected, e.g. {bad[0]['error']}")


def _register(genesis: Genesis, issuer: KeyPair, i: int, owner: KeyPair, height: int) -> Tx:
    args = {"asset_id": f"A-{i}", "class": "warehouse_receipt", "owner": owner.public,
            "doc_hash": H(b"bench/%d" % i).hex(), "meta": {}}
    return sign_tx(issuer, chain_id=genesis.chain_id, op="asset.register", args=args, expires=height + 100)


def _transfer(genesis: Genesis, owner: KeyPair, i: int, to: KeyPair, height: int) -> Tx:
    return sign_tx(owner, chain_id=genesis.chain_id, op="asset.transfer",
                   args={"asset_id": f"A-{i}", "to": to.public}, expires=height + 100)


def _commit(ledger: Ledger, genesis: Genesis, vkeys: list[KeyPair], txs: list[Tx]) -> None:
    height = ledger.height + 1
    vset = ledger.validator_set_at(height)
    block: Block = ledger.propose(txs, 0, vset.primary(0).public, genesis.time + height)
    ledger.validate(block, {t.tx_id for t in txs})
    keys = [k for k in vkeys if k.public in vset.publics][: vset.quorum]
    sigs = {k.public: sign_commit(k, genesis.chain_id, height, 0, block.block_hash) for k in keys}
    ledger.commit(block, Certificate.build(height, 0, block.block_hash, sigs))


def _config(root: Path, i: int) -> NodeConfig:
    path = sorted((root / "nodes").glob("*/config.json"))[i]
    return NodeConfig.load(path)


def _config_path(root: Path, i: int) -> Path:
    return sorted((root / "nodes").glob("*/config.json"))[i]


def _rpc(root: Path, i: int) -> str:
    return "http://" + _config(root, i).rpc_listen


def time_join(root: Path, head: int, extra: list[str], label: str) -> float:
    """Start validator 3 on an empty data dir; seconds until it is ready at `head`."""
    cfg, path = _config(root, 3), _config_path(root, 3)
    shutil.rmtree(cfg.data_dir, ignore_errors=True)
    log = path.parent / f"{label}.log"
    t0 = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([*node_command(path), *extra], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = t0 + 1800
        with Client(_rpc(root, 3), timeout=2.0) as c:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise SystemExit(f"{label}: the joining node exited ({proc.returncode}); see {log}")
                try:
                    s = c.status()
                    if s["height"] >= head and s.get("ready"):
                        return time.monotonic() - t0
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.05)
        raise SystemExit(f"{label}: not at height {head} after 30 minutes; see {log}")
    finally:
        stop_pid(proc.pid, str(path))


def _sync_summary(root: Path) -> str:
    """What the joining node's log says it fetched (its `state sync: done` line)."""
    log = _config(root, 3).log_file
    for line in reversed(log.read_text().splitlines() if log is not None and log.exists() else []):
        if "state sync: done" in line:
            return json.loads(line)["msg"]
    return "(no 'state sync: done' line in the joining node's log)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=100_000)
    ap.add_argument("--assets", type=int, default=2_000)
    ap.add_argument("--block-txs", type=int, default=2_000)
    ap.add_argument("--base-port", type=int, default=27500)
    ap.add_argument("--dir", type=Path, default=None, help="work here (kept) instead of a temporary dir")
    ap.add_argument("--json-out", type=Path, default=None)
    opts = ap.parse_args()
    root = opts.dir or Path(tempfile.mkdtemp(prefix="titlechain-bench-sync-"))
    init_consortium(root, validators=4, base_port=opts.base_port)
    t0 = time.monotonic()
    head, txs = build_chain(root, opts.txs, opts.assets, opts.block_txs)
    print(f"chain built: {txs} txs in {head} blocks, {time.monotonic() - t0:.1f} s")
    source = _config(root, 0).data_dir
    for i in (1, 2):
        shutil.copytree(source, _config(root, i).data_dir)
    procs = [(start_node(_config_path(root, i), _config_path(root, i).parent / "node.log"), i) for i in range(3)]
    try:
        wait_ready([_rpc(root, i) for i in range(3)])
        replay = time_join(root, head, [], "join-replay")
        print(f"join by replay:     {replay:7.1f} s")
        synced = time_join(root, head, ["--state-sync"], "join-state-sync")
        print(f"join by state sync: {synced:7.1f} s  ({replay / synced:.1f}x faster)")
        print(f"  {_sync_summary(root)}")
    finally:
        for proc, i in procs:
            stop_pid(proc.pid, str(_config_path(root, i)))
    result: dict[str, Any] = {"txs": txs, "height": head, "assets": opts.assets, "replay_s": round(replay, 2),
                              "state_sync_s": round(synced, 2), "speedup": round(replay / synced, 1)}
    print(json.dumps(result))
    if opts.json_out:
        opts.json_out.write_text(json.dumps(result, indent=2) + "\n")
    if opts.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
