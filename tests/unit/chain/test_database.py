"""chain/database.py: the typed operations over RocksDB that the store relies on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.database import Database, DatabaseError, StoreError, open_db, prefix_end

# few distinct bytes, zero and 0xff among them: keys that share prefixes, and bounds with the
# zero bytes that big-endian heights put in real keys (rocksdict mishandled such bounds)
_KEY = st.binary(min_size=1, max_size=4).map(lambda b: bytes(b"\x00a/\xff"[x % 4] for x in b))


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Database, list[bytes]]:
    db = open_db(tmp_path_factory.mktemp("db") / "d", create=True)
    keys = sorted({bytes(b"\x00a/\xff"[(i * 7 + j) % 4] for j in range(1 + i % 4)) + bytes([i % 5]) for i in range(400)})
    with db.write_batch() as batch:
        for k in keys:
            batch.put(k, k + b"=")
    return db, keys


@settings(max_examples=300, deadline=None)
@given(start=st.none() | _KEY, stop=st.none() | _KEY, prefix=st.none() | _KEY,
       include_start=st.booleans(), reverse=st.booleans())
def test_an_iteration_yields_exactly_its_range_in_order(
    filled: tuple[Database, list[bytes]], start: bytes | None, stop: bytes | None, prefix: bytes | None,
    include_start: bool, reverse: bool,
) -> None:
    db, keys = filled
    if prefix is not None:
        low, high = prefix, prefix_end(prefix)
        got = list(db.iterator(prefix=prefix, reverse=reverse))
        skip = None
    else:
        low, high = start, stop
        got = list(db.iterator(start=start, stop=stop, include_start=include_start, reverse=reverse))
        skip = None if include_start else start
    want = [k for k in keys if (low is None or k >= low) and (high is None or k < high) and k != skip]
    assert got == [(k, k + b"=") for k in (want[::-1] if reverse else want)]


def test_a_batch_lands_whole_or_not_at_all(tmp_path: Path) -> None:
    db = open_db(tmp_path / "d", create=True)
    with pytest.raises(RuntimeError), db.write_batch(sync=True) as batch:
        batch.put(b"a", b"1")
        raise RuntimeError("the caller failed halfway")
    assert db.get(b"a") is None
    with db.write_batch(sync=True) as batch:
        batch.put(b"a", b"1")
        batch.put(b"b", b"2")
        batch.delete(b"a")
    assert (db.get(b"a"), db.get(b"b")) == (None, b"2")
    db.close()
    with pytest.raises(DatabaseError, match="get"):
        db.get(b"b")  # a closed handle is an error, never an empty answer


def test_a_locked_or_leveldb_dir_is_refused_with_a_reason(tmp_path: Path) -> None:
    db = open_db(tmp_path / "d", create=True)
    with pytest.raises(StoreError, match="another node using it"):
        open_db(tmp_path / "d", create=False)
    db.close()
    old = tmp_path / "old"
    old.mkdir()
    for name, data in (("CURRENT", b"MANIFEST-000002\n"), ("MANIFEST-000002", b"\0" * 16), ("000003.ldb", b"")):
        (old / name).write_bytes(data)  # what LevelDB leaves: no OPTIONS file
    with pytest.raises(StoreError, match=r"a LevelDB store \(schema 8 or older\); this titlechain reads store schema 12"):
        open_db(old, create=False)


def test_a_failed_write_is_raised_and_not_raised_again_by_the_close(tmp_path: Path) -> None:
    # in a child with a 256 KiB file-size limit: the write-ahead log hits it (EFBIG, as a full disk)
    code = (
        "import os, resource, sys\n"
        "from pathlib import Path\n"
        "from chain.database import DatabaseError, open_db\n"
        f"db = open_db(Path({str(tmp_path / 'd')!r}), create=True)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))\n"
        "for i in range(200):\n"
        "    try:\n"
        "        db.put(b'k%d' % i, os.urandom(6000), sync=True)\n"
        "    except DatabaseError as e:\n"
        "        print('failed', i, e)\n"
        "        break\n"
        "db.close()\n"
        "print('closed')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("failed") and "File too large" in lines[0] and lines[1] == "closed", out.stdout


_COMPACTION_NICENESS = """
import sys, time
from pathlib import Path
from chain.database import open_db

db = open_db(Path(sys.argv[1]), create=True)
for round in range(3):
    with db.write_batch() as batch:
        for i in range(2000):
            batch.put(b"k%06d" % (i * 7 % 2000), b"v%d" % round * 20)
    db.compact_range()  # a manual compaction: the low-priority pool runs it
deadline = time.monotonic() + 10
while True:
    tasks = Path("/proc/self/task")
    found = {
        (t / "comm").read_text().strip(): int((t / "stat").read_text().rsplit(")", 1)[1].split()[16])
        for t in tasks.iterdir()
    }
    if "rocksdb:low" in found or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(found.get("rocksdb:low"), found.get("rocksdb:high"))
db.close()
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread niceness is read from Linux's /proc")
def test_compactions_run_at_a_lower_cpu_priority_than_flushes(tmp_path: Path) -> None:
    # a large merge must yield the CPU to the node's own thread (docs/performance.md, "Compactions
    # at a lower CPU priority"); a flush keeps its priority, since a commit may wait for it. A
    # process of its own: the priority is set on RocksDB's default environment, for the process.
    out = subprocess.run(
        [sys.executable, "-c", _COMPACTION_NICENESS, str(tmp_path / "db")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    assert out == ["19", "0"], out


def test_the_tables_are_written_as_the_options_say(tmp_path: Path) -> None:
    # RocksDB records the options it opened with; the block size sets how large a table's index
    # held in memory is (docs/operations.md, Memory), the filter what a missed lookup costs
    from chain.database import BLOCK_BYTES

    open_db(tmp_path / "d", create=True).close()
    options = next((tmp_path / "d").glob("OPTIONS-*")).read_text()
    table = options[options.index("[TableOptions/BlockBasedTable"):]
    assert f"\n  block_size={BLOCK_BYTES}\n" in table
    assert "\n  filter_policy=bloomfilter" in table
    assert "compaction_style=kCompactionStyleUniversal" in options


def test_a_reopened_store_takes_the_memory_its_config_says_now(tmp_path: Path) -> None:
    # an operator who changes db_block_cache_bytes or db_write_buffer_bytes and restarts the node
    # gets them; rocksdict alone reopened a store with the options of its first open and RocksDB's
    # 8 MiB block cache
    from chain.database import DbMemory

    path = tmp_path / "d"
    db = open_db(path, create=True, memory=DbMemory(write_buffer_bytes=2 << 20, block_cache_bytes=3 << 20))
    db.put(b"k", b"v")
    db.close()
    for create in (False, True):
        memory = DbMemory(write_buffer_bytes=5 << 20, block_cache_bytes=7 << 20)
        db = open_db(path, create=create, memory=memory)
        try:
            assert db.get(b"k") == b"v"
            assert db.int_property("rocksdb.block-cache-capacity") == memory.buffers_bytes
        finally:
            db.close()
        newest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
        assert f"\n  write_buffer_size={memory.write_buffer_bytes}\n" in newest.read_text()


def test_the_memtables_and_the_block_cache_share_one_budget(tmp_path: Path) -> None:
    # what the memtables allocate is reserved in the block cache: their sum stays within the
    # budget whatever the memtables hold, and the blocks read get the room the memtables leave
    from chain.database import DbMemory

    memory = DbMemory(write_buffer_bytes=2 << 20, block_cache_bytes=1 << 20)
    db = open_db(tmp_path / "d", create=True, memory=memory)
    try:
        values = {i.to_bytes(4, "big"): bytes([i % 251]) * 1000 for i in range(6000)}  # ~6 MB: flushed
        for key, value in values.items():
            db.put(key, value)
        held = db.memory_parts()
        assert held["memtables"] > 0
        assert held["memtables"] + held["block_cache"] == db.int_property("rocksdb.block-cache-usage")
        db.compact_range()  # the memtables flushed and freed: the blocks may take their room
        assert db.memory_parts()["memtables"] < 64 << 10  # the new memtable's first block
        for _ in range(2):
            for key, value in values.items():
                assert db.get(key) == value
        held = db.memory_parts()
        assert memory.block_cache_bytes < held["block_cache"] <= memory.buffers_bytes
    finally:
        db.close()
