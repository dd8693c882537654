"""The block store: one RocksDB per node (chain/database.py).

Keys (all bytes; heights are 12 zero-padded decimal digits so that keys sort by height):

    m/schema            schema version            m/genesis_hash   m/genesis (canonical doc)
    m/head              canonical {"height", "block_hash", "state_root"}
    m/state_from        the first height whose state tree is kept whole (absent: 0, every height)
    b/<height>          canonical {"header", "tx_ids"}  c/<height>  canonical certificate
    x/<block_hash>      height
    t/<height><index>   canonical [height, index, tx, receipt]   (index: 6 zero-padded digits)
    i/<tx_id>           <height><index> of its t/ record, as in that key (24 bytes)

A store made by state sync starts at a base height S: its own records for that (m/base, k/, y/,
w/) are listed in chain/store_sync.py; blocks below S are not held (`base_height`).

A block is kept as its header and tx ids, and each of its txs once, in its own record with its
receipt: a tx is answered with one small read whatever the size of its block (reading and
decoding a 4,000-tx block, ~1.6 MB, for one tx took ~100-300 ms), a header without decoding any
tx, and no tx's bytes are written twice (the commit is the node's hot path: docs/performance.md,
Reads). A whole block (audits, catch-up) is its summary plus its txs' records, one range read.
The records are keyed by their place, so each block's sort after every earlier one and the database's
compactions do not rewrite them again and again as the chain grows; only the small i/ pointers
land all over the key space (docs/performance.md, Store layout).

Everything else (state records, authenticated-state nodes, history, indexes) belongs to the
apply path, which hands its writes to `append` so that a block and all it changes land in
ONE synced write batch: after a crash the store holds all of a block or none of it. The head
record is derived from the blocks, so `open` checks it against them and refuses to start if
they disagree. A store opened with a pruning `Retention` (chain/retention.py) also deletes, in
that same batch, the state-tree nodes that no kept state version holds any more.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat, starmap
from operator import is_, is_not, itemgetter
from pathlib import Path
from typing import Any, Self

from chain import smt
from chain.block import Block, BlockError, Certificate, Header
from chain.database import (
    DEFAULT_MEMORY,
    SCHEMA_VERSION,
    Database,
    DatabaseError,
    DbMemory,
    WriteBatch,
    check_identity,
    open_db,
    prefix_end,
    refuse_leveldb_dir,
)
from chain.database import StoreError as StoreError  # noqa: PLC0414 (a re-export; raised by opening a store too)
from chain.encoding import canonical, canonical_map, decode
from chain.genesis import Genesis
from chain.receipt import Receipt
from chain.retention import ARCHIVE, Retention
from chain.txrecords import (
    TX_INDEX_PREFIX,
    TX_RECORD_PREFIX,
    RawBlock,
    TxEntry,
    block_from_records,
    decode_tx_entry,
    parse_place,
    tx_entry_bytes,
    tx_index_key,
    tx_place,
    tx_record_key,
)

# The version of the data dir; a store of another version is refused, never converted.
#   2: certificates name their view (commit signatures v2): its certificates cannot be re-signed,
#      so the chain restarts from a new genesis
#   3: the state holds standing/<account> (admission), so state roots differ from version 2
#   4: history is indexed only under ids an asset holds (contracts/apply.py), so a version-3 data
#      dir may hold entries that a version-4 audit would not recompute
#   5: b/<height> holds the header and tx ids; each tx and its receipt are in t/<tx_id>
#      ([height, index, tx, receipt]); no per-block receipts list (O(1) tx and header reads)
#   6: state-tree nodes keyed by the height that wrote them (n/<version><hash>, chain/smt.py), with
#      root records r/<height> and retired-node marks z/; m/state_from when pruned; tx records
#      keyed by their place (t/<height><index>), found by id through i/<tx_id>
#   7: l/<version><leaf hash> holds each state leaf's key and value (state snapshots), and a store
#      may start at a base height (state sync: m/base, k/, y/, w/)
#   8: a stored leaf that an update only moves down (a new sibling beside it) stays where it was
#      stored, neither written again nor retired (chain/smt.py): a block writes other records than
#      a version-7 node did, so an audit replaying a version-7 store would not match it; the nodes
#      a block retires are one record, z/<height> (was a z/ record per node)
#   9: the database is RocksDB (chain/database.py), no longer LevelDB: the records are those of
#      version 8, the files are another engine's
#  10: a z/ record counts its leaves and lists them first, so that pruning deletes an l/ record
#      for a retired leaf only, not a tombstone for every retired inner node (chain/smt.py)
#  11: the state tree has sixteen children a node (chain/smt.py: 641-byte inner records), so every
#      state root differs from version 10's for the same state: a new genesis
#  12: an inner node's record and hash leave its empty children out (a bitmap names the others:
#      chain/smt.py), so a record is 3 + 40 bytes a child, not 641, and every state root differs
#      from version 11's for the same state: a new genesis
# (SCHEMA_VERSION, the current one, is in chain/database.py)
RESERVED_PREFIXES = (b"m/", b"b/", b"c/", b"x/", b"t/", b"i/", b"k/", b"y/", b"w/")
_RESERVED = frozenset(RESERVED_PREFIXES)  # every prefix is 2 bytes: key[:2] in _RESERVED is the test

class StoreFault(StoreError):
    """The database failed under us: a write that did not land (disk full, file-size limit, I/O
    error) or a record that fails its checksum. Never retried or ignored: whoever holds the store
    must stop, since its memory and its disk may now disagree."""


def height_key(prefix: bytes, height: int) -> bytes:
    return prefix + b"%012d" % height


@dataclass(frozen=True)
class Head:
    height: int
    block_hash: str
    state_root: str


@dataclass(frozen=True)
class BlockCommit:
    """All that one committed block writes, applied atomically by `Store.append`."""

    block: Block
    certificate: Certificate
    receipts: list[Receipt]
    writes: Mapping[bytes, bytes | None]  # apply-path keys; None deletes
    packed_receipts: Sequence[bytes] | None = None  # canonical(receipt) of each, if the caller has them (apply does)


class Store:
    def __init__(
        self, db: Database, path: Path, read_only: bool, tmp_copy: Path | None, retention: Retention = ARCHIVE
    ) -> None:
        self._db = db
        self.path = path
        self.read_only = read_only
        self._tmp_copy = tmp_copy
        self.retention = retention
        # called with every StoreFault before it is raised (the validator stops on it)
        self.on_fault: Callable[[StoreFault], None] | None = None
        self.genesis_hash: str = (db.get(b"m/genesis_hash") or b"").decode()  # checked by check_identity
        self.base: Head | None = self._load_base()
        self._head = self._load_head()
        raw_from = db.get(b"m/state_from")
        self._state_from = int(raw_from) if raw_from is not None else 0

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create_or_open(
        cls,
        path: str | Path,
        genesis: Genesis,
        initial_writes: Mapping[bytes, bytes] | None = None,
        retention: Retention = ARCHIVE,
        memory: DbMemory = DEFAULT_MEMORY,
    ) -> Store:
        """Open a node's data dir, creating it for this genesis if it does not exist yet.

        `initial_writes` (the genesis state, height 0) go into the same synced batch as the
        identity records, so a store either does not exist or has its whole genesis state.
        `retention` says which state versions each commit keeps (chain/retention.py); `memory`
        what the database may hold (chain/database.py).
        """
        path = Path(path)
        if not path.exists():
            # the data dir holds the chain and the node's vote record: its owner's alone
            path.mkdir(mode=0o700, parents=True)
            path.chmod(0o700)  # mkdir's mode is filtered by the umask; make it exact
        db = open_db(path, create=True, memory=memory)
        if db.get(b"m/schema") is None:
            if next(db.keys(), None) is not None:
                db.close()
                raise StoreError(f"{path}: holds data but no schema record; not a titlechain store")
            with db.write_batch(sync=True) as wb:
                wb.put(b"m/schema", SCHEMA_VERSION)
                wb.put(b"m/genesis_hash", genesis.hash.encode())
                wb.put(b"m/genesis", canonical(genesis.doc))
                for key, value in (initial_writes or {}).items():
                    if key.startswith(RESERVED_PREFIXES):
                        raise StoreError(f"genesis write to a store-owned key {key[:16]!r}")
                    wb.put(key, value)
        check_identity(db, path, genesis.hash, SCHEMA_VERSION)
        return cls(db, path, read_only=False, tmp_copy=None, retention=retention)

    @classmethod
    def from_handle(cls, db: Database, path: Path, genesis: Genesis) -> Store:
        """A store over a database this process has just written (a state sync's import), with
        the checks of an open: schema, genesis, base and head."""
        check_identity(db, path, genesis.hash, SCHEMA_VERSION)
        return cls(db, path, read_only=False, tmp_copy=None)

    @classmethod
    def open_read_only(cls, path: str | Path, genesis_hash: str | None = None) -> Store:
        """Open a copy of a data dir for reading (audits, explorers), even while a node runs.

        A running node holds the database's lock, so the files are
        linked (immutable tables) or copied (logs, manifest) into a private temporary dir.
        """
        path = Path(path)
        if not (path / "CURRENT").exists():
            raise StoreError(f"{path}: not a node's data dir (no CURRENT file)")
        refuse_leveldb_dir(path)
        tmp = Path(tempfile.mkdtemp(prefix="titlechain-ro-"))
        try:
            for entry in path.iterdir():
                if entry.name == "LOCK" or not entry.is_file():
                    continue
                if entry.suffix == ".sst":
                    try:
                        os.link(entry, tmp / entry.name)
                        continue
                    except OSError:
                        pass  # another file system: a copy is as good, only slower
                shutil.copy2(entry, tmp / entry.name)
            db = open_db(tmp, create=False)
            check_identity(db, path, genesis_hash, SCHEMA_VERSION)
            return cls(db, path, read_only=True, tmp_copy=tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
        if self._tmp_copy is not None:
            shutil.rmtree(self._tmp_copy, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- head ----------------------------------------------------------------------------------

    def _load_base(self) -> Head | None:
        """The base of a store made by state sync (None: a store that holds the chain from the genesis)."""
        if self._get(b"m/syncing") is not None:
            raise StoreError(
                f"{self.path}: an unfinished state sync (the import stopped before it was whole); "
                "remove the data dir and sync again"
            )
        raw = self._get(b"m/base")
        if raw is None:
            return None
        try:
            b = decode(raw)
            return Head(b["height"], b["block_hash"], b["state_root"])
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"{self.path}: damaged data: the base record does not decode: {e}") from None

    @property
    def base_height(self) -> int:
        """The first height whose state this store holds: 0 from the genesis, S after a state sync.
        Blocks, txs and history below it are not held (docs/rpc.md, before_base)."""
        return self.base.height if self.base is not None else 0

    def _load_head(self) -> Head | None:
        raw = self._get(b"m/head")
        if raw is None:
            if self._get(height_key(b"b/", 1)) is not None:
                raise StoreError(f"{self.path}: blocks exist but no head record")
            return None
        try:
            h = decode(raw)
            head = Head(h["height"], h["block_hash"], h["state_root"])
            summary = self.get_summary(head.height)
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError) as e:  # decodes no more: damaged, not a bug to crash on
            raise StoreError(f"{self.path}: damaged data: the head record or its block does not decode: {e}") from None
        header = summary[0] if summary is not None else None
        if header is None or header.block_hash != head.block_hash or header.state_root != head.state_root:
            raise StoreError(f"{self.path}: head record disagrees with block {head.height}")
        if self._get(height_key(b"b/", head.height + 1)) is not None:
            raise StoreError(f"{self.path}: a block exists above the head {head.height}")
        return head

    @property
    def head(self) -> Head | None:
        return self._head

    @property
    def height(self) -> int:
        return self._head.height if self._head else 0

    @property
    def state_from(self) -> int:
        """The first height whose state tree this store holds whole (0: every height, an archive
        or a store that has not pruned yet); the trees of lower heights were pruned."""
        return self._state_from

    def genesis_doc(self) -> dict[str, Any]:
        raw = self._get(b"m/genesis")
        if raw is None:  # written with the store and checked when it was opened: the store is damaged
            raise StoreError("the store holds no genesis record")
        doc: dict[str, Any] = decode(raw)
        return doc

    # -- reads ---------------------------------------------------------------------------------

    def get_block_bytes(self, height: int) -> bytes | None:
        """The canonical block (as peers exchange it), rebuilt from its summary and tx records."""
        block = self.get_block(height)
        return None if block is None else block.encode()

    def get_block(self, height: int) -> Block | None:
        """The whole block: its summary and each tx's record. Raises BlockError (or TxError for a
        malformed tx) if a record is missing or is not the tx the summary names at that place."""
        read = self.read_block(height)
        return None if read is None else read[0]

    def read_block(self, height: int) -> tuple[Block, list[Receipt]] | None:
        """`get_block` and `get_receipts` from one read of each tx record (the audit's path: a
        record decoded once, not once per question). Every record is checked to sit at its place."""
        raw = self.read_raw_block(height)
        return None if raw is None else block_from_records(raw)

    def read_raw_block(self, height: int) -> RawBlock | None:
        """The block's header and tx ids, and its txs' records as stored, not yet decoded."""
        if height <= self.base_height:
            return None  # a synced store holds its base block's summary, not its txs
        summary = self.get_summary(height)
        if summary is None:
            return None
        header, tx_ids = summary
        records: list[bytes | None] = [None] * len(tx_ids)
        prefix = height_key(TX_RECORD_PREFIX, height)
        for key, value in self.iterate(prefix):
            index = int(key[len(prefix) :])
            if index < len(records):  # one beyond the block's txs is the audit's to report
                records[index] = value
        return RawBlock(height, header, tx_ids, records)

    def get_certificate(self, height: int) -> Certificate | None:
        raw = self._get(height_key(b"c/", height))
        return Certificate.from_plain(decode(raw)) if raw is not None else None

    def certified_header(self, height: int) -> tuple[Header, Certificate] | None:
        """A header and its certificate: a held block's, or (a synced store, below its base) a
        validator-set change's kept from the sync (k/). None if the store holds neither."""
        summary, cert = self.get_summary(height), self.get_certificate(height)
        if summary is not None and cert is not None:
            return summary[0], cert
        raw = self._get(height_key(b"k/", height))
        if raw is None:
            return None
        change = decode(raw)
        return Header.from_plain(change["header"]), Certificate.from_plain(change["certificate"])

    def get_summary(self, height: int) -> tuple[Header, list[str]] | None:
        """The block's header and tx ids, read without decoding its txs. Raises BlockError for a
        record that is not one."""
        raw = self._get(height_key(b"b/", height))
        if raw is None:
            return None
        summary = decode(raw)
        if type(summary) is not dict or set(summary) != {"header", "tx_ids"}:
            raise BlockError(f"block {height}: the stored block is not {{header, tx_ids}}")
        tx_ids = summary["tx_ids"]
        if type(tx_ids) is not list or any(type(t) is not str for t in tx_ids):
            raise BlockError(f"block {height}: tx_ids is not a list of tx ids")
        return Header.from_plain(summary["header"]), tx_ids

    def get_receipts(self, height: int) -> list[Receipt] | None:
        """The block's receipts, in tx order, from its txs' records (None: no such block, or a record
        is missing)."""
        raw = self.read_raw_block(height)
        if raw is None or None in raw.records:
            return None
        return [decode_tx_entry(record).receipt for record in raw.records]  # type: ignore[arg-type]

    def height_of(self, block_hash: str) -> int | None:
        raw = self._get(b"x/" + block_hash.encode())
        return int(raw) if raw is not None else None

    def tx_location(self, tx_id: str) -> tuple[int, int] | None:
        """Where a committed tx is (None: not committed): its i/ pointer alone, no record decoded;
        or (a synced store) its place in the tx-id window below the base, whose txs are not held
        but must never commit again."""
        place = self._get(tx_index_key(tx_id))
        if place is None:
            return self._window_place(tx_id) if self.base is not None else None
        where = parse_place(place)
        if where is None:
            raise StoreError(f"{self.path}: damaged data: the tx index (i/) of {tx_id[:16]}… is not a place")
        return where

    def _window_place(self, tx_id: str) -> tuple[int, int] | None:
        raw = self._get(b"w/" + tx_id.encode())
        if raw is None:
            return None
        height, index = decode(raw)
        return height, index

    def get_tx_at(self, height: int, index: int) -> TxEntry | None:
        """The record of the tx at that place (None: no tx there)."""
        raw = self._get(tx_record_key(height, index))
        return None if raw is None else decode_tx_entry(raw)

    def get_tx_entry(self, tx_id: str) -> TxEntry | None:
        """A committed tx's record: two reads of a few hundred bytes, whatever its block's size."""
        place = self.tx_location(tx_id)
        if place is None or place[0] <= self.base_height:
            return None  # not committed, or (a synced store) in the window: its id held, not its record
        raw = self._get(tx_record_key(*place))
        if raw is None:
            raise StoreError(f"{self.path}: damaged data: the record (t/) of tx {tx_id[:16]}… is missing")
        return decode_tx_entry(raw)

    def get(self, key: bytes) -> bytes | None:
        return self._get(key)

    def _get(self, key: bytes) -> bytes | None:
        # every read checks the CRC of the table block it comes from (a block already in the
        # cache was checked when it was loaded): a damaged table must fail loudly, never answer
        # a wrong owner. Cost measured in docs/operations.md.
        try:
            return self._db.get(key)
        except DatabaseError as e:
            raise self._fault(f"reading {key[:40]!r}", e) from None

    def compact(self) -> None:
        """Compact the whole key range now (after a bulk load, so that what follows meets a
        settled store, as an aged node's is)."""
        try:
            self._db.compact_range()
        except DatabaseError as e:
            raise self._fault("compacting", e) from None

    def compaction_mb(self) -> tuple[float, float]:
        """(MB read, MB written) by the database's flushes and compactions since the store was
        opened: what the layout costs beyond the batches."""
        return self._db.compaction_mb()

    def db_memory(self) -> int:
        """The database's own count of the bytes it holds (memtables, block cache, table readers)."""
        return self._db.memory_bytes()

    def db_memory_parts(self) -> dict[str, int]:
        """`db_memory` by part (chain/database.py, `Database.memory_parts`)."""
        return self._db.memory_parts()

    def iterate(
        self, prefix: bytes, *, reverse: bool = False, start: bytes | None = None, include_start: bool = True,
        stop: bytes | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records under `prefix` in key order (or reversed); with `start`, from that key on; with
        `stop` (and `start`), up to that key, excluded."""
        try:
            if start is None:
                it = self._db.iterator(prefix=prefix, reverse=reverse)
            else:
                it = self._db.iterator(start=start, include_start=include_start, stop=stop or prefix_end(prefix),
                                       reverse=reverse)
            yield from it
        except DatabaseError as e:
            raise self._fault(f"reading under {prefix[:40]!r}", e) from None

    def records(self, start: bytes, stop: bytes) -> dict[bytes, bytes]:
        """Every record from `start` up to `stop` (excluded), in one dict: `iterate` without the
        generator of `iterate` around it (the audit reads millions of records so). Since store
        schema 9 the database's own range check is a Python step per record; the audit on RocksDB
        is still faster than on LevelDB (docs/performance.md, "The audit on RocksDB")."""
        try:
            return dict(self._db.iterator(start=start, stop=stop))
        except DatabaseError as e:
            raise self._fault(f"reading from {start[:40]!r}", e) from None

    # -- writes --------------------------------------------------------------------------------

    def get_meta(self, name: str) -> bytes | None:
        """A node-local record kept beside the chain (e.g. the consensus vote record)."""
        return self._get(_meta_key(name))

    def put_meta(self, name: str, value: bytes) -> None:
        """Write a node-local record durably (synced) before returning.

        The identity and head records are the store's own and cannot be written this way.
        """
        if self.read_only:
            raise StoreError("store is open read-only")
        key = _meta_key(name)
        try:
            self._db.put(key, value, sync=True)
        except DatabaseError as e:
            raise self._fault(f"writing m/{name}", e) from None

    def append(self, commit: BlockCommit) -> Head:
        """Persist one committed block and everything it changes, atomically and durably.

        Its txs must not be committed already (the ledger refuses such a block): a tx's record
        would be overwritten and the earlier block would no longer read back."""
        if self.read_only:
            raise StoreError("store is open read-only")
        block = commit.block
        expected_prev = self._head.block_hash if self._head else self.genesis_hash
        if block.height != self.height + 1:
            raise StoreError(f"append of height {block.height} onto head {self.height}")
        if block.header.prev_hash != expected_prev:
            raise StoreError(f"block {block.height} does not link to the head")
        if commit.certificate.height != block.height or commit.certificate.block_hash != block.block_hash:
            raise StoreError(f"certificate does not name block {block.height}")
        head = Head(block.height, block.block_hash, block.header.state_root)
        state_from = self.retention.next_state_from(self._state_from, block.height)
        try:
            self._write_block(commit, head, state_from)
        except DatabaseError as e:
            raise self._fault(f"writing block {block.height}", e) from None
        self._head = head
        self._state_from = state_from
        return head

    def _prune(self, wb: WriteBatch, state_from: int) -> None:
        """Delete, in the commit's batch, the tree nodes no state of height >= state_from holds:
        those retired at a height <= state_from (chain/smt.py, one z/ record per height), with
        their leaves' data, and the roots below it. This reads only the records it deletes."""
        start, stop = smt.stale_key(self._state_from), smt.stale_key(state_from + 1)
        for key, record in self.iterate(smt.STALE_PREFIX, start=start, stop=stop):
            try:
                doomed = smt.retired_keys(record)
            except smt.SmtError as e:
                raise StoreError(f"{self.path}: damaged data: {e}") from None
            for node in doomed:
                wb.delete(node)
            wb.delete(key)
        for height in range(self._state_from, state_from):
            wb.delete(smt.root_key(height))
        wb.put(b"m/state_from", b"%d" % state_from)

    def _write_block(self, commit: BlockCommit, head: Head, state_from: int) -> None:
        block = commit.block
        with self._db.write_batch(sync=True) as wb:
            if state_from > self._state_from:
                self._prune(wb, state_from)
            _put_writes(wb, commit.writes)
            tx_ids = block.tx_ids
            summary = {"header": canonical(block.header.to_plain()), "tx_ids": canonical(tx_ids)}
            wb.put(height_key(b"b/", block.height), canonical_map(summary))
            wb.put(height_key(b"c/", block.height), canonical(commit.certificate.to_plain()))
            wb.put(b"x/" + block.block_hash.encode(), b"%d" % block.height)
            packed = commit.packed_receipts
            if packed is None:
                packed = [canonical(r) for r in commit.receipts]
            if len(packed) != len(tx_ids):
                raise StoreError(f"block {block.height}: {len(packed)} receipts for {len(tx_ids)} txs")
            for index, (tx, tx_id) in enumerate(zip(block.txs, tx_ids, strict=True)):
                place = tx_place(block.height, index)
                wb.put(TX_RECORD_PREFIX + place, tx_entry_bytes(block.height, index, tx.encode(), packed[index]))
                wb.put(TX_INDEX_PREFIX + tx_id.encode(), place)
            wb.put(b"m/head", canonical({"height": head.height, "block_hash": head.block_hash, "state_root": head.state_root}))

    def _fault(self, what: str, error: DatabaseError) -> StoreFault:
        """A StoreFault for a failed database operation; `on_fault` (the node) hears of it first,
        so that a failure inside a caller that swallows exceptions still stops the node."""
        fault = StoreFault(f"{self.path}: {what} failed: {type(error).__name__}: {error}")
        if self.on_fault is not None:
            self.on_fault(fault)
        return fault


def _put_writes(wb: WriteBatch, writes: Mapping[bytes, bytes | None]) -> None:
    """The apply path's writes into a block's batch, refused whole if one is under a store-owned
    prefix. Thousands a block: the test and the puts are C-level passes (map), not a Python step
    per record. A key appears once in a dict, so putting first and deleting after is the same batch."""
    if not _RESERVED.isdisjoint(map(_PREFIX_OF, writes)):
        key = next(k for k in writes if k[:2] in _RESERVED)
        raise StoreError(f"apply-path write to a store-owned key {key[:16]!r}")
    # each pass is consumed in C (a zero-length deque); `compress` picks the records whose value
    # is (is not) None: b"" is a value, the index records' own
    deque(starmap(wb.put, compress(writes.items(), map(is_not, writes.values(), repeat(None)))), maxlen=0)
    deque(map(wb.delete, compress(writes.keys(), map(is_, writes.values(), repeat(None)))), maxlen=0)


_PREFIX_OF = itemgetter(slice(0, 2))  # every prefix is 2 bytes


_OWN_META = frozenset({"schema", "genesis_hash", "genesis", "head", "state_from", "base", "syncing"})


def _meta_key(name: str) -> bytes:
    if name in _OWN_META or not name.isidentifier():
        raise StoreError(f"m/{name} is not a node-local record name")
    return b"m/" + name.encode()


