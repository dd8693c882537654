"""A real node over a data dir with one hex digit changed inside a table file: it never serves the
altered value. Either it refuses to start, or the read fails its checksum and the node stops, and
in both cases the message names the corruption."""

from __future__ import annotations

from pathlib import Path

from solo import Solo

from chain.database import open_db
from chain.encoding import decode
from node.sdk.client import Client, RpcError

ASSETS = 6


def _committed_data_dir(solo: Solo) -> None:
    solo.start()
    solo.wait_ready()
    with Client(solo.rpc, timeout=10) as client:
        for i in range(ASSETS):
            assert solo.register(client, f"WR-dmg-{i}")["receipt"]["status"] == "ok"
    assert solo.stop() == 0
    db = open_db(solo.data_dir, create=False)  # as the node writes them: values stay readable
    db.compact_range()  # everything into table files, as a node's data is after a while
    db.close()


def _flip_hex_digit(data_dir: Path, value: bytes, within: bytes) -> None:
    """Change one hex digit of `within` (a part of `value`) wherever `value` lies in a table file:
    a state value is stored twice, in its s/ record and in its tree leaf's data (l/)."""
    at = value.index(within) + len(within) // 2
    found = 0
    for table in sorted(data_dir.glob("*.sst")):
        raw = bytearray(table.read_bytes())
        pos = raw.find(value)
        while pos >= 0:
            old = raw[pos + at]
            raw[pos + at] = ord("0") if old != ord("0") else ord("1")
            found += 1
            pos = raw.find(value, pos + 1)
        table.write_bytes(bytes(raw))
    assert found, "the value is in no table file"


def _read_unchecked(data_dir: Path, key: bytes) -> bytes | None:
    db = open_db(data_dir, create=False)
    try:
        return db.get(key, verify_checksums=False)
    finally:
        db.close()


def test_a_changed_owner_digit_is_never_served(solo: Solo) -> None:
    _committed_data_dir(solo)
    key = b"s/asset/WR-dmg-3"
    value = _read_unchecked(solo.data_dir, key)
    owner = solo.consortium.users[0].public.encode()
    _flip_hex_digit(solo.data_dir, value, owner)
    # what the bug was: a read without checksum verification returns the altered record silently
    altered = _read_unchecked(solo.data_dir, key)
    assert altered is not None and altered != value and owner not in altered

    solo.start()
    try:
        solo.wait_ready(20)
    except AssertionError:
        pass  # refused to start: the message must say why (checked below)
    if solo.proc.poll() is None:
        with Client(solo.rpc, timeout=5) as client:
            try:
                asset = client.asset("WR-dmg-3")
            except (RpcError, OSError):
                asset = None
            assert asset is None or asset["owner"] == owner.decode(), asset  # never the altered owner
    assert solo.wait_exit(20) != 0
    assert "Corruption" in solo.log_text() and "checksum" in solo.log_text(), solo.log_text()[-2000:]


def test_a_damaged_head_block_refuses_to_start(solo: Solo) -> None:
    _committed_data_dir(solo)
    key = b"b/%012d" % ASSETS
    value = _read_unchecked(solo.data_dir, key)
    # the stored block is its header and tx ids (store schema 5): damage the header's state root
    _flip_hex_digit(solo.data_dir, value, decode(value)["header"]["state_root"].encode())
    solo.start()
    assert solo.wait_exit(20) != 0
    text = solo.log_text()
    assert "error:" in text and "Corruption" in text and str(solo.data_dir) in text, text[-2000:]
