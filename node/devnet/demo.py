"""`titlechain demo`: the whole story of titlechain on a local four-validator consortium.

Every step goes through the public RPC with signed transactions, exactly as an issuer's back office
would; the proof check and the audit at the end use nothing but the genesis file and the nodes' data
on disk. Each step checks the outcome it expects (an `ok` receipt, or a rejection with a given
code): the first surprise ends the demo with exit 1, naming the step, and the consortium is still
stopped (unless `--keep`, which leaves it up for inspection).

The story is written for the cast of seeds/demo.json (the default seed of `init` and `localnet up`).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from node.console import console as pipe_safe_console
from node.devnet.localnet import LocalnetError, down_and_wait, manifest_path
from node.devnet.provision import DEFAULT_BASE_PORT, consortium_ports
from node.devnet.story import VALIDATORS, DemoError, DemoFailed, StepFailed, Story
from node.errors import EXIT_FAILED, EXIT_USAGE

# ---------------------------------------------------------------------- before anything starts


def check_ports_free(base_port: int, host: str = "127.0.0.1") -> None:
    """Refuse up front when a port the consortium needs is taken: a node that cannot bind would
    otherwise only show up as a process that exited, with its log in a temp dir."""
    ports = consortium_ports(base_port, VALIDATORS)
    count = len(ports)
    if not 1024 <= base_port <= 65535 - count:
        raise DemoError(
            f"--base-port {base_port}: the demo needs {count} ports from it, within 1024..65535", EXIT_USAGE
        )
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # as the nodes bind: a port held only by TIME_WAIT connections is usable
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise DemoError(
                    f"port {port} on {host} is already in use ({e.strerror}): another localnet, demo or bench? "
                    f"The demo needs ports {base_port}..{base_port + count - 1}; choose others with --base-port"
                ) from None


def prepare_workdir(workdir: Path | None) -> tuple[Path, bool]:
    """The consortium directory and whether it is ours to delete (a temp dir)."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="titlechain-demo-")), True
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        # the story registers fixed asset ids: on a used chain every registration would be refused
        raise DemoError(f"--dir {workdir}: must be a new or empty directory", EXIT_USAGE)
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, False


# ---------------------------------------------------------------------- the run


@dataclass(frozen=True)
class StepTime:
    number: int
    title: str
    seconds: float


class Runner:
    """Numbers, times and prints the steps; turns any exception into a StepFailed naming the step."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.done: list[StepTime] = []

    def step(self, title: str, fn: Callable[[], None]) -> None:
        number = len(self.done) + 1
        self.out.print()
        self.out.rule(f"[bold]{number}. {title}", align="left")
        t0 = time.monotonic()
        try:
            fn()
        except DemoFailed as e:
            raise StepFailed(number, title, str(e)) from None
        except Exception as e:  # any surprise fails the demo, naming the step
            raise StepFailed(number, title, f"{type(e).__name__}: {e}") from e
        self.done.append(StepTime(number, title, time.monotonic() - t0))


def tell(runner: Runner, story: Story, keep: bool) -> None:
    runner.step("A consortium of four institutions starts", story.start)
    runner.step("Issuers register warehouse receipts, a property deed and a receivable", story.register)
    runner.step("The same goods cannot be registered twice", story.duplicate)
    runner.step("A sale: the copper receipt changes hands", story.sale)
    runner.step("A pledge to a bank, and its release by the bank", story.pledge)
    runner.step("A double-spend: one receipt sold twice at once through two nodes", story.double_spend)
    runner.step("A court order: the regulator freezes a deed and enforces the judgment", story.court)
    runner.step("A receivable is factored, paid and redeemed", story.receivable)
    runner.step("The record of one asset", story.history)
    runner.step("An ownership proof, checked offline with only the genesis", story.proof)
    runner.step("An audit of every node's data from the genesis", story.audit)
    if not keep:
        runner.step("The consortium stops", story.stop)


def summary(out: Console, runner: Runner, seconds: float) -> None:
    t = Table(title="what happened")
    t.add_column("step", justify="right")
    t.add_column("")
    t.add_column("seconds", justify="right")
    for s in runner.done:
        t.add_row(str(s.number), s.title, f"{s.seconds:.2f}")
    out.print()
    out.print(t)
    out.print(
        f"[bold green]Every expected outcome happened[/], in [bold]{seconds:.1f} s[/] from the first step to the last."
    )


def keep_note(out: Console, root: Path, story: Story) -> None:
    out.print()
    out.print(f"[yellow]--keep:[/] the consortium keeps running in {root}")
    for n in story.cons.nodes:
        out.print(f"  {n.node_id:<24} {n.rpc}/v1/status")
    out.print(f"  nodes, key files and genesis: {manifest_path(root)}")
    out.print(f"  stop it with: [bold]titlechain localnet down --dir {root}[/]")


def run_demo(
    *,
    keep: bool = False,
    workdir: Path | None = None,
    base_port: int = DEFAULT_BASE_PORT,
    console: Console | None = None,
) -> int:
    """The demo; the process exit code (0 only if every expected outcome happened)."""
    out = console or pipe_safe_console()  # piped, rich's 80 columns broke sentences mid-way
    err = console or pipe_safe_console(stderr=True)
    t0 = time.monotonic()
    try:
        check_ports_free(base_port)
        root, temporary = prepare_workdir(workdir)
    except DemoError as e:
        err.print(f"[bold red]error:[/] {e}")
        return e.code
    out.print("[bold]titlechain demo[/]: a consortium ledger for the rights to real assets")
    story = Story(out, root, base_port)
    runner = Runner(out)
    failed: StepFailed | None = None
    try:
        tell(runner, story, keep)
        summary(out, runner, time.monotonic() - t0)
    except StepFailed as e:
        failed = e
        err.print(f"\n[bold red]demo failed:[/] {e}")
    finally:
        story.close()
        _finish(out, root, temporary and failed is None, keep, story)
    if failed is not None and (root / "nodes").exists():
        err.print(f"the nodes' logs are kept in {root}/nodes/*/node.log")
    return EXIT_FAILED if failed is not None else 0


def _finish(out: Console, root: Path, remove: bool, keep: bool, story: Story) -> None:
    """Whatever happened (a failed step, Ctrl-C): leave nothing running unless asked to, and
    remove the directory when it is ours and nothing in it is needed (a failure keeps the logs)."""
    if keep and manifest_path(root).exists():
        keep_note(out, root, story)
        return
    if not story.stopped and manifest_path(root).exists():
        try:
            down_and_wait(root)
        except (DemoFailed, LocalnetError, OSError) as e:
            out.print(f"[bold red]could not stop the consortium:[/] {e}; try `titlechain localnet down --dir {root}`")
            return
    if remove:
        shutil.rmtree(root, ignore_errors=True)
