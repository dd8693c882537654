import msgpack
import pytest
from factories import make_block, make_consortium

from chain.block import BlockError, Certificate
from chain.database import open_db
from chain.store import SCHEMA_VERSION, BlockCommit, Store, StoreError
from chain.tx import sign_tx

C = make_consortium(4)


def append_blocks(store: Store, count: int, txs_per_block: int = 3) -> list:
    blocks = []
    prev = store.head.block_hash if store.head else C.genesis.hash
    for _ in range(count):
        h = store.height + 1
        txs = [
            sign_tx(C.issuer, chain_id=C.genesis.chain_id, op="asset.register", args={"asset_id": f"a{h}-{i}"}, expires=10**6, nonce=f"{h}-{i}")
            for i in range(txs_per_block)
        ]
        block, cert = make_block(C, h, prev, txs)
        store.append(BlockCommit(block, cert, [{"tx_id": t.tx_id} for t in txs], {b"s/h%d" % h: b"v", b"s/gone": None}))
        blocks.append(block)
        prev = block.block_hash
    return blocks


def test_append_and_read(tmp_path):
    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        blocks = append_blocks(s, 3)
        assert s.height == 3 and s.head.block_hash == blocks[-1].block_hash
        assert s.get_block(2).block_hash == blocks[1].block_hash
        assert s.height_of(blocks[0].block_hash) == 1
        assert s.tx_location(blocks[2].tx_ids[1]) == (3, 1)
        assert s.get_receipts(3)[1] == {"tx_id": blocks[2].tx_ids[1]}
        assert isinstance(s.get_certificate(1), Certificate)
        assert s.get(b"s/h2") == b"v"
        assert [k for k, _ in s.iterate(b"s/")] == [b"s/h1", b"s/h2", b"s/h3"]
        assert s.get_block(4) is None and s.tx_location("00" * 32) is None


def test_a_tx_and_a_header_are_read_without_their_block(tmp_path):
    """A tx (with its receipt) and a block's header come from their own records: with its block's
    other txs gone they still answer, so no such read touches the rest of the block."""
    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        blocks = append_blocks(s, 2, txs_per_block=4)
        others = [t for t in blocks[1].tx_ids if t != blocks[1].tx_ids[3]]
        for tx_id in others:
            s._db.delete(b"t/" + s._db.get(b"i/" + tx_id.encode()))
        tx = blocks[1].txs[3]
        entry = s.get_tx_entry(tx.tx_id)
        assert (entry.height, entry.index, entry.tx, entry.receipt) == (2, 3, tx.to_plain(), {"tx_id": tx.tx_id})
        assert s.get_tx_entry("00" * 32) is None
        header, tx_ids = s.get_summary(2)
        assert header == blocks[1].header and tx_ids == blocks[1].tx_ids
        assert s.get_receipts(1) == [{"tx_id": t} for t in blocks[0].tx_ids]
        assert s.get_block(1) == blocks[0] and s.get_block_bytes(1) == blocks[0].encode()
        assert s.get_receipts(2) is None  # a block whose records are gone has no receipts
        with pytest.raises(BlockError, match="is missing"):
            s.get_block(2)
        assert s.get_summary(3) is None and s.get_receipts(3) is None and s.get_block(3) is None


def test_receipts_must_match_the_txs(tmp_path):
    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        tx = sign_tx(C.issuer, chain_id=C.genesis.chain_id, op="asset.register", args={"asset_id": "x"}, expires=10**6, nonce="n")
        block, cert = make_block(C, 1, C.genesis.hash, [tx])
        with pytest.raises(StoreError, match="0 receipts for 1 txs"):
            s.append(BlockCommit(block, cert, [], {}))
        assert s.height == 0 and s.get_tx_entry(tx.tx_id) is None


def test_refuses_gaps_bad_links_and_reserved_keys(tmp_path):
    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        append_blocks(s, 1)
        block, cert = make_block(C, 3, s.head.block_hash, [])
        with pytest.raises(StoreError, match="onto head"):
            s.append(BlockCommit(block, cert, [], {}))
        block, cert = make_block(C, 2, "00" * 32, [])
        with pytest.raises(StoreError, match="link"):
            s.append(BlockCommit(block, cert, [], {}))
        block, cert = make_block(C, 2, s.head.block_hash, [])
        with pytest.raises(StoreError, match="store-owned"):
            s.append(BlockCommit(block, cert, [], {b"b/000000000009": b"x"}))
        assert s.height == 1


def test_reopen_checks_genesis_and_schema(tmp_path):
    path = tmp_path / "db"
    with Store.create_or_open(path, C.genesis) as s:
        append_blocks(s, 2)
    with Store.create_or_open(path, C.genesis) as s:
        assert s.height == 2
    other = make_consortium(4, chain_id="other-chain").genesis
    with pytest.raises(StoreError, match="another chain"):
        Store.create_or_open(path, other)
    db = open_db(path, create=False)
    db.put(b"m/schema", b"99")
    db.close()
    with pytest.raises(StoreError, match="schema"):
        Store.create_or_open(path, C.genesis)


def test_a_data_dir_of_the_previous_schema_is_refused_naming_both_versions(tmp_path):
    """Version 1 stored certificates without a view: such a chain cannot be carried over."""
    path = tmp_path / "db"
    with Store.create_or_open(path, C.genesis) as s:
        append_blocks(s, 1)
    previous = str(int(SCHEMA_VERSION) - 1)
    db = open_db(path, create=False)
    db.put(b"m/schema", previous.encode())
    db.close()
    for opening in (lambda: Store.create_or_open(path, C.genesis), lambda: Store.open_read_only(path)):
        with pytest.raises(StoreError) as refused:
            opening()
        message = str(refused.value)
        assert f"schema version {previous}, this titlechain reads version {SCHEMA_VERSION.decode()}" in message
        assert "new genesis" in message and "empty data dir" in message
    db = open_db(path, create=False)
    assert db.get(b"m/schema") == previous.encode()  # refused, never rewritten
    db.close()


def test_head_disagreeing_with_blocks_is_found(tmp_path):
    path = tmp_path / "db"
    with Store.create_or_open(path, C.genesis) as s:
        append_blocks(s, 2)
    db = open_db(path, create=False)
    db.delete(b"b/000000000002")
    db.close()
    with pytest.raises(StoreError, match="head record disagrees"):
        Store.create_or_open(path, C.genesis)


def test_read_only_copy_while_writer_holds_lock(tmp_path):
    path = tmp_path / "db"
    writer = Store.create_or_open(path, C.genesis)
    append_blocks(writer, 2)
    with Store.open_read_only(path, C.genesis.hash) as ro:
        assert ro.height == 2 and ro.get_block(1) is not None
        block, cert = make_block(C, 3, ro.head.block_hash, [])
        with pytest.raises(StoreError, match="read-only"):
            ro.append(BlockCommit(block, cert, [], {}))
    append_blocks(writer, 1)
    writer.close()
    with pytest.raises(StoreError, match="another chain"):
        Store.open_read_only(path, "00" * 32)
    with pytest.raises(StoreError, match="not a node.s data dir"):
        Store.open_read_only(tmp_path / "nothing")


def test_a_block_decoded_in_a_worker_is_rebuilt_as_the_strict_decode_gives_it(tmp_path):
    # the audit's own process takes each tx's bytes and id where a worker found them (chain/sigcheck.py);
    # 130 txs: indexes from 128 on pack in two bytes, which moves every later offset
    from chain.sigcheck import check_raw_blocks
    from chain.txrecords import block_from_records, unchecked_block

    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        append_blocks(s, 1, txs_per_block=2)
        append_blocks(s, 1, txs_per_block=130)
        for height in (1, 2):
            raw = s.read_raw_block(height)
            _, error, bad, layouts = check_raw_blocks([(height, raw)])[0]
            assert (error, bad, len(layouts)) == (None, [], len(raw.records))
            block, receipts = unchecked_block(raw, layouts)
            strict, strict_receipts = block_from_records(raw)
            assert block == strict and receipts == strict_receipts
            for tx, want in zip(block.txs, strict.txs, strict=True):
                assert (tx.body_bytes, tx.tx_id, tx.encode()) == (want.body_bytes, want.tx_id, want.encode())
                assert tx.body == want.body and tx.sig == want.sig


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: msgpack.packb([v[0], v[1], {"sig": v[2]["sig"], "body": v[2]["body"]}, v[3]]),  # keys out of order
        lambda v: msgpack.packb([v[0], v[1], v[2], v[3], 0]),  # not [height, index, tx, receipt]
        lambda v: msgpack.packb(v) + b"\x00",  # a byte after the value
    ],
)
def test_a_damaged_tx_record_is_named_by_its_index_whatever_the_others(tmp_path, damage):
    # the records of a block are decoded together (chain.encoding.decode_all); one bad record among
    # good ones is still reported as that tx's, as a decode of each alone reports it
    from chain.encoding import decode
    from chain.txrecords import RawBlock, block_from_records

    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        append_blocks(s, 1, txs_per_block=5)
        raw = s.read_raw_block(1)
    records = list(raw.records)
    records[3] = damage(decode(records[3]))
    bad = RawBlock(raw.height, raw.header, raw.tx_ids, records)
    with pytest.raises(BlockError, match=r"the record \(t/\) of tx 3 .* does not decode"):
        block_from_records(bad)


def test_a_blocks_writes_put_values_empty_ones_too_and_delete_none(tmp_path):
    with Store.create_or_open(tmp_path / "db", C.genesis) as s:
        block, cert = make_block(C, 1, C.genesis.hash, [])
        s.append(BlockCommit(block, cert, [], {b"s/a": b"1", b"o/x": b"", b"s/b": b"2"}))
        block, cert = make_block(C, 2, s.head.block_hash, [])
        s.append(BlockCommit(block, cert, [], {b"s/a": None, b"o/y": b"", b"s/b": b"3", b"s/never": None}))
        assert [s.get(k) for k in (b"s/a", b"o/x", b"o/y", b"s/b", b"s/never")] == [None, b"", b"", b"3", None]
        # one store-owned key among good ones: the whole block is refused, nothing of it written
        block, cert = make_block(C, 3, s.head.block_hash, [])
        with pytest.raises(StoreError, match="store-owned"):
            s.append(BlockCommit(block, cert, [], {b"s/c": b"4", b"m/head": b"x", b"s/b": None}))
        assert s.height == 2 and s.get(b"s/c") is None and s.get(b"s/b") == b"3"
