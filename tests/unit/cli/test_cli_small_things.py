"""The small frictions: init says what to do before starting, consortium.json holds nothing that
goes stale when the addresses are edited (`genesis hash` shows the real hash), every option has help, and `node run`
on a bad config file exits 1 (a failed check), not 2 (a usage error)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner, Result

from chain.genesis import Genesis
from node.cli.main import main
from node.devnet.provision import Consortium


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_init_reminds_to_set_addresses_and_the_manifest_does_not_go_stale(tmp_path: Path) -> None:
    out = tmp_path / "c"
    r = run("init", "--validators", "4", "--out", str(out), "--base-port", "45100")
    assert r.exit_code == 0, r.output
    assert "before any node starts: set each validators[].address" in r.stdout
    # the operator edits the addresses, as README's consortium steps say
    doc = json.loads((out / "genesis.json").read_text())
    for i, v in enumerate(doc["validators"]):
        v["address"] = f"10.0.0.{i + 1}:26600"
    (out / "genesis.json").write_text(json.dumps(doc, indent=2))
    edited = Genesis.load(out / "genesis.json")
    manifest = json.loads((out / "consortium.json").read_text())
    # nothing in the manifest disagrees with the genesis it points to (it held the old hash)
    assert manifest.get("genesis_hash", edited.hash) == edited.hash
    assert manifest["chain_id"] == edited.chain_id and Consortium.load(out).genesis == out / "genesis.json"
    shown = run("genesis", "hash", str(out / "genesis.json"))
    assert shown.exit_code == 0 and shown.stdout == edited.hash + "\n"


def test_every_option_of_every_command_has_help() -> None:
    def walk(cmd: click.Command, path: list[str]) -> list[tuple[str, str]]:
        if isinstance(cmd, click.Group):
            return [m for name, sub in cmd.commands.items() for m in walk(sub, [*path, name])]
        return [(" ".join(path), p.name or "?") for p in cmd.params if isinstance(p, click.Option) and not p.help]

    assert walk(main, ["titlechain"]) == []


def test_node_run_with_a_bad_config_file_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text('{"node_id": "v0"')  # cut short
    r = run("node", "run", "--config", str(cfg))
    assert r.exit_code == 1 and "not JSON" in r.output
    cfg.write_text(json.dumps({"node_id": "v0", "unknown": 1}))
    assert run("node", "run", "--config", str(cfg)).exit_code == 1
    assert run("node", "run").exit_code == 2  # a usage error stays 2


def test_node_run_refuses_peers_nobody_can_dial(tmp_path: Path) -> None:
    run("init", "--out", str(tmp_path / "c"), "--validators", "1")
    config = str(tmp_path / "c" / "nodes" / Consortium.load(tmp_path / "c").nodes[0].node_id / "config.json")
    for bad in ("0.0.0.0:26600", "host:0", "[::]:1,10.0.0.1:2"):
        r = run("node", "run", "--config", config, "--peers", bad)
        assert r.exit_code == 1 and "--peers" in r.output, (bad, r.output)
