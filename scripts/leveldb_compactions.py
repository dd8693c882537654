"""What LevelDB's flushes and compactions wrote, interval by interval, read from a data dir's LOG.

    python scripts/leveldb_compactions.py DATA_DIR [DATA_DIR ...] [--minutes 5] [--json-out FILE]

LevelDB writes a line to DATA_DIR/LOG (and LOG.old, the previous one) for each memtable flushed
("Level-0 table #N: B bytes OK"), each compaction ("Compacted a@L + b@L+1 files => B bytes") and
each table moved down a level without being rewritten ("Moved #N to level-L"). Summed per interval
of wall time, they give what the store layout costs beyond the node's own batches: the bytes a
compaction rewrites per byte flushed (the write amplification) and at which level, while the node
runs or after it stopped, without opening the store. A row per interval, per data dir.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

LEVELS = 7  # LevelDB's config::kNumLevels
_STAMP = re.compile(r"^(\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d)\.\d+ \S+ (.*)$")
_COMPACTED = re.compile(r"^Compacted \d+@(\d) \+ \d+@\d files => (\d+) bytes")
_FLUSHED = re.compile(r"^Level-0 table #\d+: (\d+) bytes OK")
_MOVED = re.compile(r"^Moved #\d+ to level-\d")


@dataclass
class Interval:
    start: str  # local time of LevelDB's LOG lines, to the minute
    flushed: int = 0  # bytes of the memtables written as level-0 tables
    compacted: int = 0  # bytes the compactions wrote, from every level
    from_level: list[int] = field(default_factory=lambda: [0] * LEVELS)  # of them, by the level compacted
    moved: int = 0  # tables moved down a level unchanged (no bytes rewritten)

    @property
    def amplification(self) -> float | None:
        """Bytes compactions wrote per byte flushed (None with nothing flushed)."""
        return self.compacted / self.flushed if self.flushed else None


def log_lines(data_dir: Path) -> Iterator[str]:
    """The LOG lines of a data dir, the previous LOG's (LOG.old) first."""
    found = False
    for name in ("LOG.old", "LOG"):
        path = data_dir / name
        if path.is_file():
            found = True
            with path.open(errors="replace") as f:
                yield from f
    if not found:
        raise SystemExit(f"{data_dir}: no LevelDB LOG here (is it a node's data dir?)")


def intervals(lines: Iterable[str], minutes: int) -> list[Interval]:
    """The LOG's flushes, compactions and moves summed per `minutes` of its timestamps."""
    rows: dict[datetime, Interval] = {}
    for line in lines:
        m = _STAMP.match(line.rstrip("\n"))
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y/%m/%d-%H:%M:%S")
        start = at - timedelta(minutes=at.minute % minutes, seconds=at.second)
        text = m.group(2)
        row = rows.get(start)
        if row is None:
            row = rows[start] = Interval(start.strftime("%Y-%m-%d %H:%M"))
        if c := _COMPACTED.match(text):
            level, written = int(c.group(1)), int(c.group(2))
            row.compacted += written
            row.from_level[level] += written
        elif f := _FLUSHED.match(text):
            row.flushed += int(f.group(1))
        elif _MOVED.match(text):
            row.moved += 1
    return [rows[k] for k in sorted(rows)]


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR")
    ap.add_argument("--minutes", type=int, default=5, help="the interval, in minutes of the LOG's clock (default 5)")
    ap.add_argument("--json-out", type=Path, help="also write the rows as JSON here")
    opts = ap.parse_args(argv)
    if not 1 <= opts.minutes <= 60 or 60 % opts.minutes:
        ap.error("--minutes must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
    result: dict[str, list[dict[str, object]]] = {}
    for data_dir in opts.data_dirs:
        rows = intervals(log_lines(data_dir), opts.minutes)
        print(f"{data_dir}: MiB per {opts.minutes} minutes")
        print(f"{'from':<17} {'flushed':>8} {'compacted':>10} {'ampl.':>6}  "
              + " ".join(f"{'L' + str(i):>7}" for i in range(5)) + "  moved")
        total = Counter[str]()
        for row in rows:
            amp = f"{row.amplification:.1f}" if row.amplification is not None else "-"
            print(f"{row.start:<17} {_mib(row.flushed):>8} {_mib(row.compacted):>10} {amp:>6}  "
                  + " ".join(f"{_mib(b):>7}" for b in row.from_level[:5]) + f"  {row.moved:>5}")
            total.update(flushed=row.flushed, compacted=row.compacted)
        if total["flushed"]:
            print(f"{'all':<17} {_mib(total['flushed']):>8} {_mib(total['compacted']):>10} "
                  f"{total['compacted'] / total['flushed']:>6.1f}")
        result[str(data_dir)] = [dict(asdict(r), amplification=r.amplification) for r in rows]
    if opts.json_out:
        opts.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
