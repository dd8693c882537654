"""The key-value database under a node's store: RocksDB (through rocksdict), opened with the
options every node uses, behind the few typed operations the store needs; and the checks that a
data dir holds this chain's store in this schema before anything reads it (a data dir of another
schema or chain is refused, naming both).

Store schema 9 moved from LevelDB to RocksDB for one reason, measured (docs/performance.md, "The
store engine"): LevelDB compacts only in levels of fixed sizes (10 MB, 100 MB, 1 GB, ...), so the
bytes its compactions rewrite for each byte a block writes grew from 5 to 15 over a 1,000,000-tx
run, and throughput fell with them. RocksDB's universal compaction merges whole sorted runs of
similar size instead: each byte is rewritten about as many times as the store has doubled, not
ten times at every level it crosses. Every other part of this module is what LevelDB did:
block checksums verified on every read, paranoid checks, synced batches, bloom filters, no
compression (the store is mostly hashes, which do not compress).
"""

from __future__ import annotations

import resource
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import rocksdict

from chain.errors import ChainError

# The store's schema, kept in every data dir as m/schema: what each version changed is listed
# beside the records in chain/store.py. Here so that a refusal at open (a LevelDB dir) names it.
SCHEMA_VERSION = b"12"

# What one store's RocksDB may hold in memory (docs/operations.md, Memory): memtables of
# WRITE_BUFFER_BYTES (one filled while the previous one, as large, is flushed) and a block cache of
# at least BLOCK_CACHE_BYTES, within one budget of two write buffers and the block cache (_options),
# and the index and bloom filter of each open table (~0.8 % of the table with
# BLOCK_BYTES blocks: the heap grows with the store by that much, up to MAX_OPEN_FILES tables).
# Putting the indexes and filters in the block cache instead bounds them by its size, but cost
# 11 % more node CPU per tx on the 100,000-tx bench (docs/performance.md, "The 1,000,000-tx run
# with the memory by part"). A 1,000-tx block writes ~2 MB: with 4 MB memtables every other
# commit stalled on a flush.
WRITE_BUFFER_BYTES = 64 << 20
BLOCK_CACHE_BYTES = 64 << 20
# RocksDB keeps at most this many tables open (a file descriptor each, and its index and filter).
# Universal compaction writes tables of up to TABLE_BYTES, so 5,000 hold a ~300 GB store open.
MAX_OPEN_FILES = 5000
MIN_OPEN_FILES = 64
TABLE_BYTES = 64 << 20
BLOCK_BYTES = 16 << 10
FD_MARGIN = 256  # descriptors the process needs besides the tables: sockets, logs, the WAL


@dataclass(frozen=True)
class DbMemory:
    """What one store's RocksDB may hold in memory (node config `db_*`, docs/operations.md)."""

    write_buffer_bytes: int = WRITE_BUFFER_BYTES
    block_cache_bytes: int = BLOCK_CACHE_BYTES
    max_open_files: int = MAX_OPEN_FILES

    def __post_init__(self) -> None:
        if self.write_buffer_bytes < 1 << 20 or self.block_cache_bytes < 1 << 20:
            raise ValueError("RocksDB's write buffer and block cache must be at least 1 MiB")
        if self.max_open_files < MIN_OPEN_FILES:
            raise ValueError(f"RocksDB's max_open_files must be at least {MIN_OPEN_FILES}")

    @property
    def buffers_bytes(self) -> int:
        """What RocksDB holds for this store besides its open tables' indexes and filters: two
        memtables and the block cache, one budget they share (the blocks get what the memtables
        leave)."""
        return 2 * self.write_buffer_bytes + self.block_cache_bytes


DEFAULT_MEMORY = DbMemory()


class StoreError(ChainError, RuntimeError):
    pass


class DatabaseError(ChainError, RuntimeError):
    """An operation of the database failed (I/O, a damaged table, a closed handle): the store
    turns it into a StoreFault, which stops a node."""


def raise_fd_limit(memory: DbMemory = DEFAULT_MEMORY) -> str | None:
    """Raise this process's soft RLIMIT_NOFILE (up to its hard limit) so that RocksDB can keep
    `max_open_files` tables open besides the process's own descriptors. Returns None, or why it
    cannot (the hard limit is too low): the table cache then holds fewer tables than configured."""
    need = memory.max_open_files + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= need:
        return None
    return (f"the open-files limit is {target:,} (hard {hard:,}), fewer than the {need:,} that db_max_open_files "
            f"{memory.max_open_files:,} needs: a store with that many tables will fail to open one; raise the hard "
            f"limit (ulimit -Hn, systemd LimitNOFILE) to {need:,} or lower db_max_open_files")


class WriteBatch(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...


def _raw(items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[bytes, bytes]]:
    """rocksdict's items typed as a raw-mode database holds them (its stubs allow any key type)."""
    return cast(Iterator[tuple[bytes, bytes]], iter(items))


def prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key starting with prefix (None: no such key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class Database:
    """One open RocksDB. Every operation raises DatabaseError when RocksDB fails (rocksdict raises
    a bare Exception, so each call into it is wrapped here and nowhere else)."""

    def __init__(self, db: rocksdict.Rdict, memtables: rocksdict.WriteBufferManager) -> None:
        self._db = db
        self._memtables = memtables  # what the memtables have allocated, charged to the block cache
        self._closed = False
        self._failed = False  # an operation has raised: RocksDB then repeats that error on close
        self._synced = rocksdict.WriteOptions()
        self._synced.sync = True
        self._unsynced = rocksdict.WriteOptions()

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, key: bytes, *, verify_checksums: bool = True) -> bytes | None:
        # RocksDB checks the checksum of every block it reads from a table: a damaged table fails
        # the read, never answers. Only a test that shows what an unchecked read would return
        # turns it off.
        try:
            if verify_checksums:
                return self._db.get(key)
            unchecked = rocksdict.ReadOptions()
            unchecked.set_verify_checksums(False)
            return self._db.get(key, None, unchecked)
        except Exception as e:  # noqa: BLE001 - rocksdict's only error type
            raise self._failure(f"get: {e}") from None

    def put(self, key: bytes, value: bytes, *, sync: bool = False) -> None:
        try:
            self._db.put(key, value, self._synced if sync else self._unsynced)
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"put: {e}") from None

    def delete(self, key: bytes, *, sync: bool = False) -> None:
        try:
            self._db.delete(key, self._synced if sync else self._unsynced)
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"delete: {e}") from None

    @contextmanager
    def write_batch(self, *, sync: bool = False) -> Iterator[WriteBatch]:
        """A batch written atomically when the block ends, and not at all if it raises."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        yield batch
        try:
            self._db.write(batch, self._synced if sync else self._unsynced)
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"write: {e}") from None

    def iterator(
        self, *, prefix: bytes | None = None, start: bytes | None = None, stop: bytes | None = None,
        include_start: bool = True, reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) from `start` (or `prefix`) up to `stop` (excluded), or the end of `prefix`,
        in key order or reversed."""
        low, high = (prefix, prefix_end(prefix)) if prefix is not None else (start, stop)
        skip = None if include_start or prefix is not None else start
        # The range is checked here, not by RocksDB's iterate bounds: rocksdict passes a bound
        # with a zero byte in it wrongly (keys hold big-endian heights), and ignores a lower bound
        # when iterating backwards. Its item iterator steps in Rust; seeking is RocksDB's.
        try:
            if reverse:
                # from `high` back: RocksDB seeks to the last key at or before it
                for key, value in _raw(self._db.items(backwards=True, from_key=high)):
                    if high is not None and key >= high:
                        continue
                    if low is not None and key < low:
                        return
                    if key != skip:
                        yield key, value
            else:
                for key, value in _raw(self._db.items(from_key=low)):
                    if high is not None and key >= high:
                        return
                    if key != skip:
                        yield key, value
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"iterate: {e}") from None

    def keys(self, prefix: bytes | None = None) -> Iterator[bytes]:
        for key, _ in self.iterator(prefix=prefix):
            yield key

    def int_property(self, name: str) -> int:
        """One of RocksDB's integer properties (e.g. rocksdb.cur-size-all-mem-tables), 0 if unknown."""
        try:
            return int(self._db.property_int_value(name) or 0)
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"property {name}: {e}") from None

    def memory_parts(self) -> dict[str, int]:
        """What RocksDB holds now, in bytes, by part (its own counts): `memtables`, `block_cache`, and
        `table_readers`, the indexes and bloom filters of its open tables (the part that grows with
        the store, up to max_open_files tables: DbMemory). A closed database holds none."""
        if self._closed:
            return {"memtables": 0, "block_cache": 0, "table_readers": 0}
        # What the memtables' arenas allocated (a flushed one's until it is freed: RocksDB's
        # cur-size-all-mem-tables leaves those out). The block cache's usage counts it too, as
        # reservations (_options): the cache's own part is what is left.
        memtables = self._memtables.get_usage()
        cache_usage = self.int_property("rocksdb.block-cache-usage")
        return {
            "memtables": memtables,
            "block_cache": max(0, cache_usage - memtables),
            "table_readers": self.int_property("rocksdb.estimate-table-readers-mem"),
        }

    def memory_bytes(self) -> int:
        """What RocksDB holds now: the sum of `memory_parts`."""
        return sum(self.memory_parts().values())

    def compaction_mb(self) -> tuple[float, float]:
        """(MB read, MB written) by RocksDB's flushes and compactions since it was opened, from its
        `rocksdb.stats` ("Cumulative compaction: W GB write, …, R GB read"; 10 MB resolution)."""
        try:
            stats = self._db.property_value("rocksdb.stats") or ""
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"property rocksdb.stats: {e}") from None
        for line in stats.splitlines():
            if line.startswith("Cumulative compaction:"):
                cols = line.split()  # Cumulative compaction: W GB write, W' MB/s write, R GB read, …
                return float(cols[8]) * 1024, float(cols[2]) * 1024
        return 0.0, 0.0

    def compact_range(self) -> None:
        try:
            self._db.compact_range(None, None)
        except Exception as e:  # noqa: BLE001
            raise self._failure(f"compact: {e}") from None

    def close(self) -> None:
        """Close the handle. RocksDB reports on close the error that already failed an operation
        (a write that did not land stops its writes): that one was raised then, and closing after
        it must not raise it again; any other error on close is raised."""
        if not self._closed:
            self._closed = True
            try:
                self._db.close()
            except Exception as e:  # noqa: BLE001
                if not self._failed:
                    raise self._failure(f"close: {e}") from None

    def _failure(self, what: str) -> DatabaseError:
        self._failed = True
        return DatabaseError(what)


def _options(create: bool, memory: DbMemory) -> tuple[rocksdict.Options, rocksdict.WriteBufferManager]:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(create)
    options.set_paranoid_checks(True)
    options.set_write_buffer_size(memory.write_buffer_bytes)
    options.set_max_write_buffer_number(2)
    # The memtables and the block cache share one budget, `buffers_bytes`: what the memtables
    # allocate is reserved in the block cache, which evicts blocks to make room. Their sum is then
    # the budget once the cache has filled, whatever the memtables hold at the moment, so a node's
    # memory does not climb each time a slow flush finds both memtables full (docs/performance.md,
    # "One budget for RocksDB's memtables and block cache"). The blocks get the room the memtables
    # leave: never less than `block_cache_bytes`, as before.
    cache = rocksdict.Cache(memory.buffers_bytes)
    memtables = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
        2 * memory.write_buffer_bytes, False, cache
    )
    options.set_write_buffer_manager(memtables)
    options.set_compression_type(rocksdict.DBCompressionType.none())
    options.set_compaction_style(rocksdict.DBCompactionStyle.universal())
    options.set_target_file_size_base(TABLE_BYTES)
    options.set_max_open_files(memory.max_open_files)
    # a flush and a compaction may run beside each other; 4 nodes share 2 cores, so no more
    options.set_max_background_jobs(2)
    # Compactions (RocksDB's low-priority pool) run at nice 19: a large merge then yields the CPU
    # to the node's own thread, whose heights otherwise overran the view timer while the store
    # merged (docs/performance.md, "Compactions at a lower CPU priority"). Flushes keep theirs:
    # a flush that waited would stall the commit writing the next block.
    env = rocksdict.Env()
    env.lower_thread_pool_cpu_priority()
    options.set_env(env)
    options.set_keep_log_file_num(4)
    options.set_stats_dump_period_sec(300)
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)  # most lookups on the hot path miss (is this tx id committed?)
    # 16 KiB blocks, not 4: a table's index (held in memory while it is open, ~0.6 % of the store
    # with 4 KiB blocks) is a quarter as large, and the store's memory grows with it by that much
    # less (1.2 % -> 0.8 % with the filters, docs/performance.md, "The tree-node cache by height");
    # the hot path reads few blocks (the tree's nodes come from the node's cache)
    table.set_block_size(BLOCK_BYTES)
    table.set_block_cache(cache)
    options.set_block_based_table_factory(table)
    return options, memtables


def refuse_leveldb_dir(path: Path) -> None:
    """Refuse a data dir written by LevelDB (store schema 8 or older), naming both versions: RocksDB
    always writes an OPTIONS file beside its CURRENT, LevelDB never does."""
    if (path / "CURRENT").exists() and not any(path.glob("OPTIONS-*")):
        raise StoreError(
            f"{path}: a LevelDB store (schema 8 or older); this titlechain reads store schema {SCHEMA_VERSION.decode()} (RocksDB). "
            "A data dir of another version cannot be opened or upgraded in place (there is no migration "
            "command): move it aside and start the node with an empty data dir, to fetch the chain again "
            "from its peers (docs/protocol.md, Versions)"
        )


def open_db(path: Path, create: bool, memory: DbMemory = DEFAULT_MEMORY) -> Database:
    refuse_leveldb_dir(path)
    options, memtables = _options(create, memory)
    try:
        # The default column family's options named explicitly: given none, rocksdict reopens an
        # existing store with the options its OPTIONS file recorded, which cannot record a block
        # cache (RocksDB's default 8 MiB then) and keep the write buffer of the store's first open,
        # whatever the node's config says now.
        return Database(rocksdict.Rdict(str(path), options, column_families={"default": options}), memtables)
    except Exception as e:  # noqa: BLE001 - rocksdict's only error type
        text = str(e)
        if "lock" in text.lower():
            raise StoreError(f"{path}: cannot open the database ({text}); is another node using it?") from None
        raise StoreError(f"{path}: cannot open the database: {text}") from None


def destroy_db(path: Path) -> None:
    """Delete a database and its dir (an unfinished state sync's)."""
    shutil.rmtree(path)


def check_identity(db: Database, path: Path, genesis_hash: str | None, schema_version: bytes) -> None:
    schema = db.get(b"m/schema")
    if schema != schema_version:
        db.close()
        raise StoreError(
            f"{path}: store schema version {_schema_name(schema)}, this titlechain reads version "
            f"{schema_version.decode()}; a data dir of another version cannot be opened or upgraded in place "
            "(there is no migration command): move it aside and start the node with an empty data dir, to "
            "fetch the chain again from its peers (a chain begun under schema 2 or older needs a new genesis: "
            "docs/protocol.md, Versions)"
        )
    stored = (db.get(b"m/genesis_hash") or b"").decode()
    if genesis_hash is not None and stored != genesis_hash:
        db.close()
        raise StoreError(f"{path}: data of another chain (genesis {stored[:16]}…, expected {genesis_hash[:16]}…)")


def _schema_name(raw: bytes | None) -> str:
    if raw is None:
        return "(none recorded)"
    text = raw.decode("ascii", errors="replace")
    return text if text.isdigit() and len(text) <= 6 else repr(raw[:16])
