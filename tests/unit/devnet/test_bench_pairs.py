"""scripts/bench_pairs.py: the pair protocol's order, ports and verdict, with the bench itself replaced
by a stand-in (the bench is tested in tests/integration/test_bench.py; here, what the script does
with its results)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pairs", ROOT / "scripts" / "bench_pairs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_pairs"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


bp = _script()
PROBE = {"loop_ns": 50.0, "dict_ns": 100.0, "verify_us": 55.0}


def _run(txs: int, tps: float, p99: float) -> Any:
    return bp.Run(txs=txs, tps=tps, p99_ms=p99, cpu_ms_per_tx=1.0, peak_mib=250.0, kernel_share=0.05, view=0, probe=PROBE)


def test_the_verdict_is_on_the_medians_not_the_best_or_the_last_run() -> None:
    small = [_run(20_000, t, 900) for t in (2_400, 2_000, 1_000)]  # median 2,000
    large = [_run(100_000, t, 950) for t in (1_900, 2_500, 1_700)]  # median 1,900
    v = bp.judge(small, large, ratio=0.9, min_tps=2_000, max_p99_ms=1_000)
    assert (v.small_tps, v.large_tps, v.ratio) == (2_000, 1_900, 0.95)
    assert v.ratio_met and not v.throughput_met and v.latency_met and not v.met


def test_each_part_of_the_target_can_fail_alone() -> None:
    small = [_run(20_000, 3_000, 800)] * 3
    assert bp.judge(small, [_run(100_000, 2_600, 800)] * 3, 0.9, 2_000, 1_000).ratio_met is False
    slow = bp.judge(small, [_run(100_000, 2_900, 1_200)] * 3, 0.9, 2_000, 1_000)
    assert slow.ratio_met and slow.throughput_met and not slow.latency_met
    assert bp.judge(small, [_run(100_000, 2_900, 990)] * 3, 0.9, 2_000, 1_000).met
    with pytest.raises(ValueError):
        bp.judge(small, [], 0.9, 2_000, 1_000)


def _bench_summary(txs: int, tps: float) -> dict[str, Any]:
    return {"txs": txs, "tps": tps, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 700.0, "max": 900.0},
            "cpu_s_per_tx": 0.0009, "cpu_system_share": 0.031 if txs == 200 else 0.12,
            "peak_rss_mb": {"a": 240.0, "b": 251.5, "c": None}, "view": 0}


def test_pairs_alternate_on_ports_of_their_own_and_the_verdict_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[int, int, list[str]]] = []

    def fake_bench(txs: int, port: int, out: Path, extra: list[str]) -> dict[str, Any]:
        calls.append((txs, port, extra))
        return _bench_summary(txs, 2_500.0 if txs == 200 else 2_300.0)

    monkeypatch.setattr(bp, "run_bench", fake_bench)
    monkeypatch.setattr(bp, "cpu_probe", lambda: PROBE)
    out = tmp_path / "pairs.json"
    code = bp.main(["--small", "200", "--large", "1000", "--pairs", "2", "--base-port", "40000",
                    "--json-out", str(out), "--", "--window", "500"])
    assert code == 0
    assert calls == [(200, 40000, ["--window", "500"]), (1000, 40020, ["--window", "500"]),
                     (200, 40040, ["--window", "500"]), (1000, 40060, ["--window", "500"])]
    doc = json.loads(out.read_text())
    assert doc["verdict"]["ratio"] == 0.92 and doc["verdict"]["met"] is True
    assert [r["peak_mib"] for r in doc["runs"]["1000"]] == [251.5, 251.5]
    assert [r["kernel_share"] for r in doc["runs"]["200"]] == [0.031, 0.031]
    printed = capsys.readouterr().out
    assert "ratio >= 0.9 met" in printed
    assert printed.count("(kernel 3%)") == 2 and printed.count("(kernel 12%)") == 2


def test_a_failed_run_fails_the_script(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing(txs: int, port: int, out: Path, extra: list[str]) -> dict[str, Any]:
        raise RuntimeError("bench --txs 200 exited 1")

    monkeypatch.setattr(bp, "run_bench", failing)
    monkeypatch.setattr(bp, "cpu_probe", lambda: PROBE)
    assert bp.main(["--small", "200", "--large", "1000", "--pairs", "1"]) == 1
    assert "a run failed" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--small", "1000", "--large", "1000"], ["--pairs", "0"], ["--base-port", "64990"]])
def test_bad_options_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        bp.main(args)
    assert e.value.code == 2


def test_the_probe_times_each_piece() -> None:
    probe = bp.cpu_probe()
    assert set(probe) == {"loop_ns", "dict_ns", "verify_us"} and all(v > 0 for v in probe.values())
