"""State sync without the network: a store served, imported chunk by chunk, then followed.

The synced store must hold what a replayed one holds at its base (bar history below it), keep
following blocks to the same roots, refuse a tx of its window again, answer proofs, and audit
clean from its base, and not clean once a record is altered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import LedgerChain, build_story_across_a_set_change, sync_locally

from chain import smt, snapshot
from chain.audit import audit_data_dir
from chain.encoding import EncodingError, canonical, decode
from chain.proofcheck import verify_ownership_proof
from chain.snapshot import SnapshotError, StateChunk
from chain.store import Store, StoreError
from chain.sync_anchor import SyncVerifyError, parse_window, verify_anchor, verify_window
from contracts.apply import reexecute
from contracts.proofs import build_ownership_proof
from contracts.snapshot_rules import RULES
from contracts.snapshot_source import SnapshotSource, Unavailable
from contracts.state_sync import StateSync
from node.runtime.ledger import Ledger, LedgerError

APPLY_PREFIXES = (b"s/", b"o/", b"v/")  # records of the state now (n/ and l/ also keep past trees)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> LedgerChain:
    ch = build_story_across_a_set_change(tmp_path_factory.mktemp("sync") / "full")
    yield ch
    ch.close()


def unversioned(recs: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """n/ and l/ records keyed by prefix and hash, an inner node without its children's versions."""
    return {k[:2] + k[10:]: (v[:65] if k.startswith(b"n/") else v) for k, v in recs.items()}


def records(store: Store, prefixes: tuple[bytes, ...] = APPLY_PREFIXES) -> dict[bytes, bytes]:
    return {k: v for k, v in store.iterate(b"") if k.startswith(prefixes)}


@pytest.mark.parametrize("height", [7, 8])  # 7 made the new validator set; 8 is certified by it
def test_a_synced_store_holds_the_state_and_follows(
    full: LedgerChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, height: int
) -> None:
    monkeypatch.setattr(snapshot, "MAX_CHUNK_LEAVES", 3)  # many chunks from a small state
    replayed = LedgerChain(tmp_path / "replayed", full.c)
    for h in range(1, height + 1):
        block = full.ledger.store.get_block(h)
        replayed.ledger.commit(block, full.ledger.store.get_certificate(h))
    store = sync_locally(full.ledger.store, tmp_path / "synced", full, height)
    assert (store.base_height, store.height) == (height, height)
    assert records(store) == records(replayed.ledger.store)
    # the tree of the base only, every node of it at version S (a replayed store holds every
    # version): the same nodes and leaves' data, versions aside
    tree = unversioned(records(store, (b"n/", b"l/")))
    assert tree.items() <= unversioned(records(replayed.ledger.store, (b"n/", b"l/"))).items()
    assert all(k[2:10] == smt.version_bytes(height) for k in records(store, (b"n/", b"l/")))
    assert len([k for k in tree if k.startswith(b"l/")]) == len(records(store, (b"s/",)))
    store.close()
    synced = Ledger.open(tmp_path / "synced", full.c.genesis)
    try:
        assert synced.validator_set_at(height + 1).hash == replayed.ledger.validator_set_at(height + 1).hash
        u = full.c.users
        txs = [replayed.transfer("WR-2", u[5], u[1]), replayed.register("WR-9", u[7])]
        block = replayed.block(txs)
        synced.commit(block, replayed.certify(block))
        assert synced.state_root == replayed.ledger.state_root
        # a tx of the window (committed at height 1, below the base) must not commit again
        old = full.ledger.store.get_block(1).txs[0]
        again = replayed.ledger.propose([old], 0, block.header.proposer, block.header.time + 1)
        with pytest.raises(LedgerError, match="already committed"):
            synced.validate(again)
        proof = build_ownership_proof(synced.store, "WR-9")
        assert verify_ownership_proof(proof, full.c.genesis).ok
    finally:
        synced.close()
        replayed.close()
    report = audit_data_dir(tmp_path / "synced", full.c.genesis, reexecute, base_rules=RULES)
    assert report.ok, report.reason
    assert (report.base, report.blocks) == (height, 1)


def test_the_audit_from_the_base_finds_an_altered_record(full: LedgerChain, tmp_path: Path) -> None:
    store = sync_locally(full.ledger.store, tmp_path / "synced", full, 8)
    tx_id = next(k for k, _ in store.iterate(b"w/"))[2:]
    store._db.put(b"w/" + tx_id, canonical([3, 0]))  # the window now misplaces a tx
    store.close()
    report = audit_data_dir(tmp_path / "synced", full.c.genesis, reexecute, base_rules=RULES)
    assert not report.ok and report.height == 8 and "w/" in report.reason
    store = sync_locally(full.ledger.store, tmp_path / "other", full, 8)
    key = next(k for k, _ in store.iterate(b"s/asset/"))
    store._db.put(key, b"\x80")
    store.close()
    report = audit_data_dir(tmp_path / "other", full.c.genesis, reexecute, base_rules=RULES)
    assert not report.ok and "s/asset/" in report.reason


def test_a_wrong_answer_is_refused_and_nothing_of_it_written(full: LedgerChain, tmp_path: Path) -> None:
    src = SnapshotSource(full.ledger.store)
    sync = StateSync(tmp_path / "synced", full.c.genesis)
    a = src.anchor(8, 0)
    forged = dict(a.certificate, signatures=a.certificate["signatures"][:1])  # one signer: no quorum
    with pytest.raises(SyncVerifyError, match="certificate"):
        sync.take_anchor(a.changes, a.header, forged)
    with pytest.raises(SyncVerifyError, match="validators_hash"):
        sync.take_anchor([], a.header, a.certificate)  # the change to five validators left out
    sync.take_anchor(a.changes, a.header, a.certificate)
    window = src.window(8, 8)
    window[1]["tx_ids"] = window[1]["tx_ids"][1:]
    with pytest.raises(SyncVerifyError, match="tx_root"):
        sync.take_window(window)
    assert sync.window_next == 8
    chunk = src.state_chunk(8, 0, snapshot.TOP)
    altered = StateChunk(chunk.state_root, chunk.lo, chunk.hi, chunk.leaves[1:], chunk.outside)
    with pytest.raises(SnapshotError):
        sync.take_chunk(altered)
    assert sync.coverage.covered() == 0
    with pytest.raises(SnapshotError, match="window"):
        sync.finish()
    sync.abandon()
    with pytest.raises(StoreError, match="unfinished state sync"):
        Store.create_or_open(tmp_path / "synced", full.c.genesis)
    # begun again, the unfinished dir is wiped and the sync completes
    assert sync_locally(full.ledger.store, tmp_path / "synced", full, 8).height == 8


def test_a_source_serves_only_heights_it_holds(full: LedgerChain, tmp_path: Path) -> None:
    src = SnapshotSource(full.ledger.store)
    with pytest.raises(Unavailable):
        src.state_chunk(99, 0, snapshot.TOP)
    synced = sync_locally(full.ledger.store, tmp_path / "synced", full, 6)
    try:
        again = SnapshotSource(synced)  # a synced node serves from its base on, window included
        assert again.offer() == 6 and len(again.window(6, 6)) == 6
        with pytest.raises(Unavailable):
            again.anchor(5, 0)
        assert sync_locally(synced, tmp_path / "second", full, 6).height == 6
    finally:
        synced.close()
    with pytest.raises(StoreError, match="already holds a chain"):
        StateSync(tmp_path / "second", full.c.genesis)


def _flip(data: st.DataObject, raw: bytes) -> bytes:
    out = bytearray(raw)
    at = data.draw(st.integers(0, len(out) - 1))
    out[at] ^= data.draw(st.integers(1, 255))
    return bytes(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_byte_altered_in_an_anchor_or_a_window_chunk_fails(full: LedgerChain, data: st.DataObject) -> None:
    src = SnapshotSource(full.ledger.store)
    a = src.anchor(8, 0)
    anchor = canonical({"changes": a.changes, "header": a.header, "certificate": a.certificate})
    try:
        altered = decode(_flip(data, anchor))
        parts = altered["changes"], altered["header"], altered["certificate"]
    except (EncodingError, KeyError):
        parts = None  # no longer canonical, or a field renamed: the message parser refuses it
    if parts is not None:
        with pytest.raises(SyncVerifyError):  # and nothing else: a peer's bytes never crash the sync
            verify_anchor(full.c.genesis, *parts)
    head = full.ledger.store.get_summary(8)[0]
    window = canonical(src.window(8, 8))
    try:
        summaries = parse_window(decode(_flip(data, window)))
    except (EncodingError, SyncVerifyError):
        return
    with pytest.raises(SyncVerifyError):
        verify_window(summaries, 8, head.block_hash)
