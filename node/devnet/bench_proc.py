"""What the bench reads of the node processes (from /proc, Linux, and their /metrics) and its
percentile rule."""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from node.runtime.metrics import HELD_MEMORY


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/<pid>/stat (utime, stime)."""
    _, user, system = _stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    return user, system


def _stat_cpu(stat: str) -> tuple[str, float, float]:
    """(command name, user s, system s) of a /proc stat line, a process's or a thread's."""
    name, rest = stat.split("(", 1)[1].rsplit(")", 1)  # the name may hold spaces and parentheses
    fields = rest.split()
    return name, int(fields[11]) / clock_ticks(), int(fields[12]) / clock_ticks()


# RocksDB names the threads of its two pools (chain/database.py): flushes run in rocksdb:high,
# compactions in rocksdb:low
STORE_THREADS = {"flush": "rocksdb:high", "compaction": "rocksdb:low"}


def store_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of a node's RocksDB threads, by pool (`STORE_THREADS`), from
    /proc/<pid>/task/*/stat: what its store's flushes and compactions cost, within the process's
    total (`cpu_times`). The pools' threads live as long as the store, so a difference of two
    readings is the work between them. OSError if the process is gone."""
    out = dict.fromkeys(STORE_THREADS, 0.0)
    pool = {name: part for part, name in STORE_THREADS.items()}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # a thread that ended between the listing and the read
            continue
        name, user, system = _stat_cpu(stat)
        if (part := pool.get(name)) is not None:
            out[part] += user + system
    return out


def _status_mb(pid: int, name: str) -> float | None:
    """A kB field of /proc/<pid>/status in MiB; None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM, the peak resident set, in MiB; None if the process is gone."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float | None:
    """VmRSS, the current resident set, in MiB; None if the process is gone."""
    return _status_mb(pid, "VmRSS")


def rss_anon_mb(pid: int) -> float | None:
    """RssAnon, the heap part of the resident set (Python's objects, RocksDB's memtables and block
    cache), in MiB; the rest of VmRSS is mapped files (code, shared libraries), which the kernel
    may take back at any time (docs/performance.md, Memory). None if the process is gone."""
    return _status_mb(pid, "RssAnon")


def held_mb(rpc: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """What a node says it holds in memory, by part (its caches, its mempool, RocksDB's parts:
    `titlechain_memory_held_bytes` in its /metrics), in MiB; None if it does not answer in time."""
    try:
        with urllib.request.urlopen(f"{rpc}/metrics", timeout=timeout_s) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {
        s.labels["part"]: round(s.value / 2**20, 1)
        for family in text_string_to_metric_families(text) if family.name == HELD_MEMORY
        for s in family.samples
    }


def dir_bytes(path: Path) -> int | None:
    """Bytes on disk (allocated blocks, not apparent sizes) of every file under `path`; None if the
    directory is gone. RocksDB deletes tables while a compaction runs, so a file may vanish between
    the listing and its stat: it no longer takes space and counts as 0."""
    if not path.is_dir():
        return None
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
