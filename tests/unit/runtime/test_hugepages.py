"""node/runtime/hugepages.py: which of the process's mappings the sweeper looks at, which 2 MiB ranges
it asks the kernel to collapse, and, on a host that can, that a dense mapping does end up on huge
pages and a sparse one does not."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import pytest

from node.runtime.hugepages import (
    HOST_HUGE,
    PAGE,
    Region,
    anonymous_writable_regions,
    dense_huge_ranges,
    huge_page_size,
    huge_ranges,
    start_huge_page_sweeper,
)

HUGE = 2 << 20
PER_HUGE = HUGE // PAGE

MAPS = """\
55d0c4a00000-55d0c4a21000 r--p 00000000 08:01 1234   /usr/bin/python3.11
55d0c4e00000-55d0c5200000 rw-p 00000000 00:00 0      [heap]
7f0000000000-7f0000800000 rw-p 00000000 00:00 0
7f0000800000-7f0000a00000 rw-s 00000000 00:05 77     /dev/zero (deleted)
7f0000a00000-7f0000c00000 r--p 00000000 00:00 0
7f0000c00000-7f0000e00000 rw-p 00001000 08:01 999    /var/lib/ledger/000012.sst
7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0      [stack]
7ffd1a1fe000-7ffd1a200000 r-xp 00000000 00:00 0      [vdso]
"""


def test_the_sweeper_looks_at_the_private_writable_anonymous_mappings_only() -> None:
    assert list(anonymous_writable_regions(MAPS.splitlines(keepends=True))) == [
        Region(0x55D0C4E00000, 0x55D0C5200000),  # the C heap
        Region(0x7F0000000000, 0x7F0000800000),  # an anonymous mmap: CPython's arenas, RocksDB's memtables
    ]  # not shared memory, read-only, a file mapped writable, the stack or the vdso


def test_only_whole_aligned_huge_pages_inside_a_region_are_candidates() -> None:
    assert list(huge_ranges(Region(HUGE + PAGE, 4 * HUGE + PAGE), HUGE)) == [2 * HUGE, 3 * HUGE]
    assert list(huge_ranges(Region(HUGE + PAGE, 3 * HUGE), HUGE)) == [2 * HUGE]
    assert not huge_ranges(Region(HUGE + PAGE, 3 * HUGE - PAGE), HUGE)  # 2 MiB - 2 pages: none whole


def test_a_range_is_dense_with_enough_resident_pages_whatever_mincores_reserved_bits_say() -> None:
    full = b"\x01" * PER_HUGE
    short = b"\x01" * 447 + b"\x00" * (PER_HUGE - 447)
    reserved_only = b"\x02" * PER_HUGE  # bits other than bit 0 are not residency
    vec = full + short + reserved_only + b"\x03" * 448 + b"\x00" * (PER_HUGE - 448)
    assert list(dense_huge_ranges(vec, 1 << 30, HUGE, 448)) == [1 << 30, (1 << 30) + 3 * HUGE]


def _anon_huge_kib(start: int, end: int) -> int:
    """AnonHugePages of the mapping of /proc/self/smaps that holds [start, end)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= start and end <= hi
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    raise AssertionError("mapping not found")


def _madvise_host() -> bool:
    size, _ = huge_page_size()
    return size == HUGE


@pytest.mark.skipif(not _madvise_host(), reason="the host's transparent huge pages are not `madvise`")
def test_a_sweep_collapses_a_dense_mapping_and_leaves_a_sparse_one_on_small_pages() -> None:
    started = start_huge_page_sweeper()
    sweeper = started.sweeper
    if sweeper is None:
        pytest.skip(started.how)
    sweeper.stop()  # the thread's own sweeps are not this test's: one sweep below, called directly
    # one mapping (adjacent anonymous mappings merge into one, which smaps reports whole): two
    # aligned huge ranges written whole, two beside them with every other page written (256 of 512,
    # under the threshold), the rest never touched
    region = mmap.mmap(-1, 8 * HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = ctypes.c_char.from_buffer(region)
    start = ctypes.addressof(buf)
    del buf
    dense = -(-start // HUGE) * HUGE - start  # offset of the first aligned huge range
    region[dense:dense + 2 * HUGE] = b"\x01" * (2 * HUGE)
    for offset in range(dense + 2 * HUGE, dense + 4 * HUGE, 2 * PAGE):
        region[offset] = 1
    assert _anon_huge_kib(start, start + len(region)) == 0
    assert sweeper.sweep() >= 2  # the two dense ranges at least (others of the process's may be dense too)
    assert _anon_huge_kib(start, start + len(region)) == 2 * HUGE // 1024  # those two, not the sparse ones
    assert region[dense:dense + PAGE] == b"\x01" * PAGE  # collapsing moves the contents, it does not lose them
    region.close()


def test_the_sweeper_says_why_not_where_the_host_has_no_huge_pages(tmp_path: Path) -> None:
    assert huge_page_size(tmp_path / "absent")[0] is None
    (tmp_path / "enabled").write_text("always madvise [never]\n")
    (tmp_path / "hpage_pmd_size").write_text(f"{HUGE}\n")
    size, why = huge_page_size(tmp_path)
    assert size is None and "never" in why
    (tmp_path / "enabled").write_text("[always] madvise never\n")
    assert huge_page_size(tmp_path) == (None, HOST_HUGE)  # the kernel does it already: not small pages
    (tmp_path / "enabled").write_text("always [madvise] never\n")
    assert huge_page_size(tmp_path) == (HUGE, "madvise")
