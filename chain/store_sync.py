"""Writing a data dir by state sync: verified records in, one store at base height S out.

`SyncImport.begin` makes the data dir with the store's identity records and an `m/syncing`
marker; each verified chunk's records go in as they arrive (`put`, each batch synced); `finish`
writes the anchor (block S's summary and certificate, the validator changes, the base and head
records) and drops the marker in one synced batch. The chunks' batches are not synced one by one
(an fsync per chunk was a tenth of a join): RocksDB appends every batch to its log in order, and
a synced write syncs every log file still open, so the synced `finish` makes every earlier batch
durable with it, and a crash before it leaves the marker, and the dir is synced again from
nothing. A store opened with the marker still there is refused (chain/store.py), so a sync that
stopped halfway is never taken for a whole state: `begin` on such a dir starts it again from
nothing.

The store it makes (docs/protocol.md "State sync") starts at a base
height S instead of the genesis, and holds beside chain/store.py's records:

    m/base              canonical {"height": S, "block_hash", "state_root"}
    m/syncing           present while the import runs; such a store is refused (sync again)
    k/<height>          canonical {"header", "certificate", "validators"}: a validator-set change
                        at or below S, certified (what links S's certificate to the genesis)
    y/<height>          canonical {"header", "tx_ids"} of each block of the tx-id window below S
    w/<tx_id>           canonical [height, index]: a tx committed in the window (at most once)

Block S itself is kept as its summary (b/) and certificate (c/), without its txs' records;
blocks below S are not held at all (`base_height`, `get_block` answers None for them).

Only what was verified is written: chain/snapshot.py checks every state chunk against the
anchor's state_root, chain/sync_anchor.py the anchor and the window. The caller (the node's
sync) holds the order: `finish` refuses unless it is told the state is whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from chain.database import DEFAULT_MEMORY, SCHEMA_VERSION, Database, DatabaseError, DbMemory, destroy_db, open_db
from chain.encoding import canonical, canonical_map, pack_normalized
from chain.genesis import Genesis
from chain.store import Store, StoreError, height_key
from chain.sync_anchor import Anchor, WindowSummary

# records the import writes through `put`: the apply path's (state, tree, indexes) and the window
_ANCHOR_PREFIXES = (b"m/", b"b/", b"c/", b"x/", b"t/", b"k/")


class SyncImport:
    def __init__(self, db: Database, path: Path, genesis: Genesis) -> None:
        self._db = db
        self.path = path
        self.genesis = genesis

    @classmethod
    def begin(cls, path: str | Path, genesis: Genesis, memory: DbMemory = DEFAULT_MEMORY) -> SyncImport:
        """A fresh data dir for a state sync. An unfinished sync's dir is wiped and begun again;
        a dir holding a chain (synced or not) is refused: it needs no sync."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            db = open_db(path, create=False)
            try:
                unfinished = db.get(b"m/syncing") is not None
            finally:
                db.close()
            if not unfinished:
                raise StoreError(f"{path}: already holds a chain; state sync starts from an empty data dir")
            destroy_db(path)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
        db = open_db(path, create=True, memory=memory)  # the node runs on this handle once synced
        with db.write_batch(sync=True) as wb:
            wb.put(b"m/schema", SCHEMA_VERSION)
            wb.put(b"m/genesis_hash", genesis.hash.encode())
            wb.put(b"m/genesis", canonical(genesis.doc))
            wb.put(b"m/syncing", b"1")
        return cls(db, path, genesis)

    def put(self, writes: Mapping[bytes, bytes]) -> None:
        """Write one verified chunk's records (state, tree, indexes, window); durable with `finish`."""
        try:
            with self._db.write_batch(sync=False) as wb:
                for key, value in writes.items():
                    if key.startswith(_ANCHOR_PREFIXES):
                        raise StoreError(f"a sync chunk's write to an anchor key {key[:16]!r}")
                    wb.put(key, value)
        except DatabaseError as e:
            raise StoreError(f"{self.path}: writing a state-sync chunk failed: {e}") from None

    def put_window(self, summaries: list[WindowSummary]) -> None:
        """The verified window summaries and their tx ids (y/ and w/)."""
        writes: dict[bytes, bytes] = {}
        for s in summaries:
            h = s.header.height
            writes[height_key(b"y/", h)] = canonical(s.to_plain())
            for index, tx_id in enumerate(s.tx_ids):
                # [int, int] is its own normal form: canonical() would check 100,000s of them
                writes[b"w/" + tx_id.encode()] = pack_normalized([h, index])
        self.put(writes)

    def finish(self, anchor: Anchor, tx_ids: list[str], state_whole: bool) -> Store:
        """Write the anchor and the base, drop the marker; returns the store, open at head S."""
        if not state_whole:
            raise StoreError("the state sync cannot finish: the state chunks do not yet cover the whole state")
        h = anchor.header
        head = canonical({"height": h.height, "block_hash": h.block_hash, "state_root": h.state_root})
        try:
            with self._db.write_batch(sync=True) as wb:
                for change in anchor.changes:
                    wb.put(height_key(b"k/", change.header.height), canonical(change.to_plain()))
                summary = {"header": canonical(h.to_plain()), "tx_ids": canonical(tx_ids)}
                wb.put(height_key(b"b/", h.height), canonical_map(summary))
                wb.put(height_key(b"c/", h.height), canonical(anchor.certificate.to_plain()))
                wb.put(b"x/" + h.block_hash.encode(), b"%d" % h.height)
                wb.put(b"m/base", head)
                wb.put(b"m/head", head)
                wb.put(b"m/state_from", b"%d" % h.height)  # no state below the base is held
                wb.delete(b"m/syncing")
        except DatabaseError as e:
            raise StoreError(f"{self.path}: writing the state-sync anchor failed: {e}") from None
        # the same handle, checked as any open is: reopening would replay the whole import's log
        return Store.from_handle(self._db, self.path, self.genesis)

    def abandon(self) -> None:
        """Close without finishing: the marker stays, so the dir is never opened as a chain."""
        if not self._db.closed:
            self._db.close()
