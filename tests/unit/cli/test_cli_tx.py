"""`titlechain tx`: the ARGS syntax, usage errors (exit 2), and real submissions over HTTP (exit 0/1)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from ledger_fixtures import LedgerChain, build_story, doc
from ledger_node import LedgerNode, serve_in_thread
from rpc_fake import FakeNode

from chain.crypto import KeyPair, write_key_file
from node.cli.main import main
from node.cli.tx import ArgsError, parse_tx_args
from node.rpc import models as m

T = TypeVar("T")
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens: a command that got this far would exit 1, not 2


def eventually(get: Callable[[], T | None], timeout: float = 10.0) -> T:
    """get()'s first non-None value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (value := get()) is None:
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.005)
    return value


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def key_file(tmp_path: Path, key: KeyPair, name: str) -> str:
    path = tmp_path / f"{name}.json"
    write_key_file(path, key)
    return str(path)


# -- ARGS syntax -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["asset_id=WR-1"], {"asset_id": "WR-1"}),
        (["reason="], {"reason": ""}),
        (["reason=court order=final"], {"reason": "court order=final"}),
        (["n:=5", "t:=true", "z:=null"], {"n": 5, "t": True, "z": None}),
        (['classes:=["receivable", "warehouse_receipt"]'], {"classes": ["receivable", "warehouse_receipt"]}),
        (['meta:={"doc_uri": "https://d/1"}'], {"meta": {"doc_uri": "https://d/1"}}),
        (["meta.doc_uri=https://d/1", "meta.lot-no=7"], {"meta": {"doc_uri": "https://d/1", "lot-no": "7"}}),
        (["params.account=ab", 'params.classes:=["x"]'], {"params": {"account": "ab", "classes": ["x"]}}),
        (["meta:={}"], {"meta": {}}),
        ([], {}),
    ],
)
def test_args_syntax(items: list[str], expected: dict[str, Any]) -> None:
    assert parse_tx_args(items) == expected


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (["asset_id"], "expected name=text"),
        (["=x"], "is not a name"),
        (["a b=c"], "is not a name"),
        (["meta..x=1"], "is not a name"),
        (["to=a", "to=b"], "already given"),
        (["meta:={}", "meta.x=1"], "already given"),
        (["meta.x=1", "meta=2"], "already given"),
        (["amount:=1.5"], "no floats"),
        (["amount:=1e3"], "no floats"),
        (["n:=NaN"], "no floats"),
        (["meta:={"], "not JSON"),
        (["big:=99999999999999999999999"], "not a value a tx can carry"),
    ],
)
def test_args_syntax_errors(items: list[str], problem: str) -> None:
    with pytest.raises(ArgsError, match=problem):
        parse_tx_args(items)


# -- usage errors exit 2 before anything is sent -----------------------------------------------------


@pytest.fixture
def alice(tmp_path: Path) -> str:
    return key_file(tmp_path, KeyPair.from_seed(b"\x01" * 32), "alice")


def _assert_usage(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit)  # click's usage exit, not a traceback
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_a_malformed_arg_is_a_usage_error(alice: str) -> None:
    _assert_usage(
        run("tx", "asset.transfer", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1", "to"), "ARGS", "'to'"
    )


def test_a_float_arg_is_a_usage_error(alice: str) -> None:
    _assert_usage(
        run("tx", "asset.transfer", "--key", alice, "--rpc", UNREACHABLE, "asset_id:=1.5", "to=x"), "no floats"
    )


def test_args_the_op_can_never_accept_are_a_usage_error(alice: str) -> None:
    _assert_usage(
        run("tx", "asset.transfer", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1"), "args.to is missing"
    )
    _assert_usage(
        run("tx", "asset.transfer", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1", "to=bob"), "args.to"
    )


def test_an_unknown_op_is_a_usage_error(alice: str) -> None:
    _assert_usage(run("tx", "asset.steal", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1"), "OP", "unknown op")


def test_an_unreadable_key_file_is_a_usage_error(tmp_path: Path, alice: str) -> None:
    _assert_usage(
        run("tx", "asset.redeem", "--key", str(tmp_path / "nope.json"), "--rpc", UNREACHABLE, "asset_id=WR-1"), "--key"
    )
    os.chmod(alice, 0o644)
    _assert_usage(run("tx", "asset.redeem", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1"), "chmod 600")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    garbage.chmod(0o600)
    _assert_usage(run("tx", "asset.redeem", "--key", str(garbage), "--rpc", UNREACHABLE, "asset_id=WR-1"), "not JSON")


def test_bad_options_are_usage_errors(alice: str) -> None:
    _assert_usage(run("tx", "asset.redeem", "--key", alice, "--rpc", "127.0.0.1:26601", "asset_id=WR-1"), "--rpc")
    _assert_usage(
        run("tx", "asset.redeem", "--key", alice, "--rpc", UNREACHABLE, "--expires-in", "0", "asset_id=WR-1"),
        "--expires-in",
    )
    _assert_usage(
        run("tx", "asset.redeem", "--key", alice, "--rpc", UNREACHABLE, "--expires-in", "10001", "asset_id=WR-1")
    )
    _assert_usage(run("tx", "asset.redeem", "--rpc", UNREACHABLE, "asset_id=WR-1"), "--key")


def test_an_unreachable_node_exits_1(alice: str) -> None:
    result = run("tx", "asset.redeem", "--key", alice, "--rpc", UNREACHABLE, "asset_id=WR-1")
    assert result.exit_code == 1
    assert "cannot reach the node" in result.stderr and "Traceback" not in result.stderr


# -- real submissions ----------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LedgerChain, LedgerNode, str]]:
    ch = build_story(tmp_path / "node")
    node = LedgerNode(ch)
    with serve_in_thread(node) as url:
        yield ch, node, url
    ch.close()


def test_submit_without_wait_prints_the_tx_id_pending(
    tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]
) -> None:
    ch, _, url = served
    issuer = key_file(tmp_path, ch.c.issuer, "issuer")
    owner = ch.c.users[1].public
    height = ch.ledger.height
    result = run(
        "tx",
        "asset.register",
        "--key",
        issuer,
        "--rpc",
        url,
        "--expires-in",
        "7",
        "asset_id=WR-9",
        "class=warehouse_receipt",
        f"owner={owner}",
        f"doc_hash={doc('WR-9')}",
        "meta.doc_uri=https://d/9",
    )
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["status"] == "pending"
    tx_id = lines["tx_id"]
    record = eventually(lambda: ch.ledger.tx(tx_id))  # the node commits it after answering 202
    assert record.tx.args == {
        "asset_id": "WR-9",
        "class": "warehouse_receipt",
        "owner": owner,
        "doc_hash": doc("WR-9"),
        "meta": {"doc_uri": "https://d/9"},
    }
    assert record.tx.expires == height + 7
    assert record.tx.signer == ch.c.issuer.public


def test_wait_shows_an_ok_receipt(tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, _, url = served
    u = ch.c.users
    seller = key_file(tmp_path, u[4], "seller")  # owns WR-1 at the end of the story
    result = run("tx", "asset.transfer", "--key", seller, "--rpc", url, "--wait", "asset_id=WR-1", f"to={u[6].public}")
    assert result.exit_code == 0, result.stderr
    assert "receipt  ok" in result.stdout and "committed at height 6" in result.stdout
    assert ch.ledger.asset("WR-1")["owner"] == u[6].public


def test_a_rejected_receipt_exits_1_with_its_code(tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, _, url = served
    u = ch.c.users
    thief = key_file(tmp_path, u[0], "thief")  # sold WR-1 long ago
    result = run("tx", "asset.transfer", "--key", thief, "--rpc", url, "--wait", "asset_id=WR-1", f"to={u[0].public}")
    assert result.exit_code == 1
    assert "rejected: not_owner" in result.stdout
    assert ch.ledger.asset("WR-1")["owner"] == u[4].public


def test_json_is_the_nodes_answer(tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, _, url = served
    u = ch.c.users
    seller = key_file(tmp_path, u[5], "seller")  # owns WR-2
    result = run(
        "tx",
        "asset.pledge",
        "--key",
        seller,
        "--rpc",
        url,
        "--wait",
        "--json",
        "asset_id=WR-2",
        f"pledgee={u[1].public}",
        f"terms_hash={doc('terms')}",
    )
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    m.TxCommitted.model_validate(answer)
    assert answer["receipt"]["status"] == "ok" and answer["receipt"]["tx_id"] == answer["tx_id"]


def test_a_node_that_is_not_ready_exits_1(tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, node, url = served
    node.ready_flag = False
    seller = key_file(tmp_path, ch.c.users[5], "seller")
    result = run("tx", "asset.redeem", "--key", seller, "--rpc", url, "asset_id=WR-2")
    assert result.exit_code == 1
    assert "503 not_ready" in result.stderr and "(tx " in result.stderr
    assert node.pending == {}


def test_submit_to_the_fake_node_over_http(tmp_path: Path) -> None:
    node = FakeNode()
    issuer = key_file(tmp_path, node.consortium.issuer, "issuer")
    with serve_in_thread(node) as url:
        result = run("tx", "asset.freeze", "--key", issuer, "--rpc", url, "asset_id=WR-1", "reason=court order 7")
    assert result.exit_code == 0, result.stderr
    [tx] = node.mempool.values()
    assert (tx.op, tx.args, tx.expires) == ("asset.freeze", {"asset_id": "WR-1", "reason": "court order 7"}, 100)
    assert f"tx_id    {tx.tx_id}" in result.stdout


def test_a_wait_that_runs_out_exits_1_naming_the_tx(tmp_path: Path) -> None:
    node = FakeNode()  # commits only when told: the wait runs out
    issuer = key_file(tmp_path, node.consortium.issuer, "issuer")
    with serve_in_thread(node) as url:
        result = run("tx", "asset.redeem", "--key", issuer, "--rpc", url, "--wait", "--timeout", "0.2", "asset_id=WR-1")
    [tx_id] = node.mempool
    assert result.exit_code == 1
    assert "504 timeout" in result.stderr and f"(tx {tx_id})" in result.stderr


# -- admission: 403 for a key the ledger does not know, 429 with when to retry -----------------------


def test_a_key_without_standing_exits_1_with_403_not_permitted(
    tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]
) -> None:
    ch, node, url = served
    stranger = key_file(tmp_path, ch.c.users[7], "stranger")  # no role, never owned anything
    height = ch.ledger.height
    result = run("tx", "asset.redeem", "--key", stranger, "--rpc", url, "--wait", "asset_id=WR-2")
    assert result.exit_code == 1
    assert "403 not_permitted" in result.stderr and "no standing" in result.stderr and "(tx " in result.stderr
    assert node.pending == {} and ch.ledger.height == height


def test_a_full_mempool_exits_1_saying_when_to_retry(tmp_path: Path) -> None:
    node = FakeNode(mempool_cap=0)
    issuer = key_file(tmp_path, node.consortium.issuer, "issuer")
    with serve_in_thread(node) as url:
        result = run("tx", "asset.redeem", "--key", issuer, "--rpc", url, "asset_id=WR-1")
    assert result.exit_code == 1
    assert "429 mempool_full" in result.stderr and "retry after 1 s" in result.stderr


def test_the_sdk_raises_not_permitted_and_retry_later(tmp_path: Path, served: tuple[LedgerChain, LedgerNode, str]) -> None:
    from node.sdk.client import Client, NotPermitted, RetryLater, sign

    ch, _, url = served
    with Client(url) as c:
        tx = sign(ch.c.users[7], c.chain_id, "asset.redeem", {"asset_id": "WR-2"}, expires=c.height() + 10)
        with pytest.raises(NotPermitted) as e:
            c.submit(tx)
        assert (e.value.status, e.value.code) == (403, "not_permitted")
    node = FakeNode(mempool_cap=0)
    with serve_in_thread(node) as url2, Client(url2) as c:
        with pytest.raises(RetryLater) as later:
            c.submit(sign(node.consortium.issuer, c.chain_id, "asset.redeem", {"asset_id": "WR-1"}, expires=50))
        assert (later.value.status, later.value.code, later.value.retry_after_s) == (429, "mempool_full", 1)
