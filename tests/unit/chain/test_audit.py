"""The chain audit on copies of a real data dir, each tampered in one place with raw database writes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from factories import mix_views
from ledger_fixtures import LedgerChain, build_story

from chain import smt
from chain.audit import audit_data_dir, verify_chain
from chain.audit_tree import TreeRecords
from chain.block import Certificate
from chain.database import Database, open_db
from chain.encoding import canonical, decode
from chain.smt import node_key, version_bytes
from chain.store import Store
from chain.tx import parse_tx
from contracts.apply import genesis_state, history_key, owner_key, reexecute, state_key


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LedgerChain]:
    path = tmp_path_factory.mktemp("audit") / "node"
    ch = build_story(path)
    ch.close()
    return path, ch


def _tampered(original: tuple[Path, LedgerChain], tmp_path: Path, edit: Callable[[Database], None]) -> Path:
    src, _ = original
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    db = open_db(copy, create=False)
    edit(db)
    db.close()
    return copy


def _audit(path: Path, ch: LedgerChain):
    return audit_data_dir(path, ch.c.genesis, reexecute)


Call = tuple[tuple[Any, ...], Any]  # (the arguments, what the call returned)


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Call]:
    """Every call of chain.audit's function `name` from now on, still made, with its result."""
    import chain.audit as audit_mod

    calls: list[Call] = []
    real = getattr(audit_mod, name)

    def spy(*args: Any) -> Any:
        result = real(*args)
        calls.append((args, result))
        return result

    monkeypatch.setattr(audit_mod, name, spy)
    return calls


def test_untampered_chain_passes(original: tuple[Path, LedgerChain]) -> None:
    path, ch = original
    seen: list[int] = []
    store = Store.open_read_only(path)
    try:
        report = verify_chain(store, ch.c.genesis, reexecute, lambda h, head, txs: seen.append(h))
    finally:
        store.close()
    assert report.ok, report
    assert (report.blocks, report.txs, seen) == (5, 9, [1, 2, 3, 4, 5])


def _rewrite_block(height: int, change: Callable[[dict], None]) -> Callable[[Database], None]:
    def edit(db: Database) -> None:
        key = b"b/%012d" % height
        block = decode(db.get(key))
        change(block)
        db.put(key, canonical(block))

    return edit


def _header_time(b: dict) -> None:
    b["header"]["time"] += 1


def _tx_args(height: int) -> Callable[[Database], None]:
    """The first tx of the block, altered inside its record (t/), where the block's txs are kept."""

    def edit(db: Database) -> None:
        key = b"t/" + db.get(b"i/" + decode(db.get(b"b/%012d" % height))["tx_ids"][0].encode())
        record = decode(db.get(key))
        record[2]["body"]["args"]["to"] = record[2]["body"]["signer"]
        db.put(key, canonical(record))

    return edit


def _drop_view(db: Database) -> None:
    """The version-1 shape of a certificate: no view."""
    key = b"c/%012d" % 4
    cert = decode(db.get(key))
    del cert["view"]
    db.put(key, canonical(cert))


def _drop_sig(db: Database) -> None:
    key = b"c/%012d" % 4
    cert = Certificate.from_plain(decode(db.get(key))).to_plain()
    cert["signatures"].pop()
    db.put(key, canonical(cert))


def _mix_views(ch: LedgerChain) -> Callable[[Database], None]:
    """Certificate 4 rebuilt from its block's commits in views 0 and 2 (defect 3)."""

    def edit(db: Database) -> None:
        key = b"c/%012d" % 4
        cert = Certificate.from_plain(decode(db.get(key)))
        db.put(key, canonical(mix_views(cert, ch.c.validator_keys, ch.c.genesis.chain_id, 2).to_plain()))

    return edit


def _state(ch: LedgerChain) -> Callable[[Database], None]:
    def edit(db: Database) -> None:
        key = state_key("asset/WR-2")
        asset = decode(db.get(key))
        asset["owner"] = ch.c.users[7].public
        db.put(key, canonical(asset))

    return edit


def _history(db: Database) -> None:
    # an h/ record is empty (the entry is built from the tx's record): anything else is altered
    key = history_key("WR-1", 2, 1)
    assert db.get(key) == b""
    db.put(key, canonical({"status": "ok"}))


def _moved(record: bytes, index: int) -> bytes:
    """A tx record pointing at another index of its block."""
    value = decode(record)
    value[1] = index
    return canonical(value)


def _record_key(db: Database, tx_id: str) -> bytes:
    """The t/ key of a tx's record, through its i/ pointer."""
    return b"t/" + db.get(b"i/" + tx_id.encode())


def _swap_tx_records(a: str, b: str) -> Callable[[Database], None]:
    """Each record keeps its location but holds the other's tx (both well formed and signed)."""

    def edit(db: Database) -> None:
        ra, rb = decode(db.get(b"t/" + db.get(b"i/" + a.encode()))), decode(db.get(b"t/" + db.get(b"i/" + b.encode())))
        ra[2], rb[2] = rb[2], ra[2]
        db.put(b"t/" + db.get(b"i/" + a.encode()), canonical(ra))
        db.put(b"t/" + db.get(b"i/" + b.encode()), canonical(rb))

    return edit


def _drop_last_tx(b: dict) -> None:
    b["tx_ids"] = b["tx_ids"][:-1]


@pytest.mark.parametrize(
    ("name", "expected_height", "reason_part"),
    [
        ("block header", 3, "certificate"),
        ("tx", 2, "holds another tx"),
        ("certificate", 4, "signatures"),
        ("certificate mixing views", 4, "not its commit to this block in view 2"),
        ("certificate without a view", 4, "certificate does not decode"),
        ("state record", 5, "s/asset/WR-2"),
        ("history entry", 2, "h/WR-1"),
        ("owner index", 3, "o/"),
        ("tx index", 1, "t/"),
        ("tx pointer moved", 3, "(i/) of"),
        ("tx pointer missing", 2, "(i/) of tx 1"),
        ("tx pointer not a place", 1, "(i/) of"),
        ("stray tx pointer", 5, "names a tx"),  # no block holds its tx: reported at the head
        ("stray tx record", 5, "place of no block's tx"),
        ("receipts", 2, "receipts"),
        ("tx records swapped", 1, "holds another tx"),
        ("block without its last tx", 3, "tx_root"),
        ("smt node", 0, "n/"),
        ("garbage tx index", 3, "(t/) of tx 0 ("),
        ("garbage certificate", 4, "certificate"),
    ],
)
def test_tampering_is_found_at_its_height(
    original: tuple[Path, LedgerChain], tmp_path: Path, name: str, expected_height: int, reason_part: str
) -> None:
    path, ch = original
    u = ch.c.users
    src_db = open_db(path, create=False)
    try:
        tx1, tx2, tx3 = (
            parse_tx(decode(src_db.get(b"t/" + src_db.get(b"i/" + decode(src_db.get(b"b/%012d" % h))["tx_ids"][i].encode())))[2])
            for h, i in ((1, 2), (2, 1), (3, 0))
        )
    finally:
        src_db.close()
    genesis_root_node = node_key(bytes.fromhex(genesis_state(ch.c.genesis).state_root), version_bytes(0))

    def receipts(db: Database) -> None:
        key = b"t/" + db.get(b"i/" + tx2.tx_id.encode())
        record = decode(db.get(key))
        record[3]["status"] = "ok"
        db.put(key, canonical(record))

    edits: dict[str, Callable[[Database], None]] = {
        "block header": _rewrite_block(3, _header_time),
        "tx": _tx_args(2),
        "certificate": _drop_sig,
        "certificate mixing views": _mix_views(ch),
        "certificate without a view": _drop_view,
        "state record": _state(ch),
        "history entry": _history,
        "owner index": lambda db: db.put(owner_key(u[2].public, "WR-1"), b""),
        "tx index": lambda db: db.put(_record_key(db, tx1.tx_id), _moved(db.get(_record_key(db, tx1.tx_id)), 0)),
        "tx pointer moved": lambda db: db.put(b"i/" + tx3.tx_id.encode(), db.get(b"i/" + tx1.tx_id.encode())),
        "tx pointer missing": lambda db: db.delete(b"i/" + tx2.tx_id.encode()),
        "tx pointer not a place": lambda db: db.put(b"i/" + tx1.tx_id.encode(), b"1/2"),
        "stray tx pointer": lambda db: db.put(b"i/" + ("ab" * 32).encode(), db.get(b"i/" + tx3.tx_id.encode())),
        "stray tx record": lambda db: db.put(b"t/%012d%06d" % (3, 7), db.get(_record_key(db, tx3.tx_id))),
        "tx records swapped": _swap_tx_records(tx1.tx_id, tx3.tx_id),
        "block without its last tx": _rewrite_block(3, _drop_last_tx),
        "receipts": receipts,
        "smt node": lambda db: db.delete(genesis_root_node),
        "garbage tx index": lambda db: db.put(b"t/" + db.get(b"i/" + tx3.tx_id.encode()), b"\xc1"),
        "garbage certificate": lambda db: db.put(b"c/%012d" % 4, b"\x93\x01\x02"),
    }
    copy = _tampered(original, tmp_path, edits[name])
    report = _audit(copy, ch)
    assert not report.ok, name
    assert report.height == expected_height, (name, report)
    assert reason_part in report.reason, (name, report.reason)
    if name in DECODED_IN_WORKERS:
        # records decoded and checked in worker processes: the same report, word for word
        assert audit_data_dir(copy, ch.c.genesis, reexecute, workers=2) == report


# tamperings that a worker meets while decoding a block's records (chain/sigcheck.py)
DECODED_IN_WORKERS = frozenset({"tx", "tx records swapped", "garbage tx index", "block without its last tx"})


def test_another_genesis_is_refused(original: tuple[Path, LedgerChain]) -> None:
    from factories import make_consortium

    path, _ = original
    other = make_consortium(chain_id="other-chain")
    report = audit_data_dir(path, other.genesis, reexecute)
    assert not report.ok and report.height == 0


def test_ledger_wrapper_plugs_in_the_contracts(original: tuple[Path, LedgerChain]) -> None:
    from node.runtime.ledger import audit_data_dir as audit_with_contracts

    path, ch = original
    report = audit_with_contracts(path, ch.c.genesis)
    assert report.ok and report.blocks == 5 and report.state_root


def test_a_clean_store_is_compared_whole_not_record_by_record(
    original: tuple[Path, LedgerChain], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the record-by-record comparison (slow: a Python loop over millions of records) runs only to
    # say what differs; the tamperings above show it does when anything does
    from chain.audit_txids import TxIds

    def one_by_one(*args: object) -> bool:
        raise AssertionError("a clean store's tx records and pointers were looked at one by one")

    passes = _spy(monkeypatch, "_apply_records")
    whole = _spy(monkeypatch, "_records_match")
    monkeypatch.setattr(TxIds, "_replayed", one_by_one)
    path, ch = original
    assert _audit(path, ch).ok
    assert [result for _, result in whole] == [True]  # decided by the whole-dict comparison
    assert len(passes) == 1  # its pass over the store; a second is the record-by-record one


def test_the_replay_holds_the_current_tree_not_every_node_ever_written(
    original: tuple[Path, LedgerChain], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the nodes each block retires leave the replay's node dict, so the audit's memory for the
    # tree follows the state's size, not the chain's length (chain/audit_tree.py)
    made = _spy(monkeypatch, "_tree_records")
    path, ch = original
    store = Store.open_read_only(path)
    try:
        assert verify_chain(store, ch.c.genesis, reexecute).ok
        head = smt.root_at(store.get, store.height)
        current = set(smt.node_keys(store.get, head))
        ever = {k for k, _ in store.iterate(smt.NODE_PREFIX)}
    finally:
        store.close()
    assert len(ever) > len(current)  # the story's blocks replaced nodes: there was something to drop
    tree: TreeRecords = made[0][1]
    assert set(tree.nodes) == current


def _first_key(db: Database, prefix: bytes) -> bytes:
    return next(db.keys(prefix))


def _stale_prefix(height: int) -> bytes:
    return b"z/" + version_bytes(height)


@pytest.mark.parametrize(
    ("name", "expected_height", "reason_part"),
    [
        ("tree node missing", 3, "missing from the store"),
        ("tree node altered", 2, "altered"),
        ("leaf data altered", 5, "altered"),
        ("retired mark missing", 5, "missing from the store"),
        ("stray tree node", 5, "not written by any block"),  # no block wrote it: reported at the head
        ("tree node and history entry", 2, "h/WR-1"),  # the lowest height of all differences wins
        # found as block 2 is replayed, before block 4's certificate stops the replay: it wins too
        ("tree node altered, a later certificate garbled", 2, "altered"),
    ],
)
def test_tree_records_are_compared_block_by_block(
    original: tuple[Path, LedgerChain], tmp_path: Path, name: str, expected_height: int, reason_part: str
) -> None:
    # the tree records of heights 1.. are compared as each block is replayed (chain/audit_tree.py),
    # the genesis's at the end ("smt node" above): the same reports either way
    def tree_node_and_history(db: Database) -> None:
        db.delete(_first_key(db, b"n/" + version_bytes(3)))
        _history(db)

    edits: dict[str, Callable[[Database], None]] = {
        "tree node missing": lambda db: db.delete(_first_key(db, b"n/" + version_bytes(3))),
        "tree node altered": lambda db: db.put(_first_key(db, b"n/" + version_bytes(2)), b"\x01" + bytes(80)),
        "leaf data altered": lambda db: db.put(_first_key(db, b"l/" + version_bytes(5)), b"\x00\x01x"),
        "retired mark missing": lambda db: db.delete(_first_key(db, _stale_prefix(5))),
        "stray tree node": lambda db: db.put(b"n/" + version_bytes(1) + bytes(32), b"\x01" + bytes(80)),
        "tree node and history entry": tree_node_and_history,
        "tree node altered, a later certificate garbled": lambda db: (
            db.put(_first_key(db, b"n/" + version_bytes(2)), b"\x01" + bytes(80)),
            db.put(b"c/%012d" % 4, b"\x93\x01\x02"),
        )[-1],
    }
    copy = _tampered(original, tmp_path, edits[name])
    report = _audit(copy, ch=original[1])
    assert not report.ok, name
    assert report.height == expected_height, (name, report)
    assert reason_part in report.reason, (name, report.reason)


def test_records_are_compared_a_chunk_at_a_time(
    original: tuple[Path, LedgerChain], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the final comparison never copies the whole store: with chunks of 2 records the clean store
    # still passes whole, and an altered record in any chunk is still found
    import chain.audit as audit_mod

    monkeypatch.setattr(audit_mod, "_CHUNK", 2)
    path, ch = original
    assert _audit(path, ch).ok
    report = _audit(_tampered(original, tmp_path, _state(ch)), ch)
    assert (report.ok, report.height) == (False, 5) and "s/asset/WR-2" in report.reason, report


def test_an_audit_of_blocks_alone_keeps_no_tree_records_but_the_roots(
    original: tuple[Path, LedgerChain], monkeypatch: pytest.MonkeyPatch
) -> None:
    # with records=False (a node's RPC) nothing is compared at the end: the replay keeps the root
    # records its next updates read, not every tree record ever written
    absorbed = _spy(monkeypatch, "_absorb")
    path, ch = original
    store = Store.open_read_only(path)
    try:
        assert verify_chain(store, ch.c.genesis, reexecute, records=False).ok
        replay = absorbed[0][0][0]  # the first argument: the replay's dict, the same at every call
        assert not replay.keys() & {k for k, _ in store.iterate(b"") if k[:2] in (b"n/", b"l/", b"z/")}
    finally:
        store.close()
    assert {k[:2] for k in replay} >= {b"r/", b"s/"}
