"""Files a node or `init` writes: no seed name reaches outside --out, configs (which may hold RPC
tokens) are 0600 and refused on load when group/other-readable with tokens, data dirs are 0700."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from factories import make_consortium

from chain.store import Store
from node.devnet.provision import DEFAULT_SEED, ProvisionError, init_consortium
from node.rpc.models import RpcToken
from node.runtime.config import ConfigError, NodeConfig


@pytest.mark.parametrize(
    ("group", "field", "name"),
    [("issuers", "name", "../../x"), ("parties", "name", "../escape"), ("regulators", "name", "/tmp/x"),
     ("auditors", "name", "a/b"), ("institutions", "node_id", "../../node"), ("issuers", "name", ".hidden"),
     ("issuers", "name", "ok\n"), ("parties", "name", "")],
)
def test_a_seed_name_that_is_no_safe_file_name_is_refused_before_anything_is_written(
    tmp_path: Path, group: str, field: str, name: str
) -> None:
    seed = json.loads(Path(DEFAULT_SEED).read_text())
    entry = {field: name, "name": name, "display": "x", "role": "member", "classes": ["receivable"]}
    seed.setdefault(group, []).append(entry)
    seed_path = tmp_path / "seed.json"
    seed_path.write_text(json.dumps(seed))
    out = tmp_path / "deep" / "er" / "out"
    with pytest.raises(ProvisionError, match="not a safe file name"):
        init_consortium(out, seed_path=seed_path)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["seed.json"]  # nothing written, inside or out


def _config(tmp_path: Path, **over: object) -> NodeConfig:
    return NodeConfig(node_id="v0", genesis=tmp_path / "g.json", key=tmp_path / "k.json", data_dir=tmp_path / "data",
                      peer_listen="127.0.0.1:1", **over)  # type: ignore[arg-type]


def test_configs_are_written_0600_even_over_an_existing_0644_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o644)
    _config(tmp_path, rpc_tokens=(RpcToken(token="s" * 20, scopes=("read",)),)).write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert NodeConfig.load(path).rpc_tokens[0].token == "s" * 20


def test_init_writes_every_config_0600(tmp_path: Path) -> None:
    c = init_consortium(tmp_path / "c", validators=1)
    assert [stat.S_IMODE(n.config.stat().st_mode) for n in c.nodes] == [0o600]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_config_holding_tokens_that_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "config.json"
    _config(tmp_path, rpc_tokens=(RpcToken(token="s" * 20, scopes=("read",)),)).write(path)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        NodeConfig.load(path)


def test_a_config_without_tokens_may_be_readable(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    _config(tmp_path).write(path)
    path.chmod(0o644)
    assert NodeConfig.load(path).node_id == "v0"


def test_data_dirs_are_created_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store.create_or_open(tmp_path / "a" / "data", make_consortium(1).genesis)
    finally:
        os.umask(old)
    store.close()
    assert stat.S_IMODE((tmp_path / "a" / "data").stat().st_mode) == 0o700
