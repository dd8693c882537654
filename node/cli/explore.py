"""`titlechain explore …`: read the chain from a node's RPC or an offline data dir (node/explorer/sources.py).

This module only renders: every answer comes from a `Source` in its RPC shape (docs/rpc.md), and `--json`
prints that shape unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from chain.crypto import is_account
from node.cli.common import (
    SourceChoice,
    account_argument,
    asset_id_argument,
    fmt_time,
    print_json,
    reading,
    show,
    source_options,
    tx_id_argument,
)
from node.rpc import paging
from node.rpc.base import DEFAULT_BLOCKS_LIMIT, MAX_BLOCKS_LIMIT

F = TypeVar("F", bound=Callable[..., Any])



@click.group()
def explore() -> None:
    """Read the chain: status, blocks, txs, assets, histories, accounts.

    Every command reads either from a running node (--rpc URL) or from an offline copy of a node's
    data dir (--data-dir DIR; the directory is copied privately first, so a running node is not
    disturbed). Tables by default; --json prints the answer in the shape of the node RPC (docs/rpc.md),
    the same from either source. Exit 1 if the thing asked for does not exist or the node answered
    an error, 2 on a usage error.
    """


def _fields(rows: list[tuple[str, Any]], title: str | None = None) -> Table:
    t = Table(show_header=False, title=title, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(no_wrap=True)
    for name, value in rows:
        t.add_row(name, "-" if value is None else str(value))
    return t


# -- names beside accounts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Display names of accounts (from --names FILE) and validator keys (node ids, from the
    chain's status). An account is always printed whole, its name beside it in parentheses."""

    by_account: dict[str, str] = field(default_factory=dict)

    def with_validators(self, status: dict[str, Any]) -> Names:
        nodes = {v["public"]: v["node_id"] for v in status.get("validators", [])}
        return Names({**nodes, **self.by_account})

    def __call__(self, account: str | None) -> str:
        if account is None:
            return "-"
        name = self.by_account.get(account)
        return account if name is None else f"{account} ({escape(name)})"

    def value(self, v: Any) -> str:
        """An arg's value: accounts labelled, other strings as they are, the rest as JSON."""
        if isinstance(v, str):
            return self(v) if is_account(v) else escape(v)
        return escape(json.dumps(v, ensure_ascii=False))


def load_names(ctx: click.Context, param: click.Parameter, value: Path | None) -> Names:
    """--names FILE: a consortium.json (its "names" map) or a JSON object account -> name."""
    if value is None:
        return Names()
    try:
        doc = json.loads(value.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"{value}: not a readable JSON file: {e}") from None
    names = doc.get("names", doc) if isinstance(doc, dict) else None
    if not isinstance(names, dict) or not all(is_account(k) and isinstance(v, str) for k, v in names.items()):
        raise click.BadParameter(f'{value}: expected a consortium.json or {{"<account hex>": "name", ...}}')
    return Names(names)


def names_option(f: F) -> F:
    return click.option(
        "--names",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        callback=load_names,
        metavar="FILE",
        help="show names beside accounts, from a consortium.json (or a JSON map account -> name)",
    )(f)


# -- status ----------------------------------------------------------------------------------------


@explore.command("status")
@names_option
@source_options
def status_cmd(source: SourceChoice, as_json: bool, names: Names) -> None:
    """The chain's height, the validators and (from a node) its peers, mempool and readiness."""
    with reading(source) as src:
        st = src.status()
    if as_json:
        print_json(st)
        return
    node = st["node_id"] if st["node_id"] is not None else f"(offline copy of {st.get('data_dir', '?')})"
    ready = "yes" if st["ready"] else "no" + (f": {escape(st['not_ready'])}" if st.get("not_ready") else "")
    rows = [("chain", st["chain_id"]), ("height", st["height"]), ("view", st["view"]), ("primary", st["primary"]),
            ("node", node), ("version", st.get("version")), ("ready", ready), ("mempool", f"{st['mempool']} txs")]
    connected = {p["node_id"]: p["connected"] for p in st["peers"]}
    t = Table(title=f"validators ({len(st['validators'])})", title_justify="left")
    for col in ("node_id", "public key", "address", "link"):
        t.add_column(col, no_wrap=True)
    for v in st["validators"]:
        if v["node_id"] == st["node_id"]:
            link = "this node"
        elif v["node_id"] in connected:
            link = "connected" if connected[v["node_id"]] else "[red]disconnected[/]"
        else:
            link = "-"
        t.add_row(v["node_id"], names(v["public"]), v["address"], link)
    show(_fields([(k, v) for k, v in rows if v is not None]), t)


# -- blocks ----------------------------------------------------------------------------------------


@explore.command("blocks")
@click.option(
    "--from", "start", type=click.IntRange(min=1), default=None, help="first height (default: the latest blocks)"
)
@click.option(
    "--limit", type=click.IntRange(1, MAX_BLOCKS_LIMIT), default=DEFAULT_BLOCKS_LIMIT, show_default=True,
    help="how many blocks",
)
@names_option
@source_options
def blocks_cmd(start: int | None, limit: int, source: SourceChoice, as_json: bool, names: Names) -> None:
    """A range of blocks: height, time, tx count, proposer, hash.

    Without --from, the latest LIMIT blocks. The JSON is {"blocks": [...]}, as GET /v1/blocks.
    """
    with reading(source) as src:
        status = src.status()
        if start is None:
            start = max(1, status["height"] - limit + 1)
        blocks = src.blocks(start, limit)
    if as_json:
        print_json({"blocks": blocks})
        return
    if not blocks:
        show(f"no blocks from height {start} (the head is {status['height']})")
        return
    names = names.with_validators(status)
    t = Table(
        title=f"{status['chain_id']}: blocks {start}…{start + len(blocks) - 1} of {status['height']}",
        title_justify="left",
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("height", "right"),
        ("time", "left"),
        ("txs", "right"),
        ("proposer", "left"),
        ("block hash", "left"),
    )
    for col, justify in columns:
        t.add_column(col, justify=justify, no_wrap=True)
    for b in blocks:
        h = b["header"]
        t.add_row(str(h["height"]), fmt_time(h["time"]), str(len(b["tx_ids"])), names(h["proposer"]), b["block_hash"])
    show(t)


def _height(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    if value == "latest":
        return None
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter("a height (1, 2, …) or 'latest'")
    return int(value)


@explore.command("block")
@click.argument("height", callback=_height, metavar="HEIGHT|latest")
@names_option
@source_options
def block_cmd(height: int | None, source: SourceChoice, as_json: bool, names: Names) -> None:
    """One block: its header, hash, certificate signers and tx ids."""
    with reading(source) as src:
        b = src.block(height)
        status = src.status() if not as_json else {}
    if as_json:
        print_json(b)
        return
    names = names.with_validators(status)
    h, cert = b["header"], b["certificate"]
    rows: list[tuple[str, Any]] = [
        ("height", h["height"]),
        ("block hash", b["block_hash"]),
        ("time", fmt_time(h["time"])),
        ("proposer", names(h["proposer"])),
        ("view", h["view"]),
        ("prev hash", h["prev_hash"]),
        ("state root", h["state_root"]),
        ("tx root", h["tx_root"]),
        ("receipts root", h["receipts_root"]),
        ("validators", h["validators_hash"]),
        ("next validators", h["next_validators_hash"]),
        ("certificate", f"{len(cert['signatures'])} signatures in view {cert['view']}"),
        *(("  signed by", names(s["validator"])) for s in cert["signatures"]),
        ("txs", len(b["tx_ids"])),
        *(("", tx_id) for tx_id in b["tx_ids"]),
    ]
    show(_fields(rows, title=f"block {h['height']} of {h['chain_id']}"))


# -- txs, assets, accounts -------------------------------------------------------------------------


def _receipt_text(receipt: dict[str, Any] | None, brief: bool = False) -> str:
    """A receipt's (or history entry's) result; `brief` leaves out the error message (tables)."""
    if receipt is None:
        return "-"
    if receipt["status"] == "ok":
        return "[green]ok[/]"
    err = receipt.get("error") or {}
    return f"[red]rejected[/]: {escape(str(err.get('code')))}" + ("" if brief else f": {escape(str(err.get('message')))}")


@explore.command("tx")
@click.argument("tx_id", callback=tx_id_argument)
@names_option
@source_options
def tx_cmd(tx_id: str, source: SourceChoice, as_json: bool, names: Names) -> None:
    """One transaction: what it asked, who signed it, where it was committed and its receipt."""
    with reading(source) as src:
        info = src.tx(tx_id)
    if as_json:
        print_json(info)
        return
    body = info["tx"]["body"]
    receipt = info["receipt"]
    where = (
        "pending" if info["status"] == "pending" else f"committed at height {info['height']}, index {receipt['index']}"
    )
    rows: list[tuple[str, Any]] = [
        ("tx", info["tx_id"]),
        ("status", where),
        ("op", body["op"]),
        ("signer", names(body["signer"])),
        *((f"  {k}", names.value(v)) for k, v in sorted(body["args"].items())),
        ("nonce", escape(body["nonce"])),
        ("expires", f"height {body['expires']}"),
        ("receipt", _receipt_text(receipt)),
    ]
    for ev in (receipt or {}).get("events", []):
        rows.append(("event", escape(json.dumps(ev, ensure_ascii=False, sort_keys=True))))
    show(_fields(rows))


@explore.command("asset")
@click.argument("asset_id", callback=asset_id_argument)
@names_option
@source_options
def asset_cmd(asset_id: str, source: SourceChoice, as_json: bool, names: Names) -> None:
    """An asset's current state: class, issuer, owner, status, document hash, metadata."""
    with reading(source) as src:
        a = src.asset(asset_id)
    if as_json:
        print_json(a)
        return
    status = {"active": "[green]active[/]", "redeemed": "[dim]redeemed[/]"}.get(
        a["status"], f"[yellow]{escape(a['status'])}[/]"
    )
    rows: list[tuple[str, Any]] = [
        ("asset", a["asset_id"]),
        ("class", a["class"]),
        ("status", status),
        ("owner", names(a["owner"])),
        ("pledgee", names(a["pledgee"])),
        ("issuer", names(a["issuer"])),
        ("document", a["doc_hash"]),
        *((f"  meta {k}", names.value(v)) for k, v in sorted(a["meta"].items())),
        ("registered", f"height {a['registered_at']}"),
        ("updated", f"height {a['updated_at']} (version {a['version']})"),
    ]
    show(_fields(rows))


def _pages(fetch: Any, key: str, cursor: str | None, limit: int | None) -> dict[str, Any]:
    """One page if a cursor or limit is given; else every page, joined (`next` then null)."""
    page = fetch(cursor, limit or paging.DEFAULT_LIMIT)
    if cursor is not None or limit is not None:
        return page
    while page["next"] is not None:
        more = fetch(page["next"], paging.MAX_LIMIT)
        page = {**more, key: page[key] + more[key]}
    return page


_page_options = [
    click.option("--cursor", default=None, help="start at this page (a previous answer's `next`); shows one page"),
    click.option("--limit", type=click.IntRange(1, paging.MAX_LIMIT), default=None, help="show one page of at most N"),
]


def page_options(f: Any) -> Any:
    for option in reversed(_page_options):
        f = option(f)
    return f


@explore.command("history")
@click.argument("asset_id", callback=asset_id_argument)
@names_option
@source_options
@page_options
def history_cmd(
    asset_id: str, source: SourceChoice, as_json: bool, names: Names, cursor: str | None, limit: int | None
) -> None:
    """Every committed tx that named the asset, rejected ones included, oldest first.

    Without --cursor or --limit every page is read."""
    with reading(source) as src:
        hist = _pages(lambda c, n: src.history(asset_id, c, n), "entries", cursor, limit)
    if as_json:
        print_json(hist)
        return
    t = Table(title=f"history of {hist['asset_id']}", title_justify="left")
    for col in ("height", "tx", "op", "signer", "result"):
        t.add_column(col, justify="right" if col == "height" else "left", no_wrap=True)
    for e in hist["entries"]:
        t.add_row(str(e["height"]), e["tx_id"], e["op"], names(e["signer"]), _receipt_text(e, brief=True))
    show(t, *([f"more: --cursor {hist['next']}"] if hist["next"] is not None else []))


def _standing_text(since: int | None) -> str:
    if since is None:
        return "none: the ledger does not know this account; nodes refuse its txs (403 not_permitted)"
    return "from the genesis: may submit" if since == 0 else f"since height {since}: may submit"


@explore.command("account")
@click.argument("account", callback=account_argument)
@names_option
@source_options
@page_options
def account_cmd(
    account: str, source: SourceChoice, as_json: bool, names: Names, cursor: str | None, limit: int | None
) -> None:
    """An account's roles (member, issuer of which classes, regulator, auditor), the assets it owns,
    and whether it has standing (may submit transactions at all).

    Without --cursor or --limit every page of assets is read."""
    with reading(source) as src:
        acc = _pages(lambda c, n: src.account(account, c, n), "assets", cursor, limit)
    if as_json:
        print_json(acc)
        return
    roles = [g["role"] + (f" ({', '.join(g['classes'])})" if g.get("classes") else "") for g in acc["roles"]]
    rows: list[tuple[str, Any]] = [
        ("account", names(acc["account"])),
        ("roles", ", ".join(roles) or "none"),
        ("standing", _standing_text(acc["standing_since"])),
        ("assets", len(acc["assets"])),
        *(("", a) for a in acc["assets"]),
    ]
    if acc["next"] is not None:
        rows.append(("more", f"--cursor {acc['next']}"))
    show(_fields(rows))
