"""`titlechain audit …`: verify a whole chain, fetch a proof of ownership or absence, check a proof or a piece of
equivocation evidence offline.

The checks themselves live in chain/audit.py (with the contracts' re-executor plugged in by
node/runtime/ledger.py for data dirs and node/explorer/rpc_audit.py for a node's RPC); this module runs them,
shows progress and reports. The report goes to stdout whether the chain holds or not; the exit
code says which (0 all holds, 1 a check failed or the node answered an error, 2 usage error).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chain.audit import AuditReport
from chain.genesis import Genesis
from chain.proofcheck import ProofResult, verify_ownership_proof
from node.cli.common import (
    EXIT_FAILED,
    RPC_HELP,
    TOKEN_HELP,
    SourceChoice,
    asset_id_argument,
    cacert_option,
    data_dir_file_option,
    fail,
    genesis_file_option,
    print_json,
    reading,
    url_option,
)
from node.consensus.evidence import EvidenceResult, verify_evidence

GENESIS_HELP = "the genesis file: the only thing trusted"
genesis_required = genesis_file_option(GENESIS_HELP, required=True)


@click.group()
def audit() -> None:
    """Verify the chain from the genesis alone: every block, or a proof of one asset's ownership or absence."""


# -- audit verify ------------------------------------------------------------------------------------


# a long audit on a log (not a terminal) says how far it is this often
PROGRESS_LINE_EVERY_S = 5.0


@contextmanager
def _progress(show: bool | None) -> Iterator[Callable[[int, int, int], None] | None]:
    """A progress callback reporting on stderr (never stdout: that is the report's), or None.

    On a terminal (or asked for with --progress) a bar that, by default, vanishes when done; on a
    log, a plain line every PROGRESS_LINE_EVERY_S seconds (height/head, txs, tx/s), so that a
    long audit run by a script shows it is alive. --no-progress, --quiet and --json silence both.
    """
    err = Console(stderr=True)
    start = time.monotonic()

    def rate(txs: int) -> str:
        return f"{txs / max(time.monotonic() - start, 1e-9):,.0f} tx/s"

    if show is False:
        yield None
    elif show is None and not err.is_terminal:
        last = [start]

        def line(height: int, head: int, txs: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_LINE_EVERY_S:
                last[0] = now
                click.echo(f"auditing: height {height}/{head}, {txs:,} txs, {rate(txs)}", err=True)

        yield line
    else:
        columns = (
            TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=show is None) as bar:
            task = bar.add_task("audit", total=None, rate="")

            def advance(height: int, head: int, txs: int) -> None:
                bar.update(task, completed=height, total=head, rate=rate(txs))

            yield advance


@audit.command("verify")
@click.option("--rpc", callback=url_option, metavar="URL", help=RPC_HELP)
@data_dir_file_option("audit a node's data dir instead (through a private copy; safe while the node runs)")
@genesis_required
@click.option("--token", envvar="TITLECHAIN_TOKEN", metavar="TOKEN", help=TOKEN_HELP)
@cacert_option
@click.option(
    "--progress/--no-progress",
    default=None,
    help="draw a progress bar on stderr (default: a bar on a terminal, else a line every few seconds)",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress at all (as --no-progress)")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    metavar="N",
    help="processes checking tx signatures (default: one per core); 1 checks them in this process",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON (no progress)")
def verify_cmd(
    rpc: str | None,
    data_dir: Path | None,
    genesis: Genesis,
    token: str | None,
    cacert: Path | None,
    progress: bool | None,
    quiet: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Verify every block from the genesis, from a node's RPC or a data dir.

    \b
    Checked, height by height: each block's link to the previous one, its tx root, every tx
    signature and expiry window, that no tx commits twice, the commit certificate against the
    validator set of that height (as replayed from the genesis through every governance change),
    and re-execution of every tx to the same state root, receipts root and receipts.
    With --data-dir, every stored record (state, history, owner and tx indexes) is compared
    with the replay too. Over --rpc the txs and receipts are fetched one by one (the block
    answers name only their ids), so a long chain takes a while.

    With --data-dir, tx signatures are checked in --workers processes while re-execution runs
    in order in this one; the report is the same for any number of workers.

    Exit 0 only if everything holds; otherwise exit 1 naming the first bad height and why.
    """
    from node.explorer.sources import SourceError

    SourceChoice(rpc, data_dir, None, token, cacert).check()
    where = rpc if rpc is not None else str(data_dir)
    show = False if quiet or as_json else progress
    try:
        with _progress(show) as advance:
            report = _run_audit(rpc, data_dir, genesis, token, cacert, advance, workers or os.cpu_count() or 1)
    except SourceError as e:
        fail(str(e))
    except BrokenProcessPool as e:  # a worker killed (out of memory, a signal): no verdict either way
        fail(f"the audit stopped: a signature-checking worker process died ({e})")
    _report(report, where, as_json)


def _run_audit(
    rpc: str | None,
    data_dir: Path | None,
    genesis: Genesis,
    token: str | None,
    cacert: Path | None,
    advance: Any,
    workers: int,
) -> AuditReport:
    from node.runtime.process import collect_cycles_rarely

    collect_cycles_rarely()
    if data_dir is not None:
        from node.runtime.ledger import audit_data_dir

        return audit_data_dir(data_dir, genesis, advance, workers)
    from node.explorer.rpc_audit import audit_rpc
    from node.sdk.client import Client

    assert rpc is not None
    with Client(rpc, token=token, ca=cacert) as client:
        return audit_rpc(client, genesis, advance)


def _report(report: AuditReport, where: str, as_json: bool) -> None:
    if as_json:
        print_json({**asdict(report), "coverage": report.coverage, "source": where})
    elif report.ok and report.base:
        click.echo(f"audit ok from base height {report.base}: {where}")
        click.echo(f"  a data dir made by state sync: its base block {report.base} verified from the genesis through "
                   "the validator-set changes, the tx-id window and the state at the base against its state root")
        click.echo(f"  then {report.blocks} blocks and {report.txs} txs verified by re-execution")
        click.echo(f"  state root at height {report.base + report.blocks}: {report.state_root}")
        click.echo(f"  {report.coverage}")
        click.echo("  blocks below the base are not held here: a full audit needs an archive node or a replay from the genesis")
    elif report.ok:
        click.echo(f"audit ok: {where}")
        click.echo(f"  {report.blocks} blocks and {report.txs} txs verified from the genesis")
        click.echo(f"  state root at height {report.blocks}: {report.state_root}")
        click.echo(f"  {report.coverage}")
    else:
        click.echo(f"audit FAILED: {where}")
        click.echo(f"  first bad height: {report.height}")
        click.echo(f"  why: {report.reason}")
        click.echo(f"  ({report.blocks} blocks before it verified)")
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


# -- ownership proofs ----------------------------------------------------------------------------------


@audit.command("proof")
@click.argument("asset_id", callback=asset_id_argument)
@click.option("--rpc", required=True, callback=url_option, metavar="URL", help="the node to ask")
@click.option("--token", envvar="TITLECHAIN_TOKEN", metavar="TOKEN", help=TOKEN_HELP)
@cacert_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="write the proof here (default: stdout)",
)
def proof_cmd(asset_id: str, rpc: str, token: str | None, cacert: Path | None, out: Path | None) -> None:
    """Fetch a proof of ASSET_ID's state as of the node's head, as JSON; for an id no asset holds,
    a proof of its absence.

    The proof holds the asset's state (null for absence), its key's path to the state root of a
    certified block header, and the validator-set changes linking that header to the genesis.
    Anyone holding the genesis file can check it offline with `titlechain audit verify-proof FILE
    --genesis FILE`; nothing in it needs to be trusted, including the node it came from.
    """
    with reading(SourceChoice(rpc, None, None, token, cacert)) as source:
        proof = source.proof(asset_id)
    text = json.dumps(proof, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as e:
        raise click.BadParameter(f"cannot write {out}: {e.strerror}", param_hint="--out") from None
    height = (
        proof.get("header", {}).get("height")
        if isinstance(proof, dict) and isinstance(proof.get("header"), dict)
        else None
    )
    click.echo(f"proof of {asset_id} as of height {height if height is not None else '?'} written to {out}", err=True)


@audit.command("verify-proof")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@genesis_required
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_proof_cmd(file: Path, genesis: Genesis, as_json: bool) -> None:
    """Check a proof of ownership or of absence offline, trusting only the genesis.

    Valid means: the header was certified by a quorum of the validator set reached from the genesis
    through the proof's validator-set changes, and the asset's state (or its absence) leads to that
    header's state root. Prints the owner, the status and the height it is proven at, or that the
    asset is absent as of that height. Exit 0 only if the proof is valid; exit 1 with the reason
    otherwise.
    """
    proof, not_json = _read_json_file(file)
    result = ProofResult(False, not_json) if not_json else verify_ownership_proof(proof, genesis)
    _proof_report(result, as_json)


def _read_json_file(file: Path) -> tuple[Any, str | None]:
    """(value, None), or (None, why it is not JSON); an unreadable file is a usage error (exit 2)."""
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read {file}: {e}", param_hint="FILE") from None
    try:
        return json.loads(text), None
    except (json.JSONDecodeError, RecursionError) as e:
        return None, f"the file is not JSON: {e}"


def _proof_report(result: ProofResult, as_json: bool) -> None:
    asset = result.asset
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "reason": result.reason,
                "asset_id": result.asset_id,
                "claim": None if not result.ok else "absence" if result.absent else "ownership",
                "exists": asset is not None if result.ok else None,
                "owner": result.owner,
                "status": None if asset is None else asset.get("status"),
                "height": result.height,
                "block_hash": result.block_hash,
                "state_root": result.state_root,
                "asset": asset,
            }
        )
    elif not result.ok:
        click.echo(f"proof INVALID: {result.reason}")
    elif asset is None:
        click.echo(f"proof valid: asset {result.asset_id} is absent as of height {result.height}")
        click.echo(f"  no asset was registered under this id up to that height (block {result.block_hash})")
    else:
        click.echo(f"proof valid: asset {result.asset_id}")
        click.echo(f"  owner   {result.owner}")
        click.echo(
            f"  status  {asset.get('status')}" + (f" (pledgee {asset['pledgee']})" if asset.get("pledgee") else "")
        )
        click.echo(f"  height  {result.height} (block {result.block_hash})")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@audit.command("verify-evidence")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@genesis_required
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_evidence_cmd(file: Path, genesis: Genesis, as_json: bool) -> None:
    """Check an equivocation record offline (one entry of GET /v1/evidence), trusting only the genesis.

    Valid means: both messages are signed by the named validator under the consensus domain, are of
    the same kind, view and height and differ, and the validator belongs to the validator set of
    that height, reached from the genesis through the record's certified links. Exit 0 only if the
    record is valid; exit 1 with the reason otherwise.
    """
    record, not_json = _read_json_file(file)
    result = EvidenceResult(False, not_json) if not_json else verify_evidence(record, genesis)
    if as_json:
        print_json(result.to_plain())
    elif not result.ok:
        click.echo(f"evidence INVALID: {result.reason}")
    else:
        ev = result.evidence
        assert ev is not None
        click.echo(f"evidence valid: validator {ev.validator} equivocated")
        click.echo(f"  two different {ev.kind} messages for view {ev.view} height {ev.height}")
        click.echo(f"  digests {ev.first.digest} {ev.second.digest}")
        click.echo(f"  record  {ev.evidence_id}")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)
