"""`titlechain explore`: the same answers from a node's RPC and from an offline data dir, tables and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from factories import make_consortium
from ledger_fixtures import LedgerChain, build_story
from ledger_node import LedgerNode, serve_in_thread
from pydantic import BaseModel
from rpc_fake import FakeNode

from node.cli.main import main
from node.rpc import models as m


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


class Story:
    def __init__(self, ch: LedgerChain, data_dir: Path, url: str) -> None:
        self.ch = ch
        self.data_dir = data_dir
        self.url = url

    def source(self, kind: str) -> list[str]:
        return ["--rpc", self.url] if kind == "rpc" else ["--data-dir", str(self.data_dir)]

    def tx_ids(self, height: int) -> list[str]:
        return self.ch.ledger.store.get_block(height).tx_ids  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """The five-block story (tests/ledger_fixtures.py), served over HTTP while its data dir is read offline."""
    path = tmp_path_factory.mktemp("explore") / "node"
    ch = build_story(path)
    with serve_in_thread(LedgerNode(ch)) as url:
        yield Story(ch, path, url)
    ch.close()


def read_json(story: Story, kind: str, *args: str) -> Any:
    result = run("explore", *args, *story.source(kind), "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _queries(story: Story) -> list[tuple[list[str], type[BaseModel]]]:
    u = story.ch.c.users
    rejected = story.tx_ids(2)[1]
    return [
        (["block", "2"], m.BlockInfo),
        (["block", "latest"], m.BlockInfo),
        (["blocks", "--from", "2", "--limit", "3"], m.BlockList),
        (["tx", rejected], m.TxInfo),
        (["asset", "WR-1"], m.AssetState),
        (["asset", "WR-3"], m.AssetState),
        (["history", "WR-1"], m.AssetHistory),
        (["account", u[0].public], m.AccountInfo),
        (["account", story.ch.c.issuer.public], m.AccountInfo),
        (["account", story.ch.c.members[0].public], m.AccountInfo),
    ]


@pytest.mark.parametrize("kind", ["rpc", "data_dir"])
def test_json_answers_have_the_rpc_shapes(story: Story, kind: str) -> None:
    for args, model in _queries(story):
        model.model_validate(read_json(story, kind, *args))


def test_both_sources_give_the_same_json(story: Story) -> None:
    for args, _ in _queries(story):
        assert read_json(story, "rpc", *args) == read_json(story, "data_dir", *args), args


def test_json_content(story: Story) -> None:
    u = story.ch.c.users
    rejected = story.tx_ids(2)[1]
    tx = read_json(story, "data_dir", "tx", rejected)
    assert (tx["status"], tx["height"], tx["receipt"]["index"]) == ("committed", 2, 1)
    assert tx["receipt"]["error"]["code"] == "not_owner" and tx["tx"]["body"]["op"] == "asset.transfer"
    assert read_json(story, "data_dir", "asset", "WR-1")["owner"] == u[4].public
    assert read_json(story, "data_dir", "asset", "WR-3")["status"] == "redeemed"
    history = read_json(story, "data_dir", "history", "WR-1")["entries"]
    assert [(e["height"], e["op"], e["status"]) for e in history] == [
        (1, "asset.register", "ok"),
        (2, "asset.transfer", "ok"),
        (2, "asset.transfer", "rejected"),
        (3, "asset.transfer", "ok"),
    ]
    assert read_json(story, "data_dir", "account", u[0].public) == {
        "account": u[0].public,
        "roles": [],
        "assets": ["WR-3"],
        "next": None,
        "standing_since": 1,
    }
    issuer = read_json(story, "data_dir", "account", story.ch.c.issuer.public)
    assert issuer["roles"] == [{"role": "issuer", "classes": ["property_deed", "receivable", "warehouse_receipt"]}]
    assert read_json(story, "data_dir", "account", story.ch.c.members[0].public)["roles"] == [{"role": "member"}]
    blocks = read_json(story, "data_dir", "blocks", "--from", "2", "--limit", "3")["blocks"]
    assert [b["header"]["height"] for b in blocks] == [2, 3, 4]
    assert [b["header"]["height"] for b in read_json(story, "data_dir", "blocks", "--limit", "2")["blocks"]] == [4, 5]
    assert read_json(story, "data_dir", "blocks", "--from", "9")["blocks"] == []
    assert read_json(story, "data_dir", "block", "latest")["header"]["height"] == 5


def test_offline_status_describes_the_copy(story: Story) -> None:
    offline = read_json(story, "data_dir", "status")
    online = read_json(story, "rpc", "status")
    m.NodeStatus.model_validate(online)
    assert set(offline) == set(online) | {"data_dir"}
    assert (offline["node_id"], offline["ready"], offline["peers"], offline["mempool"]) == (None, False, [], 0)
    assert offline["data_dir"] == str(story.data_dir)
    for field in ("chain_id", "height", "view", "primary", "validators"):
        assert offline[field] == online[field], field
    assert offline["height"] == 5 and len(offline["validators"]) == 4


@pytest.mark.parametrize("kind", ["rpc", "data_dir"])
def test_tables(story: Story, kind: str) -> None:
    u = story.ch.c.users

    def table(*args: str) -> str:
        result = run("explore", *args, *story.source(kind))
        assert result.exit_code == 0, result.stderr
        return result.stdout

    assert "test-chain" in table("status") and "v3" in table("status")
    assert "blocks 1…5 of 5" in table("blocks")
    block = table("block", "2")
    assert all(tx_id in block for tx_id in story.tx_ids(2)) and "3 signatures in view 0" in block
    tx = table("tx", story.tx_ids(2)[1])
    assert "rejected: not_owner" in tx and "asset.transfer" in tx
    asset = table("asset", "WR-1")
    assert u[4].public in asset.replace("\n", "").replace(" ", "") and "active" in asset
    assert table("history", "WR-1").count("asset.transfer") == 3
    assert "WR-3" in table("account", u[0].public) and "since height 1: may submit" in table("account", u[0].public)
    assert "none: the ledger does not know" in table("account", u[7].public)  # never given anything
    assert "from the genesis" in table("account", story.ch.c.issuer.public)


@pytest.mark.parametrize("kind", ["rpc", "data_dir"])
def test_what_does_not_exist_exits_1(story: Story, kind: str) -> None:
    for args in (["asset", "NO-SUCH"], ["history", "NO-SUCH"], ["block", "6"], ["tx", "ab" * 32]):
        result = run("explore", *args, *story.source(kind))
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: not found"), result.stderr


def test_usage_errors_exit_2(story: Story, tmp_path: Path) -> None:
    both = ["--rpc", story.url, "--data-dir", str(story.data_dir)]
    genesis = tmp_path / "genesis.json"
    story.ch.c.genesis.write(genesis)
    for args in (
        ["status"],  # no source
        ["status", *both],
        ["status", "--rpc", story.url, "--genesis", str(genesis)],
        ["status", "--rpc", "localhost:1"],
        ["status", "--data-dir", str(tmp_path)],  # not a data dir
        ["block", "0", "--rpc", story.url],
        ["block", "first", "--rpc", story.url],
        ["tx", "AB" * 32, "--rpc", story.url],
        ["asset", "WR/1", "--rpc", story.url],
        ["account", "alice", "--rpc", story.url],
        ["blocks", "--limit", "101", "--rpc", story.url],
    ):
        result = run("explore", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert isinstance(result.exception, SystemExit) and "Error:" in result.stderr, args


def test_a_data_dir_checked_against_its_genesis(story: Story, tmp_path: Path) -> None:
    own, other = tmp_path / "own.json", tmp_path / "other.json"
    story.ch.c.genesis.write(own)
    make_consortium(chain_id="another-chain").genesis.write(other)
    assert run("explore", "status", "--data-dir", str(story.data_dir), "--genesis", str(own)).exit_code == 0
    result = run("explore", "status", "--data-dir", str(story.data_dir), "--genesis", str(other))
    assert result.exit_code == 1 and "another chain" in result.stderr


def test_the_rpc_path_against_the_fake_node() -> None:
    node = FakeNode()
    node.commit()
    node.commit()
    with serve_in_thread(node) as url:
        status = run("explore", "status", "--rpc", url, "--json")
        blocks = run("explore", "blocks", "--rpc", url, "--json")
        # a node answering a shape docs/rpc.md does not promise: refused at the source, not a traceback
        node.account = lambda a, c, n: {  # type: ignore[method-assign]
            "account": a, "roles": "all of them", "assets": [], "next": None
        }
        malformed = run("explore", "account", "ab" * 32, "--rpc", url)
    assert status.exit_code == 0 and json.loads(status.stdout)["height"] == 2
    assert [b["header"]["height"] for b in json.loads(blocks.stdout)["blocks"]] == [1, 2]
    assert malformed.exit_code == 1
    assert "malformed AccountInfo: roles" in malformed.stderr and "Traceback" not in malformed.stderr


def test_an_unreachable_node_exits_1() -> None:
    result = run("explore", "status", "--rpc", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot reach the node" in result.stderr
