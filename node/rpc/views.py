"""The RPC's answers (docs/rpc.md): their types, and how each is read from a node's store.

A running node (node/runtime/service.py) and the offline reader of a data-dir copy
(node/explorer/sources.py) both build their answers here, from a `chain.store.Store`, so the
two serve the same shapes by construction. The types are TypedDicts, not dataclasses: an
answer IS its JSON object (the handlers and `titlechain explore --json` print it unchanged),
and the types say which fields it has. The pydantic models of node/rpc/models.py describe
the same shapes for OpenAPI and check a remote node's answers.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast

from chain.genesis import Grant
from chain.receipt import Receipt
from chain.store import Store
from chain.tx import Tx, parse_tx
from chain.validators import ValidatorSet
from contracts.apply import HISTORY_PREFIX, OWNER_PREFIX, StoreView, history_key, stored_history_entry
from contracts.proofs import OwnershipProof, ProofError, build_ownership_proof
from contracts.state import AssetState, read_asset, read_roles, standing_key
from node.errors import BeforeBase
from node.rpc import paging

AssetAnswer = AssetState  # GET /v1/assets/{id}: the asset's state record as the contracts keep it
ProofAnswer = OwnershipProof  # GET /v1/assets/{id}/proof (docs/protocol.md, "Ownership and absence proofs")


class TxAnswer(TypedDict):
    """GET /v1/txs/{id}."""

    tx_id: str
    status: Literal["pending", "committed"]
    height: int | None  # None while pending
    receipt: Receipt | None  # None while pending
    tx: dict[str, Any]  # {"body", "sig"}: the tx as submitted (docs/protocol.md, "Transactions")


class HistoryEntry(TypedDict):
    """One committed tx naming an asset (an h/ key of the apply path, the entry built from the tx's
    record: contracts.apply.history_entry)."""

    height: int
    index: int
    tx_id: str
    op: str
    signer: str
    status: Literal["ok", "rejected"]
    error: dict[str, str] | None
    events: list[dict[str, Any]]


class HistoryPage(TypedDict):
    """GET /v1/assets/{id}/history: one page, oldest first; `next` the following page's cursor."""

    asset_id: str
    entries: list[HistoryEntry]
    next: str | None


class AccountPage(TypedDict):
    """GET /v1/accounts/{account}: its roles and one page of the ids of the assets it owns."""

    account: str
    roles: list[Grant]
    assets: list[str]
    next: str | None
    standing_since: int | None  # the height from which it may submit txs; None: unknown to the ledger


class BlockAnswer(TypedDict):
    """GET /v1/blocks/{height}: the header and certificate in their docs/protocol.md forms."""

    header: dict[str, Any]
    block_hash: str
    tx_ids: list[str]
    certificate: dict[str, Any]


class StatusAnswer(TypedDict):
    """GET /v1/status of a node; the offline reader's status of a data-dir copy has no node
    (`node_id` None, no peers, not ready), no `not_ready` nor `version`, and adds `data_dir`."""

    node_id: str | None
    chain_id: str
    height: int
    view: int
    primary: str  # the node_id of the view's primary
    validators: list[dict[str, Any]]
    peers: list[dict[str, Any]]
    mempool: int
    ready: bool
    role: NotRequired[str]  # "validator" or "observer"; absent from an offline reader's status
    not_ready: NotRequired[str | None]
    version: NotRequired[str]
    data_dir: NotRequired[str]


class EvidencePage(TypedDict):
    """GET /v1/evidence: full equivocation records (node/consensus/evidence.py) from `offset`."""

    total: int
    offset: int
    evidence: list[dict[str, Any]]


def status_answer(
    node_id: str | None, chain_id: str, height: int, view: int, vset: ValidatorSet, *, peers: list[dict[str, Any]],
    mempool: int, ready: bool,
) -> StatusAnswer:
    """The fields every status has; the caller adds its own (`not_ready` and `version`, or `data_dir`)."""
    return {
        "node_id": node_id,
        "chain_id": chain_id,
        "height": height,
        "view": view,
        "primary": vset.primary(view).node_id,
        "validators": vset.to_plain(),
        "peers": peers,
        "mempool": mempool,
        "ready": ready,
    }


def pending_tx_answer(tx: Tx) -> TxAnswer:
    return {"tx_id": tx.tx_id, "status": "pending", "height": None, "receipt": None, "tx": tx.to_plain()}


def committed_tx_answer(store: Store, tx_id: str) -> TxAnswer | None:
    entry = store.get_tx_entry(tx_id)  # one small read, whatever the size of its block
    if entry is None:
        where = store.tx_location(tx_id) if store.base is not None else None
        if where is not None:  # in the window a synced node keeps the ids (not the txs) of
            raise BeforeBase(f"tx {tx_id} (committed at height {where[0]})", store.base_height)
        return None
    tx = parse_tx(entry.tx)
    return {"tx_id": tx_id, "status": "committed", "height": entry.height, "receipt": entry.receipt, "tx": tx.to_plain()}


def asset_answer(store: Store, asset_id: str) -> AssetAnswer | None:
    return read_asset(StoreView(store.get), asset_id)


def block_answer(store: Store, height: int) -> BlockAnswer | None:
    """None if there is no such block."""
    if height < 1:
        return None
    if height < store.base_height:
        raise BeforeBase(f"block {height}", store.base_height)
    summary, cert = store.get_summary(height), store.get_certificate(height)
    if summary is None or cert is None:
        return None
    header, tx_ids = summary
    return {"header": header.to_plain(), "block_hash": header.block_hash, "tx_ids": tx_ids, "certificate": cert.to_plain()}


def proof_answer(store: Store, asset_id: str) -> ProofAnswer | None:
    """A proof of the asset's state, or of its absence, as of the head; None before the first
    block (no certified state root yet)."""
    try:
        return build_ownership_proof(store, asset_id)
    except ProofError:
        return None


def history_answer(
    store: Store, asset_id: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
) -> HistoryPage | None:
    """One page of the asset's history, oldest first; None for an id no asset holds (rejected txs
    naming such an id are not indexed under it). Raises paging.CursorError for a cursor or limit
    no page can have."""
    paging.check_limit(limit)
    start = None if cursor is None else history_key(asset_id, *paging.parse_history_cursor(cursor))
    asset = asset_answer(store, asset_id)
    if asset is None:
        return None
    if store.base is not None and asset["registered_at"] <= store.base_height:  # part of it lies below the base
        raise BeforeBase(f"the history of asset {asset_id!r} (registered at height {asset['registered_at']})",
                         store.base_height)
    prefix = HISTORY_PREFIX + asset_id.encode() + b"/"
    rows = (cast(HistoryEntry, stored_history_entry(store, k)) for k, _ in store.iterate(prefix, start=start))
    entries, nxt = paging.take_page(rows, limit, lambda e: paging.history_cursor(e["height"], e["index"]))
    return {"asset_id": asset_id, "entries": entries, "next": nxt}


def account_answer(
    store: Store, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
) -> AccountPage:
    """The account's roles and one page of the ids of the assets it owns, in id order. Raises
    paging.CursorError as history_answer does."""
    paging.check_limit(limit)
    prefix = OWNER_PREFIX + account.encode() + b"/"
    start = None if cursor is None else prefix + paging.check_account_cursor(cursor).encode()
    ids = (k[len(prefix) :].decode() for k, _ in store.iterate(prefix, start=start))
    assets, nxt = paging.take_page(ids, limit, lambda a: a)
    view = StoreView(store.get)
    return {
        "account": account,
        "roles": read_roles(view, account),
        "assets": assets,
        "next": nxt,
        "standing_since": view.get(standing_key(account)),
    }
