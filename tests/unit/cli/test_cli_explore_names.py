"""`explore` tables print every hash and account whole on one line (piped, and under a narrow
COLUMNS), and `--names FILE` puts names beside accounts while the hex stays."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ledger_fixtures import LedgerChain, build_story
from ledger_node import LedgerNode, serve_in_thread

from node.cli.main import main

HEX_RUN = re.compile(r"[0-9a-f]{12,}")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LedgerChain, str]]:
    ch = build_story(tmp_path_factory.mktemp("names") / "node")
    with serve_in_thread(LedgerNode(ch)) as url:
        yield ch, url
    ch.close()


def commands(ch: LedgerChain) -> list[list[str]]:
    u = ch.c.users
    tx = ch.ledger.store.get_block(2).tx_ids[0]  # type: ignore[union-attr]
    return [["status"], ["blocks"], ["block", "2"], ["block", "latest"], ["tx", tx], ["asset", "WR-1"],
            ["history", "WR-1"], ["account", u[4].public]]


def hex_runs(text: str) -> list[str]:
    return HEX_RUN.findall(text)


# Runs every explore command in one process whose stdout is a real pipe (importing the CLI once,
# not once per command): each command's output follows a line "=== <args>".
PIPED = """
import json, sys
from node.cli.main import main
for cmd in json.loads(sys.argv[1]):
    print("=== " + " ".join(cmd), flush=True)
    try:
        main(cmd, standalone_mode=False)
    finally:
        sys.stdout.flush()
"""


def test_every_hash_printed_piped_is_whole(served: tuple[LedgerChain, str]) -> None:
    """A real pipe (not click's runner), with COLUMNS=40 to tempt any wrapping."""
    ch, url = served
    cmds = [["explore", *cmd, "--rpc", url] for cmd in commands(ch)]
    r = subprocess.run([sys.executable, "-c", PIPED, json.dumps(cmds)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "40"})
    assert r.returncode == 0, r.stderr
    outputs = r.stdout.split("=== ")[1:]
    assert len(outputs) == len(cmds)
    for out in outputs:
        runs = hex_runs(out)
        assert runs, out
        assert all(len(h) == 64 for h in runs), ([h for h in runs if len(h) != 64], out)
        assert not re.search(r"[0-9a-f]{8}…", out), out  # nothing shortened either


def test_names_beside_accounts_from_a_consortium_json(served: tuple[LedgerChain, str], tmp_path: Path) -> None:
    ch, url = served
    u, v0 = ch.c.users, ch.c.genesis.validators.validators[0]
    names = {u[4].public: "Haitong [Metals]", ch.c.issuer.public: "Northgate receipts desk"}
    manifest = tmp_path / "consortium.json"
    manifest.write_text(json.dumps({"chain_id": "x", "names": names}))
    asset = run("explore", "asset", "WR-1", "--rpc", url, "--names", str(manifest))
    assert asset.exit_code == 0, asset.output
    assert f"{u[4].public} (Haitong [Metals])" in asset.stdout  # a name is text, never rich markup
    assert f"{ch.c.issuer.public} (Northgate receipts desk)" in asset.stdout
    block = run("explore", "block", "1", "--rpc", url, "--names", str(manifest))
    assert f"{v0.public} ({v0.node_id})" in block.stdout  # validators by node id from the chain itself
    plain = run("explore", "asset", "WR-1", "--rpc", url)
    assert u[4].public in plain.stdout and "Haitong" not in plain.stdout


def test_a_names_file_that_is_not_one_is_a_usage_error(served: tuple[LedgerChain, str], tmp_path: Path) -> None:
    _, url = served
    bad = tmp_path / "names.json"
    bad.write_text(json.dumps({"names": {"not-an-account": "x"}}))
    r = run("explore", "status", "--rpc", url, "--names", str(bad))
    assert r.exit_code == 2 and "expected a consortium.json" in r.output
