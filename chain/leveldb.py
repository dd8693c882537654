"""Opening a data dir's LevelDB: the options every node uses, and the checks that it holds this
chain's store in this schema before anything reads it (a data dir of another schema or chain is
refused, naming both)."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import plyvel

from chain.errors import ChainError

# LevelDB's memory, per store (docs/performance.md, Memory): a memtable of WRITE_BUFFER_BYTES is
# filled while the previous one (as large) is flushed, and table blocks are cached up to
# BLOCK_CACHE_BYTES; with the open files' indexes and bloom filters, that is all it holds.
WRITE_BUFFER_BYTES = 64 << 20
BLOCK_CACHE_BYTES = 64 << 20
# LevelDB keeps its open tables in a table cache of max_open_files less the 10 it keeps for its own
# files. A read of a table not in the cache opens it again: its index and filter read and
# checksummed, 3.5-4.4x the CPU of a read with the table open (docs/performance.md, "The
# 1,000,000-tx run"). With 1,000 and tables of 2 MiB a store past ~2 GB (~450,000 txs in an
# archive) reopened tables on most reads, and throughput fell with the chain. 5,000 holds a ~10 GB
# store open; each open table's index and filter (~40 KB for 2 MiB) sit in the heap, so the cap
# bounds that memory at ~200 MiB. The first MMAP_TABLES tables LevelDB opens it reads through mmap:
# the pages a read or a compaction touched stay in the resident set (as file pages, not heap) until
# the table is closed, so at most MMAP_TABLES x TABLE_BYTES of it is mapped; it reads the others
# with pread, keeping each one's file open only while fewer than a fifth of the process's
# RLIMIT_NOFILE are (raise_fd_limit below raises the soft limit to allow them all).
MAX_OPEN_FILES = 5000
LEVELDB_RESERVED_FILES = 10  # LevelDB's own: the log, the manifest, the lock, ...
MIN_OPEN_FILES = 64 + LEVELDB_RESERVED_FILES  # LevelDB raises a lower max_open_files to this
MMAP_TABLES = 1000  # LevelDB's mmap limit on a 64-bit build (util/env_posix.cc, kDefaultMmapLimit)
FD_LIMIT_SHARE = 5  # LevelDB keeps at most RLIMIT_NOFILE / 5 table files open for pread
TABLE_BYTES = 2 << 20  # LevelDB's max_file_size: compactions cut tables at this size


@dataclass(frozen=True)
class DbMemory:
    """What one store's LevelDB may hold in memory (node config `leveldb_*`, docs/operations.md)."""

    write_buffer_bytes: int = WRITE_BUFFER_BYTES
    block_cache_bytes: int = BLOCK_CACHE_BYTES
    max_open_files: int = MAX_OPEN_FILES
    table_bytes: int = TABLE_BYTES

    def __post_init__(self) -> None:
        if self.write_buffer_bytes < 1 << 20 or self.block_cache_bytes < 0 or self.table_bytes < 1 << 20:
            raise ValueError("LevelDB's write buffer and tables must be at least 1 MiB, its block cache not negative")
        if self.max_open_files < MIN_OPEN_FILES:
            raise ValueError(f"LevelDB's max_open_files must be at least {MIN_OPEN_FILES} (it raises lower values to that)")

    @property
    def mapped_bytes(self) -> int:
        """The most of its tables LevelDB keeps mapped: the tables it holds open, up to its mmap
        limit, and the level-0 tables (a memtable each) that a compaction has not yet merged (4 to 12)."""
        tables = min(self.max_open_files - LEVELDB_RESERVED_FILES, MMAP_TABLES)
        return tables * self.table_bytes + 12 * self.write_buffer_bytes

    @property
    def pread_files(self) -> int:
        """The table files LevelDB must keep open beyond its mapped ones to hold the whole table cache."""
        return max(0, self.max_open_files - LEVELDB_RESERVED_FILES - MMAP_TABLES)


DEFAULT_MEMORY = DbMemory()


class StoreError(ChainError, RuntimeError):
    pass


def raise_fd_limit(memory: DbMemory = DEFAULT_MEMORY) -> str | None:
    """Raise this process's soft RLIMIT_NOFILE (up to its hard limit) so that LevelDB keeps every
    table of its cache open. LevelDB reads the limit once, when it opens its first table file, so
    this runs before the first store is opened. Returns None, or why the table cache cannot be
    held open (the hard limit is too low): the reads then reopen files, slower but correct."""
    # LevelDB's pread files stay within a fifth of the limit, the rest is the process's own
    need = FD_LIMIT_SHARE * memory.pread_files
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= need:
        return None
    return (f"the open-files limit is {target:,} (hard {hard:,}): LevelDB keeps {target // FD_LIMIT_SHARE:,} "
            f"table files open besides its {MMAP_TABLES:,} mapped ones, fewer than the {memory.pread_files:,} "
            f"that leveldb_max_open_files {memory.max_open_files:,} needs, so a store that large reopens "
            f"files on its reads; raise the hard limit (ulimit -Hn, systemd LimitNOFILE) to {need:,}")


def open_db(path: Path, create: bool, memory: DbMemory = DEFAULT_MEMORY) -> plyvel.DB:
    try:
        # a 1,000-tx block writes ~2 MB (mostly state-tree nodes): with LevelDB's 4 MB default
        # memtable every other commit stalled on a flush (docs/performance.md, apply path)
        # bloom filters: most lookups on the hot path miss (is this tx id committed? does this
        # asset id or document hash exist yet?), and without a filter each miss reads a block
        # from every level. No compression: most bytes are state-tree nodes (hashes), which do
        # not compress, and snappy on every flush and compaction cost a quarter of node CPU in a
        # 40k-tx bench (docs/performance.md); the store is ~40% larger for it

        return plyvel.DB(
            str(path),
            create_if_missing=create,
            paranoid_checks=True,
            write_buffer_size=memory.write_buffer_bytes,
            bloom_filter_bits=10,
            lru_cache_size=memory.block_cache_bytes,
            max_open_files=memory.max_open_files,
            max_file_size=memory.table_bytes,
            compression=None,
        )
    except plyvel.IOError as e:
        raise StoreError(f"{path}: cannot open the database ({e}); is another node using it?") from None
    except plyvel.Error as e:
        raise StoreError(f"{path}: cannot open the database: {e}") from None


def check_identity(db: plyvel.DB, path: Path, genesis_hash: str | None, schema_version: bytes) -> None:
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
    stored = db.get(b"m/genesis_hash", b"").decode()
    if genesis_hash is not None and stored != genesis_hash:
        db.close()
        raise StoreError(f"{path}: data of another chain (genesis {stored[:16]}…, expected {genesis_hash[:16]}…)")


def _schema_name(raw: bytes | None) -> str:
    if raw is None:
        return "(none recorded)"
    text = raw.decode("ascii", errors="replace")
    return text if text.isdigit() and len(text) <= 6 else repr(raw[:16])
