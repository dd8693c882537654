"""The chain audit on copies of a real data dir, each tampered in one place with raw plyvel writes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import plyvel
import pytest

from chain.audit import audit_data_dir, verify_chain
from chain.block import Certificate
from chain.encoding import canonical, decode
from chain.smt import node_key
from chain.store import Store
from chain.tx import parse_tx
from contracts.apply import genesis_state, history_key, owner_key, reexecute, state_key
from factories import mix_views
from ledger_fixtures import LedgerChain, build_story


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerChain]:
    path = tmp_path_factory.mktemp("audit") / "node"
    ch = build_story(path)
    ch.close()
    return path, ch


def _tampered(original: tuple[Path, LedgerChain], tmp_path: Path, edit: Callable[[plyvel.DB], None]) -> Path:
    src, _ = original
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    db = plyvel.DB(str(copy))
    edit(db)
    db.close()
    return copy


def _audit(path: Path, ch: LedgerChain):  # noqa: ANN202
    return audit_data_dir(path, ch.c.genesis, reexecute)


def test_untampered_chain_passes(original: tuple[Path, LedgerChain]) -> None:
    path, ch = original
    seen: list[int] = []
    store = Store.open_read_only(path)
    try:
        report = verify_chain(store, ch.c.genesis, reexecute, lambda h, head: seen.append(h))
    finally:
        store.close()
    assert report.ok, report
    assert (report.blocks, report.txs, seen) == (5, 9, [1, 2, 3, 4, 5])


def _rewrite_block(height: int, change: Callable[[dict], None]) -> Callable[[plyvel.DB], None]:
    def edit(db: plyvel.DB) -> None:
        key = b"b/%012d" % height
        block = decode(db.get(key))
        change(block)
        db.put(key, canonical(block))

    return edit


def _header_time(b: dict) -> None:
    b["header"]["time"] += 1


def _tx_args(b: dict) -> None:
    b["txs"][0]["body"]["args"]["to"] = b["txs"][0]["body"]["signer"]


def _drop_view(db: plyvel.DB) -> None:
    """The version-1 shape of a certificate: no view."""
    key = b"c/%012d" % 4
    cert = decode(db.get(key))
    del cert["view"]
    db.put(key, canonical(cert))


def _drop_sig(db: plyvel.DB) -> None:
    key = b"c/%012d" % 4
    cert = Certificate.from_plain(decode(db.get(key))).to_plain()
    cert["signatures"].pop()
    db.put(key, canonical(cert))


def _mix_views(ch: LedgerChain) -> Callable[[plyvel.DB], None]:
    """Certificate 4 rebuilt from its block's commits in views 0 and 2 (defect 3)."""

    def edit(db: plyvel.DB) -> None:
        key = b"c/%012d" % 4
        cert = Certificate.from_plain(decode(db.get(key)))
        db.put(key, canonical(mix_views(cert, ch.c.validator_keys, ch.c.genesis.chain_id, 2).to_plain()))

    return edit


def _state(ch: LedgerChain) -> Callable[[plyvel.DB], None]:
    def edit(db: plyvel.DB) -> None:
        key = state_key("asset/WR-2")
        asset = decode(db.get(key))
        asset["owner"] = ch.c.users[7].public
        db.put(key, canonical(asset))

    return edit


def _history(db: plyvel.DB) -> None:
    key = history_key("WR-1", 2, 1)
    entry = decode(db.get(key))
    entry["status"] = "ok"
    db.put(key, canonical(entry))


@pytest.mark.parametrize(
    ("name", "expected_height", "reason_part"),
    [
        ("block header", 3, "certificate"),
        ("tx", 2, "tx_root"),
        ("certificate", 4, "signatures"),
        ("certificate mixing views", 4, "not its commit to this block in view 2"),
        ("certificate without a view", 4, "certificate does not decode"),
        ("state record", 5, "s/asset/WR-2"),
        ("history entry", 2, "h/WR-1"),
        ("owner index", 3, "o/"),
        ("tx index", 1, "t/"),
        ("receipts", 2, "receipts"),
        ("smt node", 0, "n/"),
        ("garbage tx index", 3, "unreadable"),
        ("garbage certificate", 4, "certificate"),
    ],
)
def test_tampering_is_found_at_its_height(
    original: tuple[Path, LedgerChain], tmp_path: Path, name: str, expected_height: int, reason_part: str
) -> None:
    path, ch = original
    u = ch.c.users
    src_db = plyvel.DB(str(path))
    try:
        block1 = decode(src_db.get(b"b/%012d" % 1))
        block3 = decode(src_db.get(b"b/%012d" % 3))
    finally:
        src_db.close()
    tx1 = parse_tx(block1["txs"][2])
    tx3 = parse_tx(block3["txs"][0])
    genesis_root_node = node_key(bytes.fromhex(genesis_state(ch.c.genesis).state_root))

    def receipts(db: plyvel.DB) -> None:
        key = b"r/%012d" % 2
        rs = decode(db.get(key))
        rs[1]["status"] = "ok"
        db.put(key, canonical(rs))

    edits: dict[str, Callable[[plyvel.DB], None]] = {
        "block header": _rewrite_block(3, _header_time),
        "tx": _rewrite_block(2, _tx_args),
        "certificate": _drop_sig,
        "certificate mixing views": _mix_views(ch),
        "certificate without a view": _drop_view,
        "state record": _state(ch),
        "history entry": _history,
        "owner index": lambda db: db.put(owner_key(u[2].public, "WR-1"), b""),
        "tx index": lambda db: db.put(b"t/" + tx1.tx_id.encode(), canonical([1, 0])),
        "receipts": receipts,
        "smt node": lambda db: db.delete(genesis_root_node),
        "garbage tx index": lambda db: db.put(b"t/" + tx3.tx_id.encode(), b"\xc1"),
        "garbage certificate": lambda db: db.put(b"c/%012d" % 4, b"\x93\x01\x02"),
    }
    copy = _tampered(original, tmp_path, edits[name])
    report = _audit(copy, ch)
    assert not report.ok, name
    assert report.height == expected_height, (name, report)
    assert reason_part in report.reason, (name, report.reason)


def test_another_genesis_is_refused(original: tuple[Path, LedgerChain]) -> None:
    from factories import make_consortium

    path, _ = original
    other = make_consortium(chain_id="other-chain")
    report = audit_data_dir(path, other.genesis, reexecute)
    assert not report.ok and report.height == 0


def test_ledger_wrapper_plugs_in_the_contracts(original: tuple[Path, LedgerChain]) -> None:
    from node.ledger import audit_data_dir as audit_with_contracts

    path, ch = original
    report = audit_with_contracts(path, ch.c.genesis)
    assert report.ok and report.blocks == 5 and report.state_root
