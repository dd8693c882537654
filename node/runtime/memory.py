"""The process's memory as the node sees it: its resident set, and what glibc does with freed heap.

CPython frees small objects into its own arenas and large ones through glibc's malloc; neither
hands memory back to the OS at once, so after a burst (a large block decoded, a cache generation
dropped) the resident set stays high although the bytes are free. `malloc_trim` asks glibc to
return the free pages it holds: scripts/bench_memory.py --trim uses it to tell live growth from
freed memory the allocator keeps (~25 MiB of a ledger's ~190 MiB heap, and not growing, so the
node does not call it; docs/performance.md, Memory). A node does the opposite (`keep_freed_heap`):
it has glibc keep what it freed, so that its resident set does not swing with every memtable.

With TITLECHAIN_MEMLOG=SECONDS in its environment a node logs, every SECONDS, its resident set
(heap and mapped files apart), the sizes of what it holds (`sizes`: its caches, mempool, consensus
state) and the object types whose count grew most since the last line: how the growers of
docs/performance.md ("Memory") were found. A diagnostic: each line walks every object (tens of ms).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping

log = logging.getLogger("titlechain.memory")

_libc: ctypes.CDLL | None = None
_looked_up = False


def rss_bytes() -> int:
    """This process's resident set (VmRSS), 0 where /proc is not there."""
    return _status_kib(b"VmRSS") * 1024


def rss_parts() -> dict[str, int]:
    """The resident set by kind (bytes): `anon` (heap: Python's objects, RocksDB's memtables and
    block cache), `file` (pages of mapped files), `shmem`."""
    return {k: _status_kib(f"Rss{k.capitalize()}".encode()) * 1024 for k in ("anon", "file", "shmem")}


def _status_kib(field: bytes) -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(field + b":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def c_library() -> ctypes.CDLL | None:
    """The process's C library (its calls set `ctypes.get_errno`), None where none is found."""
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name, use_errno=True) if name else None
        except OSError:
            _libc = None
    return _libc


def _glibc() -> ctypes.CDLL | None:
    lib = c_library()
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def malloc_trim() -> bool:
    """Return glibc's free heap pages to the OS; False where there is no glibc malloc_trim."""
    lib = _glibc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True


# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_TRIM_THRESHOLD = 1 << 30  # free bytes at a heap's top before glibc returns them: never, in practice
KEEP_MMAP_THRESHOLD = 32 << 20  # glibc's largest: smaller blocks come from its heaps, and stay there


def keep_freed_heap() -> str | None:
    """Have glibc keep the heap it has freed instead of handing it back to the OS; None when done,
    otherwise why it was not (no glibc), for the caller to log.

    By default glibc returns the free top of a heap to the OS once it passes a threshold, and
    serves large blocks by mmap, raising both thresholds as it sees large blocks freed. In a node
    the large blocks are RocksDB's memtables (64 MiB, filled and freed at every flush) and a
    block's buffers: a flush gave 30-45 MiB back that the next memtable faulted in again, and
    the resident set swung by that much with nothing held changing (docs/performance.md, "The heap
    glibc gave back"). Kept, the freed bytes serve the next memtable. What is kept is at most the
    heap's peak, which the node's caps bound; blocks over 32 MiB still go back at once."""
    lib = _glibc()
    if lib is None or not hasattr(lib, "mallopt"):
        return "not glibc: the C heap's return of freed memory is the platform allocator's"
    for param, value in ((_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)):
        if lib.mallopt(param, value) != 1:
            return f"glibc refused mallopt({param}, {value})"
    return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def c_heap_bytes() -> dict[str, int] | None:
    """glibc's heap by state (its `mallinfo2`, every arena): `in_use`, the blocks allocated (RocksDB's
    memtables, block cache and tables' indexes; CPython's objects over 512 bytes), and `free`,
    what it holds freed for the next ones (kept: `keep_freed_heap`). CPython's small objects live in
    arenas of their own, outside both. None without glibc 2.33's mallinfo2."""
    lib = _glibc()
    if lib is None or not hasattr(lib, "mallinfo2"):
        return None
    mallinfo2 = lib.mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


MEMLOG_ENV = "TITLECHAIN_MEMLOG"


def probe_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """TITLECHAIN_MEMLOG's seconds, None when unset; a bad value is refused, not ignored."""
    raw = environ.get(MEMLOG_ENV)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86_400:
        raise ValueError(f"{MEMLOG_ENV}={raw!r}: seconds between memory lines, more than 0")
    return seconds


async def run_probe(seconds: float, sizes: Callable[[], Mapping[str, int]]) -> None:
    """Log a memory line every `seconds` until cancelled (see the module's docstring)."""
    before: Counter[str] = Counter()
    while True:
        await asyncio.sleep(seconds)
        gc.collect()
        counts = Counter(type(o).__name__ for o in gc.get_objects())
        grown = ", ".join(f"{name} +{n:,}" for name, n in (counts - before).most_common(6))
        before = counts
        parts = rss_parts()
        held = ", ".join(f"{k} {v:,}" for k, v in sizes().items())
        log.info(
            "memory: rss heap %.1f MiB, mapped files %.1f MiB; held: %s; object types grown: %s",
            parts["anon"] / 2**20, parts["file"] / 2**20, held, grown or "none",
        )

