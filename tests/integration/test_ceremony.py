"""The genesis ceremony end to end: no one holds every key, and the consortium it forms runs.

Four validator institutions and an issuer-only institution each create their keys in their own
directory and hand over a signed request; a coordinator assembles the genesis from the requests
alone (its directory never holds a private key); every institution verifies the result and
prints the same hash; each validator institution writes its own node config, and four node
processes, each from its own institution's directory, commit the issuer's transaction.

Ports come from a range of their own (tests/ports.py), apart from the other integration tests'.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ports
import pytest
from click.testing import CliRunner, Result
from cluster import free_base_port, wait_for

from chain.crypto import KeyPair, load_key_file
from chain.encoding import hash_value
from node.cli.main import main
from node.devnet.localnet import node_pids, start_node, stop_pid, wait_ready
from node.sdk.client import Client, sign

CHAIN = "ceremony-test"
BANKS = ["Harbour Bank", "Northgate Warehousing", "City Land Registry", "Meridian Trust"]
ISSUER = "Northgate Receipts Desk"


def titlechain(*args: str) -> Result:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, f"titlechain {' '.join(args)}:\n{r.output}"
    return r


def institution_dirs(root: Path) -> list[Path]:
    return [root / f"bank-{i}" for i in range(len(BANKS))] + [root / "issuer"]


def run_requests(root: Path, base: int) -> None:
    """Each institution, on its own machine: its keys and its signed request."""
    for i, (name, d) in enumerate(zip(BANKS, institution_dirs(root), strict=False)):
        titlechain("ceremony", "request", "--chain-id", CHAIN, "--name", name, "--role", "member",
                   "--role", "validator", "--node-id", d.name, "--address", f"127.0.0.1:{base + 2 * i}",
                   "--keys-dir", str(d / "keys"), "--out", str(d / "request.json"))
    d = institution_dirs(root)[-1]
    titlechain("ceremony", "request", "--chain-id", CHAIN, "--name", ISSUER, "--role", "issuer:warehouse_receipt",
               "--keys-dir", str(d / "keys"), "--out", str(d / "request.json"))


def assemble(root: Path) -> Path:
    """The coordinator receives the request files (only those) and assembles."""
    coord = root / "coordinator"
    (coord / "inbox").mkdir(parents=True)
    for d in institution_dirs(root):
        shutil.copy(d / "request.json", coord / "inbox" / f"{d.name}.json")
    inbox = sorted((coord / "inbox").iterdir())
    titlechain("ceremony", "assemble", *[a for p in inbox for a in ("--request", str(p))], "--chain-id", CHAIN,
               "--param", "view_timeout_ms=1500", "--param", "batch_delay_ms=10", "--out", str(coord / "out"))
    return coord


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def private_seeds(root: Path) -> list[str]:
    return [load_key_file(k).seed.hex() for d in institution_dirs(root) for k in (d / "keys").iterdir()]


@pytest.fixture
def processes() -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        yield procs
    finally:
        outcomes = [stop_pid(p.pid, str(config)) for p, config in procs]
        assert all(o == "stopped" for o in outcomes), outcomes
        assert not any(node_pids(str(config)) for _, config in procs), "a node outlived the test"


def test_ceremony_forms_a_consortium_no_one_holds_every_key_of(tmp_path: Path, processes: list) -> None:
    base = free_base_port(2 * len(BANKS), *ports.CEREMONY)
    run_requests(tmp_path, base)
    coord = assemble(tmp_path)

    # the coordinator's directory holds no private key, in any file
    seeds = private_seeds(tmp_path)
    assert len(seeds) == 2 * len(BANKS) + 1
    for f in coord.rglob("*"):
        if f.is_file():
            text = f.read_text()
            assert '"private"' not in text and not any(s in text for s in seeds), f"{f} holds a private key"

    # every institution checks what it received and prints the same hash
    hashes = set()
    for d in institution_dirs(tmp_path):
        for name in ("genesis.json", "manifest.json"):
            shutil.copy(coord / "out" / name, d / name)
        r = titlechain("genesis", "verify", "--genesis", str(d / "genesis.json"),
                       "--manifest", str(d / "manifest.json"), "--request", str(d / "request.json"))
        assert "exactly as you signed it" in r.output
        h = titlechain("genesis", "hash", str(d / "genesis.json")).output.strip()
        assert f"genesis hash {h}" in r.output
        hashes.add(h)
    assert len(hashes) == 1

    # each validator institution writes its own config from its own keys, and runs its node
    rpcs = []
    for i, d in enumerate(institution_dirs(tmp_path)[: len(BANKS)]):
        config = d / "node" / "config.json"
        titlechain("ceremony", "node-config", "--keys-dir", str(d / "keys"), "--genesis", str(d / "genesis.json"),
                   "--rpc-port", str(base + 2 * i + 1), "--out", str(config))
        processes.append((start_node(config, d / "node" / "stdout.log"), config))
        rpcs.append(f"http://127.0.0.1:{base + 2 * i + 1}")

    def dead() -> str | None:
        return next((f"{c} exited with {p.returncode}; its log ends:\n{log_tail(c.parent / 'stdout.log')}"
                     for p, c in processes if p.poll() is not None), None)

    wait_ready(rpcs, deadline_s=60, alive=dead)

    # the issuer-only institution registers an asset with its own key; every node commits it
    issuer = load_key_file(institution_dirs(tmp_path)[-1] / "keys" / "account.json")
    owner = KeyPair.generate().public
    with Client(rpcs[0], timeout=10) as c:
        status = c.status()
        assert status["chain_id"] == CHAIN
        args = {"asset_id": "WR-CEREMONY-1", "class": "warehouse_receipt", "owner": owner,
                "doc_hash": hashlib.sha256(b"ceremony receipt").hexdigest(), "meta": {}}
        tx = sign(issuer, CHAIN, "asset.register", args, expires=status["height"] + 100)
        receipt = c.submit(tx, wait=True, timeout=30)["receipt"]
    assert receipt["status"] == "ok", receipt
    (genesis_hash,) = hashes
    for rpc in rpcs:
        with Client(rpc, timeout=10) as c:
            assert hash_value(c.genesis()) == genesis_hash  # each node runs the verified genesis
            wait_for(lambda c=c: c.asset("WR-CEREMONY-1")["owner"] == owner, 15, f"the asset on {rpc}")
    manifest = json.loads((coord / "out" / "manifest.json").read_text())
    assert {r["name"] for r in manifest["institutions"]} == {*BANKS, ISSUER}
