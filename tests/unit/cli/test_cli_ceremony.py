"""`titlechain ceremony …` and `titlechain genesis …`: files, modes, exit codes (0/1/2)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from chain.crypto import load_key_file
from node.cli.main import main
from node.runtime.config import NodeConfig


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def request(tmp: Path, i: int, *extra: str, validator: bool = True) -> Path:
    out = tmp / f"inst{i}" / "request.json"
    args = ["ceremony", "request", "--chain-id", "acme-1", "--name", f"Bank {i}", "--role", "member",
            "--keys-dir", str(tmp / f"inst{i}" / "keys"), "--out", str(out)]
    if validator:
        args += ["--role", "validator", "--node-id", f"bank-{i}", "--address", f"127.0.0.1:{46000 + i}"]
    r = run(*args, *extra)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def assembled(tmp_path: Path) -> Path:
    reqs = [request(tmp_path, i) for i in range(4)]
    r = run("ceremony", "assemble", *[a for p in reqs for a in ("--request", str(p))], "--chain-id", "acme-1",
            "--time", "1800000000000", "--out", str(tmp_path / "coord"))
    assert r.exit_code == 0, r.output
    return tmp_path


def test_request_creates_private_keys_and_a_public_request(tmp_path: Path) -> None:
    out = request(tmp_path, 0)
    keys = tmp_path / "inst0" / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in ("account.json", "validator.json"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    text = out.read_text()
    for name in ("account.json", "validator.json"):
        assert load_key_file(keys / name).seed.hex() not in text
    body = json.loads(text)["body"]
    assert body["account"] == load_key_file(keys / "account.json").public
    assert body["validator"]["public"] == load_key_file(keys / "validator.json").public


def test_request_reuses_keys_and_never_overwrites(tmp_path: Path) -> None:
    first = json.loads(request(tmp_path, 0).read_text())
    again = run("ceremony", "request", "--chain-id", "acme-1", "--name", "Bank 0", "--role", "member",
                "--keys-dir", str(tmp_path / "inst0" / "keys"), "--out", str(tmp_path / "inst0" / "request.json"))
    assert again.exit_code == 1 and "already exists" in again.output
    second = tmp_path / "inst0" / "request2.json"
    r = run("ceremony", "request", "--chain-id", "acme-1", "--name", "Bank 0", "--role", "member",
            "--keys-dir", str(tmp_path / "inst0" / "keys"), "--out", str(second))
    assert r.exit_code == 0 and "existing key" in r.output
    assert json.loads(second.read_text())["body"]["account"] == first["body"]["account"]


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "king"],
        ["--role", "issuer"],  # an issuer names its classes
        ["--role", "issuer:Bad Class"],
        ["--role", "validator"],  # without --node-id and --address
        ["--role", "member", "--node-id", "x"],
        ["--role", "member", "--name", "Bank\u202eA"],
        ["--role", "validator", "--node-id", "b", "--address", "0.0.0.0:1"],
    ],
)
def test_bad_request_options_are_usage_errors_and_create_no_key(tmp_path: Path, args: list[str]) -> None:
    base = ["ceremony", "request", "--chain-id", "acme-1", "--name", "Bank 0", "--keys-dir", str(tmp_path / "k"),
            "--out", str(tmp_path / "r.json")]
    r = run(*base, *args)
    assert r.exit_code == 2, r.output
    assert not (tmp_path / "k").exists() and not (tmp_path / "r.json").exists()


def test_assemble_refuses_three_validators_and_a_forged_request(tmp_path: Path) -> None:
    reqs = [request(tmp_path, i) for i in range(4)]
    r = run("ceremony", "assemble", *[a for p in reqs[:3] for a in ("--request", str(p))], "--chain-id", "acme-1",
            "--out", str(tmp_path / "c1"))
    assert r.exit_code == 1 and "BFT needs n >= 3f+1" in r.output
    assert not (tmp_path / "c1").exists()
    forged = json.loads(reqs[3].read_text())
    forged["body"]["roles"].append({"role": "regulator"})
    reqs[3].write_text(json.dumps(forged))
    r = run("ceremony", "assemble", *[a for p in reqs for a in ("--request", str(p))], "--chain-id", "acme-1",
            "--out", str(tmp_path / "c2"))
    assert r.exit_code == 1 and "sig is not the account's signature" in r.output
    (tmp_path / "junk.json").write_text("{not json")
    r = run("ceremony", "assemble", "--request", str(tmp_path / "junk.json"), "--chain-id", "acme-1",
            "--out", str(tmp_path / "c3"))
    assert r.exit_code == 2 and "not JSON" in r.output


def verify(genesis: Path, manifest: Path, *request: Path) -> Result:
    return run("genesis", "verify", "--genesis", str(genesis), "--manifest", str(manifest),
               *[a for r in request for a in ("--request", str(r))])


def node_config(root: Path, inst: str, port: int, out: Path) -> Result:
    return run("ceremony", "node-config", "--keys-dir", str(root / inst / "keys"),
               "--genesis", str(root / "coord" / "genesis.json"), "--rpc-port", str(port), "--out", str(out))


def test_verify_and_hash(assembled: Path) -> None:
    coord = assembled / "coord"
    manifest = coord / "manifest.json"
    h = run("genesis", "hash", str(coord / "genesis.json"))
    assert h.exit_code == 0 and len(h.output.strip()) == 64
    for i in range(4):
        r = verify(coord / "genesis.json", manifest, assembled / f"inst{i}" / "request.json")
        assert r.exit_code == 0, r.output
        assert f"genesis hash {h.output.strip()}" in r.output
    # a genesis edited after assembly: exit 1
    doc = json.loads((coord / "genesis.json").read_text())
    doc["validators"][0]["address"] = "evil.example:1"
    (assembled / "edited.json").write_text(json.dumps(doc))
    r = verify(assembled / "edited.json", manifest)
    assert r.exit_code == 1 and "genesis INVALID" in r.output
    # a genesis that is not a genesis: a usage error
    (assembled / "bad.json").write_text("[]")
    assert verify(assembled / "bad.json", manifest).exit_code == 2
    assert run("genesis", "hash", str(assembled / "bad.json")).exit_code == 2


def test_node_config_from_own_keys(assembled: Path) -> None:
    out = assembled / "inst2" / "node" / "config.json"
    r = node_config(assembled, "inst2", 46102, out)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    cfg = NodeConfig.load(out)
    assert cfg.node_id == "bank-2" and cfg.peer_listen == "127.0.0.1:46002" and cfg.rpc_listen == "127.0.0.1:46102"
    assert load_key_file(cfg.key).public == load_key_file(assembled / "inst2" / "keys" / "validator.json").public
    assert cfg.genesis.resolve() == (assembled / "coord" / "genesis.json").resolve()
    again = node_config(assembled, "inst2", 46102, out)
    assert again.exit_code == 1 and "already exists" in again.output
    # a key dir whose node key is not in this genesis
    request(assembled, 9)
    r = node_config(assembled, "inst9", 46109, assembled / "x.json")
    assert r.exit_code == 1 and "not a validator of this genesis" in r.output


def test_init_says_it_is_for_demos_only(tmp_path: Path) -> None:
    warning = "every key in one directory: for a demo or a local test consortium only"
    assert warning in " ".join(run("init", "--help").output.split())
    r = run("init", "--out", str(tmp_path / "c"))
    assert r.exit_code == 0 and warning in r.output and "docs/operations.md" in r.output
