"""What the reading and writing subcommands share: exit codes, option checks, sources, output.

Conventions (docs/cli.md): a command's answer goes to stdout whatever it says (a table, or JSON
with `--json`); stderr carries only what stopped a command from answering. Exit 0 success, 1 a
check failed or the node answered an error, 2 a usage error. Anything given on the command line
that cannot be used (a key or genesis file that does not load, a data dir that is not one, a
malformed tx id) is refused by click's own machinery, so it exits 2 with click's message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from chain.crypto import KeyFileError, KeyPair, is_account, load_key_file
from chain.encoding import is_hex
from chain.genesis import Genesis, GenesisError
from chain.patterns import WholePattern
from contracts.args import ASSET_ID_PATTERN
from node.console import console
from node.errors import EXIT_FAILED, LAYER_ERRORS, NodeError

F = TypeVar("F", bound=Callable[..., Any])

_URL = WholePattern(r"^https?://[^\s/\x00-\x1f\x7f-\x9f]+(/[^\s\x00-\x1f\x7f-\x9f]*)?$")


def fail(message: str) -> NoReturn:
    """Stop with exit 1: a check failed or the source answered an error."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_FAILED)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """The one place the layers' errors become exit codes: `error: …` on stderr, then exit 1, or
    a NodeError's own `exit_code` (2 for a config file that cannot be used). Anything else is a
    bug and keeps its traceback."""
    try:
        yield
    except LAYER_ERRORS as e:
        click.echo(f"error: {e}", err=True)
        raise SystemExit(e.exit_code if isinstance(e, NodeError) else EXIT_FAILED) from None


class LayerErrorsGroup(click.Group):
    """A command group whose every subcommand runs under `exit_on_error`."""

    def invoke(self, ctx: click.Context) -> Any:
        with exit_on_error():
            return super().invoke(ctx)


def print_json(obj: Any) -> None:
    # sorted keys: the same answer prints the same bytes from any source and any process (diffable)
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True))


def show(*renderables: Any) -> None:
    """Print tables whole: the console widens to the widest, so no cell is wrapped or cut (on a
    narrow terminal the terminal folds the long line; the printed line itself stays intact)."""
    out = console()
    need = max((out.measure(r).maximum for r in renderables if not isinstance(r, str)), default=0)
    out.width = max(out.width, need)
    for r in renderables:
        out.print(r, crop=False)


def fmt_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(h: str | None, n: int = 16) -> str:
    if h is None:
        return "-"
    return h if len(h) <= n else h[:n] + "…"


# -- option and argument checks (each failure is a usage error, exit 2) ---------------------------


def url_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _URL.matches(value):
        raise click.BadParameter("a node's RPC URL, like http://127.0.0.1:26601")
    return value


def genesis_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> Genesis | None:
    if value is None:
        return None
    try:
        return Genesis.load(value)
    except GenesisError as e:
        raise click.BadParameter(f"not a usable genesis: {e}") from None


def key_option(ctx: click.Context, param: click.Parameter, value: Path) -> KeyPair:
    try:
        return load_key_file(value)
    except KeyFileError as e:
        raise click.BadParameter(str(e)) from None


def optional_key_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> KeyPair | None:
    return None if value is None else key_option(ctx, param, value)


def data_dir_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and not (value / "CURRENT").is_file():
        raise click.BadParameter(f"{value} is not a node's data dir (no CURRENT file)")
    return value


def tx_id_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_hex(value, 32):
        raise click.BadParameter("a tx id is 64 lowercase hex characters")
    return value


def asset_id_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not ASSET_ID_PATTERN.matches(value):
        raise click.BadParameter("1-128 of letters, digits, '_', '.', ':', '-', starting with a letter or digit")
    return value


def account_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_account(value):
        raise click.BadParameter("an account is 64 lowercase hex characters (an Ed25519 public key)")
    return value


# -- where to read from ---------------------------------------------------------------------------


def genesis_file_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """--genesis FILE, parsed (genesis_option) before the command runs."""
    return click.option(
        "--genesis", required=required, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=genesis_option, metavar="FILE", help=help,
    )


def data_dir_file_option(help: str) -> Callable[[F], F]:
    """--data-dir DIR, checked to be a node's data dir (data_dir_option)."""
    return click.option(
        "--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), callback=data_dir_option,
        metavar="DIR", help=help,
    )


RPC_HELP = "read from this node's RPC, e.g. http://127.0.0.1:26601"
TOKEN_HELP = "bearer token for a node whose RPC requires one (or set TITLECHAIN_TOKEN)"
cacert_option = click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TITLECHAIN_CACERT",
    metavar="FILE",
    help="for an https:// --rpc: trust only the CA certificate(s) in this PEM file, not the system's "
    "(a node's self-signed certificate, or the consortium's CA; or set TITLECHAIN_CACERT)",
)


@dataclass(frozen=True)
class SourceChoice:
    """--rpc or --data-dir (exactly one), as the user gave them."""

    rpc: str | None
    data_dir: Path | None
    genesis: Genesis | None
    token: str | None
    ca: Path | None = None

    def check(self) -> None:
        if (self.rpc is None) == (self.data_dir is None):
            raise click.UsageError("give exactly one of --rpc URL or --data-dir DIR")
        if self.rpc is not None and self.genesis is not None:
            raise click.UsageError("--genesis goes with --data-dir (a node's RPC serves its own)")


def source_options(f: F) -> F:
    """--rpc, --data-dir, --genesis, --token, --cacert, --json; the command receives `source: SourceChoice`
    and `as_json`."""

    @functools.wraps(f)
    def wrapper(
        *args: Any, rpc: str | None, data_dir: Path | None, genesis: Genesis | None, token: str | None,
        cacert: Path | None, **kw: Any,
    ) -> Any:
        return f(*args, source=SourceChoice(rpc, data_dir, genesis, token, cacert), **kw)

    options = [
        click.option("--rpc", callback=url_option, metavar="URL", help=RPC_HELP),
        data_dir_file_option("read an offline copy of a node's data dir instead (safe while the node runs)"),
        genesis_file_option("with --data-dir: the genesis the data must belong to (default: the data dir's own copy)"),
        click.option("--token", envvar="TITLECHAIN_TOKEN", metavar="TOKEN", help=TOKEN_HELP),
        cacert_option,
        click.option("--json", "as_json", is_flag=True, help="print the answer as JSON (the RPC's shape, docs/rpc.md)"),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    # the wrapper takes the five options in place of `source`: not the signature F names, on purpose
    return wrapper  # type: ignore[return-value]


@contextmanager
def reading(choice: SourceChoice) -> Iterator[Any]:
    """The chosen source, open; its failures end the command with exit 1."""
    from node.explorer.sources import NotFound, Source, SourceError, open_data_dir, open_rpc

    choice.check()
    try:
        source: Source
        if choice.rpc is not None:
            source = open_rpc(choice.rpc, choice.token, choice.ca)
        else:
            assert choice.data_dir is not None  # check() holds exactly one of the two
            source = open_data_dir(choice.data_dir, choice.genesis)
    except SourceError as e:
        fail(str(e))
    try:
        yield source
    except NotFound as e:
        fail(f"not found: {e}")
    except SourceError as e:
        fail(str(e))
    finally:
        source.close()
