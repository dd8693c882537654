"""Huge pages for the node's dense heap: fewer TLB misses for an interpreter that walks a large heap.

A node's heap is hundreds of MiB of Python objects (its caches, the tree nodes of the current
state) that every tx touches here and there. On 4 KiB pages each of those touches may miss the
TLB; the same heap on 2 MiB pages misses far less. Measured (docs/performance.md, "Where the
100,000-tx bench's growth is on schema 12, and huge pages"): for the same work a node spent ~25 %
more CPU in the interpreter a tx on the 100,000-tx bench than on the 20,000-tx one, and with the
host's transparent huge pages set to `always` the long bench ran ~14 % faster.

Most hosts ship with `madvise`: only regions a process marks get huge pages. Marking the heap
(MADV_HUGEPAGE) was measured and is slower: with the kernel's default `defrag` setting a page
fault in a marked region may compact memory on the spot. So the node asks instead, from a thread
of its own, every `SWEEP_S` seconds, for the 2 MiB ranges of its anonymous memory that are already
at least 7/8 resident to be collapsed into huge pages (MADV_COLLAPSE, Linux 6.1): no fault waits
for it, and collapsing adds at most 1/8 to what a range held. A range the kernel already maps
huge it skips at once.

Where the kernel cannot (no transparent huge pages, set to `never`, older than 6.1, not Linux),
`start_huge_page_sweeper` says why and the node runs as before on small pages.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from node.runtime.memory import c_library

log = logging.getLogger("titlechain.memory")

MADV_COLLAPSE = 25  # linux/mman.h, since 6.1
PAGE = mmap.PAGESIZE
SWEEP_S = 5.0
MIN_RESIDENT_EIGHTHS = 7  # of a huge range's small pages, resident before it is collapsed
THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
HOST_HUGE = "the host already backs anonymous memory with huge pages (transparent huge pages: always)"


@dataclass(frozen=True)
class Region:
    """A mapping of /proc/self/maps: [start, end)."""

    start: int
    end: int


def anonymous_writable_regions(maps: Iterable[str]) -> Iterator[Region]:
    """The private, writable, anonymous mappings of /proc/self/maps's lines (the C heap, CPython's
    arenas, glibc's and RocksDB's mmaps): not files, not stacks, not the vdso and its kin."""
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) < 5 or not fields[1].startswith("rw") or fields[1][3] != "p":
            continue
        path = fields[5].strip() if len(fields) == 6 else ""
        if path not in ("", "[heap]"):
            continue
        lo, _, hi = fields[0].partition("-")
        yield Region(int(lo, 16), int(hi, 16))


def huge_ranges(region: Region, huge: int) -> range:
    """The starts of the whole huge pages inside `region` (size `huge`)."""
    first = -(-region.start // huge) * huge  # rounded up to a huge page's boundary
    return range(first, region.end - huge + 1, huge)


_RESIDENT_BIT = bytes(b & 1 for b in range(256))  # mincore: bit 0 of a page's byte; the others are reserved


def dense_huge_ranges(resident: bytes, start: int, huge: int, min_resident: int) -> Iterator[int]:
    """The starts of the huge ranges of [start, start + len(resident) pages) with at least
    `min_resident` resident small pages; `resident` is mincore's vector, a byte per page."""
    per_huge = huge // PAGE
    bits = resident.translate(_RESIDENT_BIT)
    for i in range(0, len(bits) - per_huge + 1, per_huge):
        if bits.count(1, i, i + per_huge) >= min_resident:
            yield start + i * PAGE


class HugePageSweeper:
    """Collapses the dense parts of this process's anonymous memory into huge pages, from a daemon
    thread, until `stop`. Its calls are blocking system calls, made without the GIL (ctypes)."""

    def __init__(self, libc: ctypes.CDLL, huge: int, interval_s: float = SWEEP_S):
        self._libc = libc
        self._huge = huge
        self._interval_s = interval_s
        self._min_resident = huge // PAGE * MIN_RESIDENT_EIGHTHS // 8
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="huge-pages", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.sweep()
            except OSError as e:  # /proc unreadable: nothing to sweep, say so once and stop
                log.warning("huge pages: sweeping stopped: %s", e)
                return

    def sweep(self) -> int:
        """One pass; how many ranges the kernel collapsed or found huge."""
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            regions = list(anonymous_writable_regions(f))
        done = 0
        for region in regions:
            starts = huge_ranges(region, self._huge)
            if not starts:
                continue
            first, length = starts[0], len(starts) * self._huge
            vec = (ctypes.c_ubyte * (length // PAGE))()
            if self._libc.mincore(ctypes.c_void_p(first), ctypes.c_size_t(length), vec) != 0:
                continue  # unmapped since the maps were read
            for addr in dense_huge_ranges(bytes(vec), first, self._huge, self._min_resident):
                # refused when no free huge page is at hand or a page cannot move: the next sweep asks again
                if self._libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(self._huge), MADV_COLLAPSE) == 0:
                    done += 1
        return done


def huge_page_size(thp_dir: Path = THP_DIR) -> tuple[int | None, str]:
    """The PMD huge page size if this host can collapse anonymous memory into huge pages, else None
    and why not."""
    try:
        mode = (thp_dir / "enabled").read_text()
        size = int((thp_dir / "hpage_pmd_size").read_text())
    except (OSError, ValueError) as e:
        return None, f"the kernel has no transparent huge pages ({e})"
    if "[never]" in mode:
        return None, f"the host's transparent huge pages are off ({thp_dir / 'enabled'}: never)"
    if "[always]" in mode:
        return None, HOST_HUGE
    return size, "madvise"


def _collapse_problem(libc: ctypes.CDLL, huge: int) -> str | None:
    """Collapse a huge range of a mapping of our own, made for it; None when the kernel could."""
    region = mmap.mmap(-1, 2 * huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        region.write(b"\1" * len(region))  # resident, every page
        base = ctypes.addressof(ctypes.c_char.from_buffer(region))
        aligned = huge_ranges(Region(base, base + len(region)), huge)[0]
        if libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(huge), MADV_COLLAPSE) == 0:
            return None
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            return "the kernel has no MADV_COLLAPSE (Linux 6.1 and later) or refuses it for this process"
        return f"the kernel could not collapse a test range: {os.strerror(err)}"
    finally:
        region.close()


@dataclass(frozen=True)
class HugePageStart:
    """What `start_huge_page_sweeper` did: the sweeper it started or None, and what the node runs
    on, said for its log. `small_pages`: the heap stays on small pages (worth a warning); a host at
    `always` needs no sweeper and is not that."""

    sweeper: HugePageSweeper | None
    how: str
    small_pages: bool


def start_huge_page_sweeper() -> HugePageStart:
    """The sweeper, started where the host is at `madvise` and the kernel can collapse."""
    size, why = huge_page_size()
    if size is None:
        return HugePageStart(None, why, small_pages=why != HOST_HUGE)
    libc = c_library()
    if libc is None or not hasattr(libc, "mincore") or not hasattr(libc, "madvise"):
        return HugePageStart(None, "no C library with mincore and madvise", small_pages=True)
    problem = _collapse_problem(libc, size)
    if problem is not None:
        return HugePageStart(None, problem, small_pages=True)
    sweeper = HugePageSweeper(libc, size)
    sweeper.start()
    return HugePageStart(
        sweeper, f"collapsing dense anonymous memory into {size >> 20} MiB pages every {SWEEP_S:g} s", small_pages=False
    )
