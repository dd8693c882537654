"""What a store's flushes and compactions wrote, interval by interval, read from a data dir's LOG.

    python scripts/store_compactions.py DATA_DIR [DATA_DIR ...] [--minutes 5] [--json-out FILE]

RocksDB writes a JSON event to DATA_DIR/LOG (and to LOG.old.<time>, the earlier ones) for each
memtable flushed ("flush_started", then a "table_file_creation" with the table's size under the
same job) and for each compaction ("compaction_finished", with the bytes it wrote and the level,
or sorted run, it wrote to). Summed per interval of wall time, they give what the store costs
beyond the node's own batches: the bytes a compaction rewrites per byte flushed (the write
amplification), while the node runs or after it stopped, without opening the store. A row per
interval, per data dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

_EVENT = "EVENT_LOG_v1 "


@dataclass
class Interval:
    start: str  # UTC, to the minute
    flushed: int = 0  # bytes of the memtables written as tables
    compacted: int = 0  # bytes the compactions wrote
    compactions: int = 0
    to_last_level: int = 0  # of the bytes compacted, those written into the last level (a full merge)

    @property
    def amplification(self) -> float | None:
        """Bytes compactions wrote per byte flushed (None with nothing flushed)."""
        return self.compacted / self.flushed if self.flushed else None


def log_lines(data_dir: Path) -> Iterator[str]:
    """The LOG lines of a data dir, the earlier LOGs' (LOG.old.<time>) first."""
    logs = sorted(data_dir.glob("LOG.old.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    if (data_dir / "LOG").is_file():
        logs.append(data_dir / "LOG")
    if not logs:
        raise SystemExit(f"{data_dir}: no RocksDB LOG here (is it a node's data dir?)")
    for path in logs:
        with path.open(errors="replace") as f:
            yield from f


def events(lines: Iterable[str]) -> Iterator[dict[str, object]]:
    for line in lines:
        at = line.find(_EVENT)
        if at >= 0:
            try:
                yield json.loads(line[at + len(_EVENT):])
            except json.JSONDecodeError:
                continue  # a line cut short by a crash or a LOG being written now


def intervals(lines: Iterable[str], minutes: int) -> list[Interval]:
    """The LOG's flushes and compactions summed per `minutes` of its clock."""
    rows: dict[datetime, Interval] = {}
    flush_jobs: set[object] = set()
    for event in events(lines):
        micros = event.get("time_micros")
        if not isinstance(micros, int):
            continue
        at = datetime.fromtimestamp(micros / 1e6, UTC).replace(second=0, microsecond=0)
        start = at.replace(minute=at.minute - at.minute % minutes)
        row = rows.get(start)
        if row is None:
            row = rows[start] = Interval(start.strftime("%Y-%m-%d %H:%M"))
        kind, job = event.get("event"), event.get("job")
        if kind == "flush_started":
            flush_jobs.add(job)
        elif kind == "table_file_creation" and job in flush_jobs:
            row.flushed += int(event.get("file_size", 0))  # type: ignore[call-overload]
        elif kind == "flush_finished":
            flush_jobs.discard(job)
        elif kind == "compaction_finished":
            written = int(event.get("total_output_size", 0))  # type: ignore[call-overload]
            row.compacted += written
            row.compactions += 1
            state = event.get("lsm_state")
            if isinstance(state, list) and event.get("output_level") == len(state) - 1:
                row.to_last_level += written
    return [rows[k] for k in sorted(rows)]


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR")
    ap.add_argument("--minutes", type=int, default=5, help="the interval, in minutes (UTC) (default 5)")
    ap.add_argument("--json-out", type=Path, help="also write the rows as JSON here")
    opts = ap.parse_args(argv)
    if not 1 <= opts.minutes <= 60 or 60 % opts.minutes:
        ap.error("--minutes must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)")
    result: dict[str, list[dict[str, object]]] = {}
    for data_dir in opts.data_dirs:
        rows = intervals(log_lines(data_dir), opts.minutes)
        print(f"{data_dir}: MiB per {opts.minutes} minutes (UTC)")
        print(f"{'from':<17} {'flushed':>8} {'compacted':>10} {'ampl.':>6} {'into last':>10} {'compactions':>12}")
        total = Counter[str]()
        for row in rows:
            amp = f"{row.amplification:.1f}" if row.amplification is not None else "-"
            print(f"{row.start:<17} {_mib(row.flushed):>8} {_mib(row.compacted):>10} {amp:>6} "
                  f"{_mib(row.to_last_level):>10} {row.compactions:>12}")
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
