"""`titlechain tx OP ARGS…`: build, sign and submit one transaction through the SDK (node/sdk/client.py).

ARGS syntax (docs/cli.md), modelled on HTTPie's so that shells need little quoting:

    name=text           the string "text" (everything after the first '=', may be empty)
    name:=json          a JSON value: integers, true/false/null, lists, objects (no floats)
    name.key=text       "text" under "key" in the object `name`; dots nest, `:=` works here too
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from chain.crypto import KeyPair
from chain.encoding import EncodingError, normalize
from chain.genesis import Genesis
from chain.limits import EXPIRY_WINDOW
from chain.patterns import WholePattern
from chain.tx import Tx, TxError, check_signature, parse_tx
from contracts import validate_args
from node.cli.common import (
    EXIT_FAILED,
    TOKEN_HELP,
    cacert_option,
    fail,
    genesis_file_option,
    optional_key_option,
    print_json,
    url_option,
)
from node.errors import NodeError
from node.sdk.client import DEFAULT_EXPIRES_IN

NAME = WholePattern(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ArgsError(NodeError, ValueError):
    """An ARG that is not `name=text`, `name:=json` or a dotted form of them."""


def parse_tx_args(items: Sequence[str]) -> dict[str, Any]:
    """The tx's `args` object from ARGS; raise ArgsError naming the bad item."""
    out: dict[str, Any] = {}
    given: list[tuple[str, ...]] = []
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ArgsError(f"{item!r}: expected name=text or name:=json")
        as_json = name.endswith(":")
        name = name[:-1] if as_json else name
        path = tuple(name.split("."))
        if not all(NAME.matches(part) for part in path):
            raise ArgsError(f"{item!r}: {name!r} is not a name (letters, digits, '_', '-'; dots between levels)")
        for earlier in given:
            n = min(len(earlier), len(path))
            if earlier[:n] == path[:n]:  # the same arg twice, or an object given whole and in parts
                raise ArgsError(f"{item!r}: {name!r} is already given by an earlier arg")
        given.append(path)
        value = _json_value(raw, item) if as_json else raw
        parent = out
        for part in path[:-1]:
            parent = parent.setdefault(part, {})
        parent[path[-1]] = value
    try:
        normalize(out)
    except EncodingError as e:
        raise ArgsError(f"not a value a tx can carry: {e}") from None
    return out


def _json_value(raw: str, item: str) -> Any:
    def no_float(s: str) -> Any:
        raise ArgsError(f"{item!r}: {s} is not an integer; tx values have no floats")

    try:
        return json.loads(raw, parse_float=no_float, parse_constant=no_float)
    except json.JSONDecodeError as e:
        raise ArgsError(
            f"{item!r}: not JSON after ':=' ({e.msg} at column {e.colno}); use name=text for a string"
        ) from None


@click.command("tx")
@click.argument("op", required=False)
@click.argument("args", nargs=-1, metavar="ARGS…")
@click.option(
    "--key",
    "key",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=optional_key_option,
    help="the signer's key file",
)
@click.option(
    "--rpc",
    callback=url_option,
    metavar="URL",
    help="the node to submit to, e.g. http://127.0.0.1:26601",
)
@click.option("--token", envvar="TITLECHAIN_TOKEN", metavar="TOKEN", help=TOKEN_HELP)
@cacert_option
@click.option("--wait", is_flag=True, help="wait until the tx is committed and show its receipt")
@click.option(
    "--timeout",
    type=click.FloatRange(0, 300, min_open=True),
    default=30.0,
    show_default=True,
    help="with --wait: seconds to wait",
)
@click.option(
    "--expires-in",
    type=click.IntRange(1, EXPIRY_WINDOW),
    default=DEFAULT_EXPIRES_IN,
    show_default=True,
    help="the tx may be included up to this many heights above the node's current height",
)
@click.option("--json", "as_json", is_flag=True, help="print the node's answer as JSON")
@click.option("--sign-only", is_flag=True, help="sign without a node and write the tx to --out (needs --genesis, --expires)")
@genesis_file_option("with --sign-only: the chain's genesis (its chain id goes into the tx)")
@click.option("--expires", type=click.IntRange(0), metavar="H", help="with --sign-only: the last height at which the tx may be included")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE", help="with --sign-only: where to write the signed tx (JSON; never overwritten)")
@click.option("--send", "send", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE", help="submit a tx signed earlier with --sign-only (no OP, ARGS or --key)")
def tx_cmd(
    op: str | None,
    args: tuple[str, ...],
    key: KeyPair | None,
    rpc: str | None,
    token: str | None,
    cacert: Path | None,
    wait: bool,
    timeout: float,
    expires_in: int,
    as_json: bool,
    sign_only: bool,
    genesis: Genesis | None,
    expires: int | None,
    out: Path | None,
    send: Path | None,
) -> None:
    """Build, sign and submit one transaction OP (e.g. asset.transfer) with ARGS.

    \b
    ARGS are name=value pairs:
      name=text        a string (everything after the first '=')
      name:=json       a JSON value: 5, true, null, ["a","b"], {"k":"v"} (no floats)
      name.key=text    a string inside the object `name` (dots nest; `:=` works too)
    \b
    Examples:
      titlechain tx asset.register --key issuer.json --rpc http://127.0.0.1:26601 --wait \\
          asset_id=WR-1 class=warehouse_receipt owner=<account> doc_hash=<sha256 hex> \\
          meta.doc_uri=https://docs.example/wr-1.pdf
      titlechain tx asset.transfer --key alice.json --rpc URL asset_id=WR-1 to=<account>
      titlechain tx gov.propose --key member.json --rpc URL action=grant_role \\
          params.account=<account> params.role=issuer 'params.classes:=["receivable"]'
    \b
    Offline (the signing machine needs no node; the chain id comes from the genesis):
      titlechain tx asset.transfer --key alice.json --sign-only --genesis genesis.json \\
          --expires 5000 --out tx.json asset_id=WR-1 to=<account>
      titlechain tx --send tx.json --rpc URL --wait

    The args are checked against the op's schema before anything is sent (exit 2 if they can
    never be accepted). The tx expires --expires-in heights above the node's height. Prints the
    tx id and "pending"; with --wait, the receipt once committed. Exit 0 on success, 1 if the node
    answered an error or (with --wait) the receipt is "rejected", 2 on a usage error.
    """
    if send is not None:
        if op is not None or args or key is not None or sign_only:
            raise click.UsageError("--send FILE submits a tx signed earlier: give no OP, ARGS, --key or --sign-only")
        _submit(load_tx_file(send), _need_rpc(rpc), (token, cacert), wait, timeout, as_json)
        return
    if op is None or key is None:
        raise click.UsageError("give OP and --key (or --send FILE to submit a tx signed earlier)")
    tx_args = _checked_args(op, args)
    if sign_only:
        if rpc is not None or genesis is None or expires is None or out is None:
            raise click.UsageError("--sign-only needs --genesis FILE, --expires H and --out FILE, and no --rpc")
        _sign_offline(key, genesis.chain_id, op, tx_args, expires, out)
        return
    if genesis is not None or out is not None:
        raise click.UsageError("--genesis and --out go with --sign-only")
    _sign_and_submit(key, op, tx_args, _need_rpc(rpc), (token, cacert), wait, timeout, expires_in, expires, as_json)


def _need_rpc(rpc: str | None) -> str:
    if rpc is None:
        raise click.UsageError("--rpc URL is required to submit (or sign without a node: --sign-only)")
    return rpc


def _checked_args(op: str, args: tuple[str, ...]) -> dict[str, Any]:
    try:
        tx_args = parse_tx_args(args)
    except ArgsError as e:
        raise click.BadParameter(str(e), param_hint="ARGS") from None
    try:
        validate_args(op, tx_args)
    except TxError as e:
        raise click.BadParameter(e.message, param_hint="OP" if e.code == "unknown_op" else "ARGS") from None
    return tx_args


def _signed(key: KeyPair, chain_id: str, op: str, tx_args: dict[str, Any], expires: int) -> Tx:
    from node.sdk.client import sign

    try:
        return sign(key, chain_id, op, tx_args, expires=expires)
    except TxError as e:  # e.g. too large once encoded: the args are the user's
        raise click.BadParameter(e.message, param_hint="ARGS") from None


def _sign_offline(key: KeyPair, chain_id: str, op: str, tx_args: dict[str, Any], expires: int, out: Path) -> None:
    """Write the signed tx as JSON (the POST /v1/txs body); prints its id. Never overwrites."""
    tx = _signed(key, chain_id, op, tx_args, expires)
    try:
        with open(out, "x", encoding="utf-8") as f:
            f.write(json.dumps(tx.to_plain(), indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    except OSError as e:
        fail(f"{out}: cannot write the tx: {e.strerror}")
    click.echo(f"tx_id    {tx.tx_id}")
    click.echo(f"signed   {out} (chain {chain_id}, expires at height {expires}); submit it with tx --send")


def load_tx_file(path: Path) -> Tx:
    """A tx written by --sign-only (or any JSON tx), well formed and well signed, or exit 2."""
    try:
        tx = parse_tx(json.loads(path.read_text(encoding="utf-8")))
        check_signature(tx)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"{path}: not a JSON file: {e}", param_hint="--send") from None
    except TxError as e:
        raise click.BadParameter(f"{path}: not a signed tx: {e.message}", param_hint="--send") from None
    return tx


Auth = tuple[str | None, Path | None]  # --token, --cacert


def _sign_and_submit(
    key: KeyPair, op: str, tx_args: dict[str, Any], rpc: str, auth: Auth, wait: bool, timeout: float,
    expires_in: int, expires: int | None, as_json: bool,
) -> None:
    from node.explorer.sources import SourceError, open_rpc

    node = open_rpc(rpc, *auth)
    try:
        status = node.status()
    except SourceError as e:
        fail(str(e))
    finally:
        node.close()
    tx = _signed(key, status["chain_id"], op, tx_args, expires if expires is not None else status["height"] + expires_in)
    _submit(tx, rpc, auth, wait, timeout, as_json)


def _submit(tx: Tx, rpc: str, auth: Auth, wait: bool, timeout: float, as_json: bool) -> None:
    from node.explorer.sources import SourceError, open_rpc

    node = open_rpc(rpc, *auth)
    try:
        answer = node.submit(tx, wait=wait, timeout=timeout)
    except SourceError as e:
        fail(f"{e} (tx {tx.tx_id})")
    finally:
        node.close()
    _report(answer, as_json)


def _report(answer: dict[str, Any], as_json: bool) -> None:
    """The node's answer, checked against its model by RpcSource.submit."""
    receipt = answer.get("receipt")
    rejected = receipt is not None and receipt["status"] != "ok"
    if as_json:
        print_json(answer)
    else:
        click.echo(f"tx_id    {answer['tx_id']}")
        if receipt is None:
            click.echo(f"status   {answer['status']}")
        else:
            click.echo(f"status   committed at height {receipt['height']}, index {receipt['index']}")
            err = receipt["error"] or {}
            verdict = "ok" if not rejected else f"rejected: {err.get('code')}: {err.get('message')}"
            click.echo(f"receipt  {verdict}")
            for ev in receipt["events"]:
                click.echo(f"event    {json.dumps(ev, ensure_ascii=False, sort_keys=True)}")
    if rejected:
        raise SystemExit(EXIT_FAILED)  # committed, but the contract refused it: a check failed (docs/cli.md, exit codes)
