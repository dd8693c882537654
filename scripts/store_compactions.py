"""What a store's flushes and compactions wrote, interval by interval, read from a data dir's LOG.

    python scripts/store_compactions.py DATA_DIR [DATA_DIR ...] [--minutes 5] [--json-out FILE]
    python scripts/store_compactions.py DATA_DIR [...] --view-changes [--margin 5]

RocksDB writes a JSON event to DATA_DIR/LOG (and to LOG.old.<time>, the earlier ones) for each
memtable flushed ("flush_started", then a "table_file_creation" with the table's size under the
same job) and for each compaction ("compaction_finished", with the bytes it wrote and the level,
or sorted run, it wrote to). Summed per interval of wall time, they give what the store costs
beyond the node's own batches: the bytes a compaction rewrites per byte flushed (the write
amplification), while the node runs or after it stopped, without opening the store. A row per
interval, per data dir.

With --view-changes, the node's own log beside its data dir (DATA_DIR/../node.log, as `localnet`
and `titlechain bench --dir` lay them out) is read too: each view change ("view V -> W at height
H") with the compactions running then ("compaction_started" to "compaction_finished", or ended
less than --margin seconds before), and how much of the time such a compaction ran at all, the
rate at which view changes would meet one by chance (docs/performance.md, "The 1,000,000-tx run,
fifth time").
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


@dataclass(frozen=True)
class Compaction:
    start: float  # seconds since the epoch
    end: float
    input_bytes: int


def compactions(lines: Iterable[str]) -> list[Compaction]:
    """Every compaction the LOG saw start and finish, in the order they finished."""
    started: dict[object, tuple[float, int]] = {}
    done: list[Compaction] = []
    for event in events(lines):
        micros, job = event.get("time_micros"), event.get("job")
        if not isinstance(micros, int):
            continue
        if event.get("event") == "compaction_started":
            started[job] = (micros / 1e6, int(event.get("input_data_size", 0)))  # type: ignore[call-overload]
        elif event.get("event") == "compaction_finished" and job in started:
            start, size = started.pop(job)
            done.append(Compaction(start, micros / 1e6, size))
    return done


def view_changes(node_log: Path) -> list[tuple[float, str]]:
    """(time, message) of each view change a node logged (node/runtime/validator.py)."""
    found = []
    with node_log.open(errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short, or stdout mixed in
            if not isinstance(record, dict):
                continue
            msg, ts = record.get("msg"), record.get("ts")
            if isinstance(msg, str) and isinstance(ts, str) and msg.startswith("view ") and " -> " in msg:
                try:
                    at = datetime.fromisoformat(ts).timestamp()
                except ValueError:
                    continue  # not a time the node writes: not its record
                found.append((at, msg.split(" (", 1)[0]))
    return found


def busy_share(runs: list[Compaction], margin: float) -> float:
    """The share of the span from the first compaction's start to the last one's end (+ margin)
    during which a compaction ran or had ended less than `margin` seconds before."""
    spans = sorted((c.start, c.end + margin) for c in runs)
    if not spans:
        return 0.0
    covered, (lo, hi) = 0.0, spans[0]
    for start, end in spans[1:]:
        if start > hi:
            covered, lo = covered + hi - lo, start
        hi = max(hi, end)
    covered += hi - lo
    whole = max(end for _, end in spans) - spans[0][0]
    return covered / whole if whole > 0 else 1.0


def print_view_changes(data_dir: Path, margin: float) -> dict[str, object]:
    node_log = data_dir.parent / "node.log"
    if not node_log.is_file():
        raise SystemExit(f"{data_dir}: no node.log beside it ({node_log})")
    runs = compactions(log_lines(data_dir))
    changes = view_changes(node_log)
    share = busy_share(runs, margin)
    print(f"{data_dir}: {len(changes)} view changes; a compaction ran, or had ended less than {margin:g} s "
          f"before, {share:.0%} of the time")
    met = 0
    rows = []
    for at, msg in changes:
        running = [c for c in runs if c.start <= at <= c.end + margin]
        met += bool(running)
        when = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")
        names = ", ".join(f"{_mib(c.input_bytes)} MiB ({c.end - c.start:.0f} s)" for c in running) or "none"
        print(f"  {when} {msg}: compactions {names}")
        rows.append({"at": when, "view_change": msg, "compactions_mib": [round(c.input_bytes / 2**20) for c in running]})
    if changes:
        print(f"  {met} of {len(changes)} view changes met a compaction (by chance: {share:.0%} each)")
    return {"view_changes": rows, "compaction_share": round(share, 3)}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dirs", type=Path, nargs="+", metavar="DATA_DIR")
    ap.add_argument("--minutes", type=int, default=5, help="the interval, in minutes (UTC) (default 5)")
    ap.add_argument("--json-out", type=Path, help="also write what is printed as JSON here: per data dir, its rows; "
                    "with --view-changes, its view changes and the share of time a compaction ran")
    ap.add_argument("--view-changes", action="store_true",
                    help="instead: each view change in DATA_DIR/../node.log with the compactions running then")
    ap.add_argument("--margin", type=float, default=5.0,
                    help="with --view-changes: a compaction counts this many seconds past its end (default 5)")
    opts = ap.parse_args(argv)
    if opts.view_changes:
        if opts.margin < 0:
            ap.error("--margin cannot be negative")
        found = {str(d): print_view_changes(d, opts.margin) for d in opts.data_dirs}
        if opts.json_out:
            opts.json_out.write_text(json.dumps(found, indent=2) + "\n")
        return 0
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
