"""Retention: a store that prunes old state versions keeps every version from its horizon whole,
never the snapshot a joining node may sync from, and audits clean over the range it kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ledger_fixtures import LedgerChain, build_story

from chain import smt
from chain.audit import audit_data_dir
from chain.database import open_db
from chain.retention import Retention, snapshot_height
from chain.store import Store
from contracts.apply import reexecute

PRUNING = Retention(keep=2, snapshot_interval=2)  # jumps of 2: every commit reaches the horizon


def test_the_horizon_keeps_recent_heights_and_the_two_latest_snapshots() -> None:
    assert Retention().horizon(10**6) == 0  # archive
    r = Retention(keep=10, snapshot_interval=100)
    for head in range(1000):
        h = r.horizon(head)
        assert 0 <= h <= head - 9 or h == 0
        # the latest snapshot and the one before it are kept whole
        assert h <= max(0, snapshot_height(head, 100) - 100)
    assert r.horizon(1000) == 900 and r.horizon(1099) == 900 and r.horizon(1100) == 1000
    assert Retention(keep=500, snapshot_interval=100).horizon(1000) == 501
    with pytest.raises(ValueError):
        Retention(keep=0)
    with pytest.raises(ValueError):
        Retention(keep=5, snapshot_interval=0)


def test_a_horizon_that_jumps_is_pruned_over_the_next_commits() -> None:
    r = Retention(keep=1, snapshot_interval=100)
    assert r.horizon(999) == 800 and r.horizon(1000) == 900  # the jump at a snapshot height
    state_from, steps = 800, []
    for head in range(1000, 1030):
        state_from = r.next_state_from(state_from, head)
        steps.append(state_from)
    assert steps[:3] == [804, 808, 812] and steps[24:] == [900] * 6  # 4 heights a commit, then held
    assert r.next_state_from(950, 1000) == 950  # never back
    assert Retention().next_state_from(0, 10**6) == 0  # an archive prunes nothing


def _grow(ch: LedgerChain, blocks: int) -> None:
    u = ch.c.users
    for i in range(blocks):
        ch.block([ch.register(f"P-{i}", u[i % 3]), ch.transfer("WR-2", *((u[5], u[1]) if i % 2 == 0 else (u[1], u[5])))])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, LedgerChain]:
    base = tmp_path_factory.mktemp("retention")
    archive, pruned = build_story(base / "archive"), build_story(base / "pruned", PRUNING)
    for ch in (archive, pruned):
        _grow(ch, 6)
        ch.close()
    return base / "archive", base / "pruned", pruned


def _keys(path: Path, prefix: bytes) -> list[bytes]:
    db = open_db(path, create=False)
    try:
        return list(db.keys(prefix))
    finally:
        db.close()


def test_a_pruning_store_keeps_every_version_from_its_horizon(pruned: tuple[Path, Path, LedgerChain]) -> None:
    archive, path, _ = pruned
    with Store.open_read_only(path) as store:
        head = store.height
        assert head == 11 and store.state_from == PRUNING.horizon(head) == 8
        values = {k[2:]: v for k, v in store.iterate(b"s/")}
        for height in range(store.state_from, head + 1):
            smt.check_root(store.get, height, store.get_summary(height)[0].state_root)
        root = smt.root_at(store.get, head)
        for key, value in values.items():
            assert smt.verify_proof(root[0].hex(), key, value, smt.prove(root, key, store.get))
        for height in range(store.state_from):
            with pytest.raises(smt.SmtError):
                smt.root_at(store.get, height)
    # the pruned store holds fewer nodes than the archive; blocks and indexes are all there
    assert len(_keys(path, b"n/")) < len(_keys(archive, b"n/"))
    for prefix in (b"b/", b"t/", b"h/", b"s/", b"o/"):
        assert _keys(path, prefix) == _keys(archive, prefix), prefix


def test_every_node_of_a_kept_version_is_reachable(pruned: tuple[Path, Path, LedgerChain]) -> None:
    # a node retired at or below the horizon is gone; every other stays and is reachable
    _, path, _ = pruned
    with Store.open_read_only(path) as store:
        reachable: set[bytes] = set()
        for height in range(store.state_from, store.height + 1):
            reachable.update(smt.node_keys(store.get, smt.root_at(store.get, height)))
        assert {k for k, _ in store.iterate(smt.NODE_PREFIX)} == reachable


def test_the_audit_says_which_state_versions_it_compared(pruned: tuple[Path, Path, LedgerChain]) -> None:
    archive, path, ch = pruned
    report = audit_data_dir(archive, ch.c.genesis, reexecute)
    assert report.ok and report.state_versions == (0, 11), report
    report = audit_data_dir(path, ch.c.genesis, reexecute)
    assert report.ok and report.state_versions == (8, 11), report
    assert "heights 8..11 compared" in report.coverage and "0..7 were pruned" in report.coverage


def test_a_node_missing_from_a_kept_version_fails_the_audit(
    pruned: tuple[Path, Path, LedgerChain], tmp_path: Path
) -> None:
    _, path, ch = pruned
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with Store.open_read_only(copy) as store:
        h, version = smt.root_at(store.get, store.state_from)
    db = open_db(copy, create=False)
    db.delete(smt.node_key(h, version))
    db.close()
    report = audit_data_dir(copy, ch.c.genesis, reexecute)
    assert not report.ok and "missing from the store" in report.reason, report


def test_state_from_survives_a_reopen_and_never_moves_back(pruned: tuple[Path, Path, LedgerChain], tmp_path: Path) -> None:
    _, path, ch = pruned
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    with Store.create_or_open(copy, ch.c.genesis) as store:  # reopened as an archive
        assert store.state_from == 8
        assert store.retention.archive
