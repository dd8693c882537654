"""The store's tx records (chain/store.py): each committed tx with its receipt under its place,
`t/<height:012d><index:06d>` = canonical [height, index, tx, receipt], and found by id through
`i/<tx_id>` = its place. Encoding, decoding, and a block rebuilt from its records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from chain.block import Block, BlockError, Header
from chain.encoding import Value, canonical, decode, decode_all, pack_normalized
from chain.receipt import Receipt
from chain.tx import known_tx, parse_tx

TX_RECORD_PREFIX = b"t/"
TX_INDEX_PREFIX = b"i/"


def tx_place(height: int, index: int) -> bytes:
    return b"%012d%06d" % (height, index)


def parse_place(raw: bytes) -> tuple[int, int] | None:
    """(height, index) of a place as `tx_place` spells it (t/ keys, i/ pointers); None for anything else."""
    if len(raw) != 18 or not raw.isdigit():
        return None
    return int(raw[:12]), int(raw[12:])


def tx_record_key(height: int, index: int) -> bytes:
    return TX_RECORD_PREFIX + tx_place(height, index)


def tx_index_key(tx_id: str) -> bytes:
    return TX_INDEX_PREFIX + tx_id.encode()


@dataclass(frozen=True)
class TxEntry:
    """A committed tx as its record holds it: where it is, the tx (plain: chain.tx.parse_tx makes
    it a Tx) and its receipt."""

    height: int
    index: int
    tx: dict[str, Any]
    receipt: Receipt


@dataclass(frozen=True)
class RawBlock:
    """A block as stored: its header and tx ids (from b/<height>) and each tx's t/ record, undecoded
    (None: missing). The audit reads these and has them decoded and checked in worker processes."""

    height: int
    header: Header
    tx_ids: list[str]
    records: list[bytes | None]


# where a tx sits in its canonical record: (start of its body, end of its body, end of the tx);
# the tx itself starts 6 bytes before its body (a 2-entry map header and the key "body")
TxLayout = tuple[int, int, int]
_BODY_KEY_BYTES = 6


def block_from_records(raw: RawBlock) -> tuple[Block, list[Receipt]]:
    """The block and its receipts from its records, each decoded strictly (canonical form), its tx
    parsed in full and found at its place; raises BlockError (TxError for a malformed tx)."""
    txs = []
    receipts: list[Receipt] = []
    values = _decode_records(raw.records)
    for index, (tx_id, record) in enumerate(zip(raw.tx_ids, raw.records, strict=True)):
        where = f"block {raw.height}: the record (t/) of tx {index} ({tx_id[:16]}…)"
        if record is None:
            raise BlockError(f"{where} is missing")
        try:
            entry = _tx_entry(values[index]) if values is not None else decode_tx_entry(record)
        except ValueError as e:
            raise BlockError(f"{where} does not decode: {e}") from None
        tx = parse_tx(entry.tx, decoded=True)  # the strict decode above checked its canonical form
        if (entry.height, entry.index, tx.tx_id) != (raw.height, index, tx_id):
            raise BlockError(f"{where} holds another tx or place")
        txs.append(tx)
        receipts.append(entry.receipt)
    return Block(raw.header, tuple(txs)), receipts


def tx_layouts(raw: RawBlock, block: Block, receipts: list[Receipt]) -> list[TxLayout]:
    """Where each tx of a block `block_from_records` decoded sits in its record, for
    `unchecked_block`. Raises BlockError if a tx's bytes are not there (a canonical record is
    [height, index, tx, receipt] packed one after the other, the tx's body first in the tx)."""
    layouts = []
    height_bytes = len(canonical(raw.height))
    for index, (record, tx, receipt) in enumerate(zip(raw.records, block.txs, receipts, strict=True)):
        assert record is not None  # block_from_records refused a missing one
        body_start = 1 + height_bytes + len(canonical(index)) + _BODY_KEY_BYTES
        body_end = body_start + len(tx.body_bytes)
        tx_end = len(record) - len(pack_normalized(receipt))  # strictly decoded: in canonical form
        if record[body_start:body_end] != tx.body_bytes or record[body_start - _BODY_KEY_BYTES : tx_end] != tx.encode():
            raise BlockError(f"block {raw.height}: the record (t/) of tx {index} is not laid out canonically")
        layouts.append((body_start, body_end, tx_end))
    return layouts


def unchecked_block(raw: RawBlock, layouts: list[TxLayout]) -> tuple[Block, list[Receipt]]:
    """`block_from_records` for records already decoded so in another process, which found each tx
    at `layouts` (chain/sigcheck.py): a plain msgpack decode, each tx's bytes and id taken as they
    are (the id from the block's summary, which that process found each tx's id equal to)."""
    txs = []
    receipts: list[Receipt] = []
    for record, tx_id, (body_start, body_end, tx_end) in zip(raw.records, raw.tx_ids, layouts, strict=True):
        assert record is not None
        _, _, tx, receipt = msgpack.unpackb(record, raw=False, use_list=True)
        encoded = record[body_start - _BODY_KEY_BYTES : tx_end]
        txs.append(known_tx(tx["body"], tx["sig"], record[body_start:body_end], tx_id, encoded))
        receipts.append(receipt)
    return Block(raw.header, tuple(txs)), receipts


def tx_entry_bytes(height: int, index: int, tx_bytes: bytes, receipt_bytes: bytes) -> bytes:
    """canonical([height, index, tx, receipt]) from the tx's and receipt's own canonical bytes.

    Written for every tx of every block: a 4-array's header is the one byte 0x94, and msgpack
    packs an int (a height or index, never out of range) in its smallest form, as canonical does."""
    place: bytes = msgpack.packb(height) + msgpack.packb(index)  # msgpack is untyped
    return b"\x94" + place + tx_bytes + receipt_bytes


def _decode_records(records: list[bytes | None]) -> list[Value] | None:
    """Every record strictly decoded at once (chain.encoding.decode_all); None if one is missing or
    bad: the caller then decodes them one by one, to report the first bad one at its index."""
    if None in records:
        return None
    try:
        return decode_all(records)  # type: ignore[arg-type]  # none is None
    except ValueError:
        return None


def decode_tx_entry(raw: bytes) -> TxEntry:
    """A t/ record (raises ValueError for one that is not [height, index, tx, receipt])."""
    return _tx_entry(decode(raw))


def _tx_entry(value: Value) -> TxEntry:
    if type(value) is not list or len(value) != 4:
        raise ValueError("a tx record is not [height, index, tx, receipt]")
    height, index, tx, receipt = value
    return TxEntry(height, index, tx, receipt)


