"""`titlechain init`: a consortium directory from a seed, and node configs that load back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from chain.crypto import load_key_file
from chain.genesis import Genesis
from node.cli.main import main
from node.devnet.provision import DEFAULT_SEED, Consortium, ProvisionError, init_consortium
from node.runtime.config import ConfigError, NodeConfig


def test_init_writes_a_consistent_consortium(tmp_path: Path) -> None:
    c = init_consortium(tmp_path / "c", validators=4)
    genesis = Genesis.load(c.genesis)
    assert genesis.validators.n == 4 and genesis.validators.f == 1
    for n, v in zip(c.nodes, genesis.validators.validators, strict=True):
        cfg = NodeConfig.load(n.config)
        assert cfg.node_id == v.node_id
        assert load_key_file(cfg.key).public == v.public
        assert cfg.peer_listen == v.address
        assert Genesis.load(cfg.genesis).hash == genesis.hash
        assert cfg.rpc_host == "127.0.0.1"
    members = {load_key_file(p).public for p in c.key_paths("members")}
    assert members == set(genesis.members)
    issuers = [load_key_file(p).public for p in c.key_paths("issuers")]
    assert all(genesis.roles[i][0]["role"] == "issuer" for i in issuers)
    for p in c.root.rglob("keys/*/*.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    # validator node keys and institution member keys are distinct keys
    assert not members & genesis.validators.publics
    # seed assets resolve to accounts that hold keys
    accounts = {load_key_file(p).public for group in c.keys for p in c.key_paths(group)}
    assert c.assets and all(a["owner_account"] in accounts and a["issuer_account"] in issuers for a in c.assets)


def test_more_validators_than_seed_institutions(tmp_path: Path) -> None:
    c = init_consortium(tmp_path / "c", validators=7)
    assert len(Genesis.load(c.genesis).validators.validators) == 7
    ports = {NodeConfig.load(n.config).peer_port for n in c.nodes} | {NodeConfig.load(n.config).rpc_port for n in c.nodes}
    assert len(ports) == 14


def test_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("")
    with pytest.raises(ProvisionError, match="not empty"):
        init_consortium(tmp_path / "c")


def test_refuses_a_seed_with_an_unknown_party(tmp_path: Path) -> None:
    seed = json.loads(DEFAULT_SEED.read_text())
    seed["assets"][0]["owner"] = "nobody"
    (tmp_path / "seed.json").write_text(json.dumps(seed))
    with pytest.raises(ProvisionError, match="unknown owner 'nobody'"):
        init_consortium(tmp_path / "c", seed_path=tmp_path / "seed.json")


def test_config_refuses_unknown_and_bad_fields(tmp_path: Path) -> None:
    base = {"node_id": "v0", "genesis": "g.json", "key": "k.json", "data_dir": "d", "peer_listen": "127.0.0.1:1"}
    p = tmp_path / "c.json"
    p.write_text(json.dumps({**base, "rpc_listne": "127.0.0.1:2"}))
    with pytest.raises(ConfigError, match="rpc_listne"):
        NodeConfig.load(p)
    p.write_text(json.dumps({**base, "peer_listen": "no-port"}))
    with pytest.raises(ConfigError, match="peer_listen"):
        NodeConfig.load(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        NodeConfig.load(p)
    p.write_text(json.dumps({**base, "peer_addresses": {"v1": "relay-without-port"}}))
    with pytest.raises(ConfigError, match="v1: must be host:port"):
        NodeConfig.load(p)
    p.write_text(json.dumps({**base, "peer_addresses": {"v1": "10.0.0.9:26600"}}))
    assert NodeConfig.load(p).peer_addresses == {"v1": "10.0.0.9:26600"}


def test_config_exposes_the_rpc_beyond_loopback_only_with_tokens(tmp_path: Path) -> None:
    base = {"node_id": "v0", "genesis": "g.json", "key": "k.json", "data_dir": "d", "peer_listen": "0.0.0.0:1"}
    p = tmp_path / "c.json"
    for host in ("0.0.0.0", "10.1.2.3", "[::]"):
        p.write_text(json.dumps({**base, "rpc_listen": f"{host}:2"}))
        with pytest.raises(ConfigError, match="rpc_tokens"):
            NodeConfig.load(p)
    token = {"token": "s" * 24, "scopes": ["read"]}
    p.write_text(json.dumps({**base, "rpc_listen": "0.0.0.0:2", "rpc_tokens": [token]}))
    p.chmod(0o600)  # it holds a token
    assert NodeConfig.load(p).rpc_host == "0.0.0.0"
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "[::1]"):
        p.write_text(json.dumps({**base, "rpc_listen": f"{host}:2"}))
        assert NodeConfig.load(p).rpc_host == host


def test_cli_init(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["init", "--validators", "4", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert len(Consortium.load(tmp_path / "c").nodes) == 4
    r = CliRunner().invoke(main, ["init", "--out", str(tmp_path / "c")])
    assert r.exit_code == 1 and "not empty" in r.output
    r = CliRunner().invoke(main, ["init", "--validators", "0", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2
