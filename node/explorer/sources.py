"""Reading the chain: one `Source` answered by a node's RPC or by an offline copy of its data dir.

Both kinds answer in the JSON shapes of docs/rpc.md (`GET /v1/status`, `/v1/blocks/…`, `/v1/txs/…`,
`/v1/assets/…`, `/v1/accounts/…`), so `titlechain explore` renders or prints whichever it is given
and a program reading `--json` cannot tell them apart (except in `status`, below). The answers are
plain dicts on purpose: they ARE the wire contract, and `--json` must print them unchanged. RPC
answers are checked against the RPC's own models (node/rpc/models.py) on arrival, so a renderer
never meets a half-formed answer.

The offline source reads a read-only copy of the data dir (`Store.open_read_only`), so it is safe
while the node runs, and builds its answers with the RPC's own builders (node/rpc/views.py).
Its `status` describes the copy, not a running node: `node_id` is null, `peers` empty, `mempool`
0, `ready` false, `view` is the view the head block was committed in, and `data_dir` is added.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from chain.genesis import Genesis, GenesisError
from chain.store import Store, StoreError
from chain.tx import Tx
from node.errors import NodeError
from node.rpc import models as m
from node.rpc import paging, views
from node.rpc.base import MAX_BLOCKS_LIMIT
from node.runtime.ledger import Ledger, LedgerError
from node.sdk.client import Client, NodeUnreachable, RpcError

Plain = dict[str, Any]  # one answer of docs/rpc.md, as JSON would carry it
T = TypeVar("T")

MAX_BLOCKS = MAX_BLOCKS_LIMIT  # per `blocks` call, as the RPC allows


class SourceError(NodeError):
    """The source could not answer: the node answered an error or is unreachable, the data is unreadable."""


class NotFound(SourceError):
    """No such block, tx, asset or history."""


class Source(Protocol):
    """Where `titlechain explore` reads from; every answer is the shape of docs/rpc.md."""

    @property
    def where(self) -> str:
        """For messages: the RPC URL or the data dir."""

    def status(self) -> views.StatusAnswer: ...

    def block(self, height: int | None) -> views.BlockAnswer:
        """{"header", "block_hash", "tx_ids", "certificate"}; None asks for the latest."""

    def blocks(self, start: int, limit: int) -> list[views.BlockAnswer]:
        """Blocks start, start+1, … up to `limit` (at most MAX_BLOCKS) of them; fewer beyond the head."""

    def tx(self, tx_id: str) -> views.TxAnswer: ...

    def asset(self, asset_id: str) -> views.AssetAnswer: ...

    def history(
        self, asset_id: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.HistoryPage:
        """{"asset_id", "entries", "next"}, one page (node/rpc/paging.py); NotFound for an id no asset holds."""

    def account(
        self, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.AccountPage:
        """{"account", "roles", "assets", "next"}, assets paged like history."""

    def close(self) -> None: ...


# -- a node's RPC --------------------------------------------------------------------------------


def rpc_call(where: str, call: Callable[[], T]) -> T:
    """Run one SDK call, turning every way it can fail into NotFound or SourceError."""
    try:
        return call()
    except NodeUnreachable as e:
        raise SourceError(f"cannot reach the node: {e.message}") from None
    except RpcError as e:
        if e.status == 404:
            raise NotFound(e.message) from None
        later = f"; retry after {e.retry_after_s} s" if e.retry_after_s is not None else ""
        raise SourceError(f"the node answered {e.status} {e.code}: {e.message}{later}") from None
    except httpx.HTTPError as e:  # protocol-level trouble the SDK does not translate
        raise SourceError(f"talking to the node at {where} failed: {e}") from None
    except ValueError as e:  # a 2xx whose body is not JSON
        raise SourceError(f"the node at {where} answered something that is not JSON: {e}") from None


def _checked(model: type[BaseModel], answer: Any, where: str) -> Any:
    try:
        model.model_validate(answer)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "$"
        raise SourceError(
            f"the node at {where} answered a malformed {model.__name__}: {field}: {first['msg']}"
        ) from None
    return answer


class RpcSource:
    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def where(self) -> str:
        return self.client.rpc

    def _get(self, model: type[BaseModel], call: Callable[[], Any]) -> Any:
        return _checked(model, rpc_call(self.where, call), self.where)

    def status(self) -> views.StatusAnswer:
        return self._get(m.NodeStatus, self.client.status)

    def block(self, height: int | None) -> views.BlockAnswer:
        return self._get(m.BlockInfo, lambda: self.client.block("latest" if height is None else height))

    def blocks(self, start: int, limit: int) -> list[views.BlockAnswer]:
        listing = self._get(m.BlockList, lambda: {"blocks": self.client.blocks(start, min(limit, MAX_BLOCKS))})
        return listing["blocks"]

    def tx(self, tx_id: str) -> views.TxAnswer:
        return self._get(m.TxInfo, lambda: self.client.tx(tx_id))

    def asset(self, asset_id: str) -> views.AssetAnswer:
        return self._get(m.AssetState, lambda: self.client.asset(asset_id))

    def history(
        self, asset_id: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.HistoryPage:
        return self._get(m.AssetHistory, lambda: self.client.history(asset_id, cursor=cursor, limit=limit))

    def account(
        self, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.AccountPage:
        return self._get(m.AccountInfo, lambda: self.client.account(account, cursor=cursor, limit=limit))

    def submit(self, tx: Tx, *, wait: bool, timeout: float | None) -> Plain:
        """POST /v1/txs: {"tx_id", "status": "pending"}, or with `wait` {"tx_id", "status": "committed", "receipt"}."""
        model = m.TxCommitted if wait else m.TxAccepted
        return self._get(model, lambda: self.client.submit(tx, wait=wait, timeout=timeout if wait else None))

    def proof(self, asset_id: str) -> Plain:
        """An ownership proof (docs/protocol.md); checked by `chain.proofcheck.verify_ownership_proof`, not here."""
        return rpc_call(self.where, lambda: self.client.proof(asset_id))

    def close(self) -> None:
        self.client.close()


def open_rpc(url: str, token: str | None = None, ca: Path | None = None) -> RpcSource:
    """A node's RPC; `ca` a PEM file of the CA(s) to trust for an https:// URL instead of the system's."""
    try:
        return RpcSource(Client(url, token=token, ca=ca))
    except NodeError as e:  # the CA file cannot be loaded
        raise SourceError(str(e)) from None


# -- an offline copy of a data dir ---------------------------------------------------------------


class LedgerSource:
    """Answers from a ledger: a read-only copy of a data dir (`open_data_dir`), or a live one."""

    def __init__(self, ledger: Ledger, data_dir: Path | None = None) -> None:
        self.ledger = ledger
        self.data_dir = data_dir

    @property
    def where(self) -> str:
        return str(self.data_dir or self.ledger.store.path)

    def status(self) -> views.StatusAnswer:
        height = self.ledger.height
        head = self.ledger.store.get_summary(height) if height else None
        view = head[0].view if head is not None else 0
        answer = views.status_answer(
            None, self.ledger.genesis.chain_id, height, view, self.ledger.validator_set_at(height + 1),
            peers=[], mempool=0, ready=False,
        )
        answer["data_dir"] = self.where
        return answer

    def block(self, height: int | None) -> views.BlockAnswer:
        head = self.ledger.height
        if height is None:
            if head == 0:
                raise NotFound("no block has been committed yet")
            height = head
        answer = views.block_answer(self.ledger.store, height)
        if answer is None:
            raise NotFound(f"no block at height {height} (the head is {head})")
        return answer

    def blocks(self, start: int, limit: int) -> list[views.BlockAnswer]:
        start = max(start, 1)
        last = min(start + min(limit, MAX_BLOCKS) - 1, self.ledger.height)
        return [self.block(h) for h in range(start, last + 1)]

    def tx(self, tx_id: str) -> views.TxAnswer:
        answer = views.committed_tx_answer(self.ledger.store, tx_id)
        if answer is None:
            raise NotFound(f"no committed tx {tx_id}")
        return answer

    def asset(self, asset_id: str) -> views.AssetAnswer:
        state = views.asset_answer(self.ledger.store, asset_id)
        if state is None:
            raise NotFound(f"no asset {asset_id!r}")
        return state

    def history(
        self, asset_id: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.HistoryPage:
        try:
            page = views.history_answer(self.ledger.store, asset_id, cursor, limit)
        except paging.CursorError as e:
            raise SourceError(str(e)) from None
        if page is None:
            raise NotFound(f"no asset {asset_id!r}")
        return page

    def account(
        self, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> views.AccountPage:
        try:
            return views.account_answer(self.ledger.store, account, cursor, limit)
        except paging.CursorError as e:
            raise SourceError(str(e)) from None

    def close(self) -> None:
        self.ledger.close()


def open_data_dir(path: Path, genesis: Genesis | None = None) -> LedgerSource:
    """A source over a private read-only copy of a node's data dir (safe while the node runs).

    Without `genesis` the data dir's own genesis record is used, after checking that it hashes
    to the genesis hash the store was created with. With one, the data dir must belong to it.
    """
    try:
        store = Store.open_read_only(path, genesis.hash if genesis is not None else None)
    except StoreError as e:
        raise SourceError(str(e)) from None
    try:
        if genesis is None:
            genesis = Genesis.from_plain(store.genesis_doc())
            if genesis.hash != store.genesis_hash:
                raise SourceError(f"{path}: its genesis record does not hash to its genesis hash")
        return LedgerSource(Ledger(store, genesis), path)
    except (GenesisError, LedgerError) as e:
        store.close()
        raise SourceError(f"{path}: {e}") from None
    except BaseException:
        store.close()
        raise
