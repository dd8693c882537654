"""Signing without a node (`tx --sign-only`, then `tx --send`), `key show` and `--version`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ledger_fixtures import LedgerChain
from ledger_node import story_served

from chain.crypto import KeyPair, write_key_file
from chain.tx import parse_tx
from node.cli.main import main
from node.version import version

UNREACHABLE = "http://127.0.0.1:9"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LedgerChain, str, Path]]:
    with story_served(tmp_path / "node") as (ch, _, url):
        genesis = tmp_path / "genesis.json"
        ch.c.genesis.write(genesis)
        yield ch, url, genesis


def key_file(tmp_path: Path, key: KeyPair, name: str) -> str:
    path = tmp_path / f"{name}.json"
    write_key_file(path, key)
    return str(path)


def test_sign_offline_then_send(tmp_path: Path, served: tuple[LedgerChain, str, Path]) -> None:
    ch, url, genesis = served
    u = ch.c.users
    seller, out = key_file(tmp_path, u[4], "seller"), tmp_path / "tx.json"  # u[4] owns WR-1
    expires = ch.ledger.height + 50
    signed = run("tx", "asset.transfer", "--key", seller, "--sign-only", "--genesis", str(genesis),
                 "--expires", str(expires), "--out", str(out), "asset_id=WR-1", f"to={u[6].public}")
    assert signed.exit_code == 0, signed.output
    tx = parse_tx(json.loads(out.read_text()))
    assert (tx.chain_id, tx.expires, tx.signer) == (ch.c.genesis.chain_id, expires, u[4].public)
    assert tx.signature_valid() and f"tx_id    {tx.tx_id}" in signed.stdout
    # the file is never overwritten: a second signing into it fails and leaves it as it was
    again = run("tx", "asset.transfer", "--key", seller, "--sign-only", "--genesis", str(genesis),
                "--expires", str(expires), "--out", str(out), "asset_id=WR-1", f"to={u[5].public}")
    assert again.exit_code == 1 and parse_tx(json.loads(out.read_text())).tx_id == tx.tx_id
    sent = run("tx", "--send", str(out), "--rpc", url, "--wait")
    assert sent.exit_code == 0, sent.output
    assert f"tx_id    {tx.tx_id}" in sent.stdout and "receipt  ok" in sent.stdout
    assert ch.ledger.asset("WR-1")["owner"] == u[6].public


def test_send_refuses_a_tampered_file_before_any_node(tmp_path: Path, served: tuple[LedgerChain, str, Path]) -> None:
    ch, _, genesis = served
    out = tmp_path / "tx.json"
    signed = run("tx", "asset.transfer", "--key", key_file(tmp_path, ch.c.users[4], "s"), "--sign-only",
                 "--genesis", str(genesis), "--expires", "40", "--out", str(out), "asset_id=WR-1",
                 f"to={ch.c.users[6].public}")
    assert signed.exit_code == 0, signed.output
    doc = json.loads(out.read_text())
    doc["body"]["args"]["to"] = ch.c.users[0].public  # the thief's own account in place of the buyer's
    out.write_text(json.dumps(doc))
    r = run("tx", "--send", str(out), "--rpc", UNREACHABLE)
    assert r.exit_code == 2 and "not a signed tx" in r.output and "signature" in r.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--sign-only", "--expires", "5", "--out", "x.json"], "--sign-only needs --genesis"),
        (["--sign-only", "--genesis", "G", "--out", "x.json"], "--sign-only needs"),
        (["--sign-only", "--genesis", "G", "--expires", "5", "--out", "x.json", "--rpc", UNREACHABLE], "no --rpc"),
        ([], "--rpc URL is required"),
        (["--send", "G", "--rpc", UNREACHABLE], "give no OP"),
    ],
)
def test_offline_usage_errors(tmp_path: Path, served: tuple[LedgerChain, str, Path], extra: list[str], needle: str) -> None:
    ch, _, genesis = served
    extra = [str(genesis) if a == "G" else str(tmp_path / a) if a == "x.json" else a for a in extra]
    r = run("tx", "asset.transfer", "--key", key_file(tmp_path, ch.c.users[4], "k"), *extra,
            "asset_id=WR-1", f"to={ch.c.users[6].public}")
    assert r.exit_code == 2 and needle in r.output, r.output


def test_key_show_prints_the_account_only(tmp_path: Path) -> None:
    k = KeyPair.generate()
    r = run("key", "show", key_file(tmp_path, k, "k"))
    assert r.exit_code == 0 and r.stdout == k.public + "\n"
    assert k.seed.hex() not in r.output
    missing = run("key", "show", str(tmp_path / "none.json"))
    assert missing.exit_code == 1 and "cannot read key file" in missing.output


def test_version() -> None:
    r = run("--version")
    assert r.exit_code == 0 and r.stdout == f"titlechain {version()}\n"
    assert version() != "0+unknown"  # the test environment installs the project, so its metadata exists
