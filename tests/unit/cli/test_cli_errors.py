"""Every layer's errors end a `titlechain` command with `error: …` and its exit code, never a
traceback (docs/cli.md, exit codes; node/cli/common.py maps them in one place)."""

from __future__ import annotations

import json
from pathlib import Path

import ports
from click.testing import CliRunner
from factories import free_base_port

from chain.errors import ChainError
from chain.store import StoreError
from chain.tx import TxError
from contracts.errors import ContractError
from contracts.proofs import ProofError
from contracts.result import Rejection
from node.cli.main import main
from node.devnet.bench import BenchError
from node.devnet.localnet import LocalnetError, node_pids
from node.devnet.provision import DEFAULT_SEED, consortium_ports, init_consortium
from node.errors import EXIT_FAILED, NodeError
from node.runtime.config import ConfigError


def test_each_layer_has_one_root_and_keeps_the_builtin_base() -> None:
    assert issubclass(TxError, ChainError) and issubclass(TxError, ValueError)
    assert issubclass(StoreError, ChainError) and issubclass(StoreError, RuntimeError)
    assert issubclass(Rejection, ContractError) and issubclass(ProofError, LookupError)
    assert issubclass(LocalnetError, NodeError) and issubclass(LocalnetError, RuntimeError)
    assert issubclass(BenchError, NodeError) and issubclass(ConfigError, ValueError)


def test_a_localnet_error_is_exit_1_with_its_message(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["localnet", "down", "--dir", str(tmp_path)])
    assert r.exit_code == EXIT_FAILED, r.output
    assert "error:" in r.stderr and "no localnet.json" in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_an_unusable_node_config_is_a_failed_check(tmp_path: Path) -> None:
    # the file was given as asked; what it says fails a check: exit 1 (docs/cli.md), 2 is for usage
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"node_id": "n0"}))
    r = CliRunner().invoke(main, ["node", "run", "--config", str(cfg)])
    assert r.exit_code == EXIT_FAILED, r.output
    assert r.stderr.startswith("error:") and "Traceback" not in r.output


def test_bench_reports_a_node_that_cannot_start_instead_of_a_traceback(tmp_path: Path) -> None:
    # a consortium whose one node exits at start (its genesis is no genesis): localnet.up raises
    # LocalnetError, a RuntimeError the bench command used to let escape as a traceback
    base = free_base_port(len(consortium_ports(0, 1)), *ports.CLI)
    root = tmp_path / "net"
    init_consortium(root, validators=1, seed_path=DEFAULT_SEED, base_port=base)
    (root / "genesis.json").write_text("{}")
    r = CliRunner().invoke(
        main, ["bench", "--validators", "1", "--txs", "2", "--dir", str(root), "--base-port", str(base), "--deadline", "30"]
    )
    assert r.exit_code == EXIT_FAILED, (r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception  # was: LocalnetError
    assert "bench failed" in r.stderr and "exited with" in r.stderr, r.stderr
    for n in json.loads((root / "localnet.json").read_text())["nodes"]:  # nothing is left running
        assert not node_pids(n["config"])
