"""node/runtime/memory.py's `keep_freed_heap`: a node has glibc keep the heap it freed, so that its
resident set does not swing with RocksDB's memtables. Each case is a process of its own (glibc's
thresholds are process-wide), which frees a 24 MiB block, as large as a memtable's share, and
reports how much of it left the resident set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node.runtime.memory import _glibc

FREE_A_BLOCK = """
import ctypes, sys
from node.runtime.memory import keep_freed_heap, rss_parts
if sys.argv[1] == "keep":
    assert keep_freed_heap() is None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 24 << 20
block = libc.malloc(n)
ctypes.memset(block, 1, n)  # touched: resident
before = rss_parts()["anon"]
libc.free(block)
print(before - rss_parts()["anon"])
"""


def _freed_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FREE_A_BLOCK, mode], capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout) / 2**20


@pytest.mark.skipif(_glibc() is None, reason="glibc only: elsewhere the node logs that it cannot")
def test_a_freed_block_stays_resident_once_the_heap_is_kept_and_leaves_it_otherwise() -> None:
    assert _freed_mib("default") >= 20  # glibc's default: a block this large is mmapped, and unmapped when freed
    assert _freed_mib("keep") < 4  # kept in the heap for the next one
