"""The titlechain SDK: what an issuer's back office calls (docs/rpc.md), sync and async.

    from node.client import Client, sign
    with Client("http://127.0.0.1:26601") as c:
        tx = sign(key, c.chain_id, "asset.transfer", {"asset_id": "WR-1", "to": buyer}, expires=c.height() + 100)
        receipt = c.submit(tx, wait=True)["receipt"]

Every non-2xx answer raises `RpcError` carrying the HTTP status and the error code, so a
program can tell a duplicate (409) from a full mempool (429) from a bad signature (422). Two
answers have classes of their own, since a program acts on them differently: `NotPermitted`
(403 not_permitted: the signing key has no standing on the ledger, and retrying will not help
until it is granted a role or an asset) and `RetryLater` (429: mempool full, the signer's quota
or the client's rate limit; `retry_after_s` says when, from the node's Retry-After). A node
that cannot be reached at all (refused, reset, timed out) raises `NodeUnreachable`, an RpcError
with status 0, so callers handle every failure of a call with one except clause.
HTTP goes through httpx (sync and async clients from one library); this is its only user.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from chain.crypto import KeyPair
from chain.tx import Tx, sign_tx
from node.errors import NodeError

DEFAULT_TIMEOUT = 30.0


class RpcError(NodeError):
    def __init__(self, status: int, code: str, message: str, retry_after_s: int | None = None) -> None:
        later = f" (retry after {retry_after_s} s)" if retry_after_s is not None else ""
        super().__init__(f"{status} {code}: {message}{later}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class NotPermitted(RpcError):
    """403 not_permitted: the tx's signer has no standing (holds no role, never owned or held in
    pledge an asset), so no node admits its txs."""


class RetryLater(RpcError):
    """429: the node's mempool is full, the signer has its quota of txs in flight, or this client
    spent its rate limit. Send again after `retry_after_s` seconds."""


class NodeUnreachable(RpcError):
    """No HTTP answer at all: connection refused or reset, or no answer within the timeout."""

    def __init__(self, rpc: str, error: Exception) -> None:
        super().__init__(0, "unreachable", f"{rpc}: {type(error).__name__}: {error}")


def sign(key: KeyPair, chain_id: str, op: str, args: dict[str, Any], *, expires: int, nonce: str | None = None) -> Tx:
    """Build and sign a tx (docs/protocol.md, Transactions); `expires` is the last height at which it may be included."""
    return sign_tx(key, chain_id=chain_id, op=op, args=args, expires=expires, nonce=nonce)


def _raise_for(r: httpx.Response) -> Any:
    if r.status_code < 300:
        return r.json()
    try:
        err = r.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", r.text[:200] or r.reason_phrase
    if r.status_code == 403 and code == "not_permitted":
        raise NotPermitted(r.status_code, code, message)
    if r.status_code == 429:
        raise RetryLater(r.status_code, code, message, _retry_after(r.headers.get("Retry-After")))
    raise RpcError(r.status_code, code, message)


def _retry_after(raw: str | None) -> int | None:
    """Retry-After in whole seconds (the node sends delay-seconds; an HTTP date is not expected)."""
    if raw is not None and raw.strip().isdigit():
        return int(raw.strip())
    return None


def _tx_json(tx: Tx | dict[str, Any]) -> dict[str, Any]:
    return tx.to_plain() if isinstance(tx, Tx) else tx


def _submit_params(wait: bool, timeout: float | None) -> dict[str, str]:
    params = {"wait": "true"} if wait else {}
    if wait and timeout is not None:
        params["timeout"] = f"{timeout:g}"
    return params


def _follow(fetch: Any, key: str) -> Iterator[Any]:
    """The items under `key` of every page, fetching the next with the previous page's `next`."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page[key]
        cursor = page.get("next")
        if cursor is None:
            return


def _parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-Sent Events: `event:`/`data:`/`id:` fields, an empty line ends an event."""
    event: dict[str, Any] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                event["data"] = json.loads("\n".join(data))
                yield event
            event, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field in ("event", "id"):
                event[field] = value


class Client:
    """A synchronous client of one node's RPC."""

    def __init__(self, rpc: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rpc = rpc.rstrip("/")
        self._http = httpx.Client(base_url=self.rpc, headers=headers, timeout=timeout)
        self._chain_id: str | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return _raise_for(self._http.request(method, path, **kwargs))
        except httpx.TransportError as e:
            raise NodeUnreachable(self.rpc, e) from e

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self.status()["chain_id"]
        return self._chain_id

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def height(self) -> int:
        return int(self.status()["height"])

    def genesis(self) -> dict[str, Any]:
        return self._get("/v1/genesis")

    def submit(self, tx: Tx | dict[str, Any], *, wait: bool = False, timeout: float | None = None) -> dict[str, Any]:
        http_timeout = max(DEFAULT_TIMEOUT, (timeout or 0) + 5)
        return self._request("POST", "/v1/txs", json=_tx_json(tx), params=_submit_params(wait, timeout), timeout=http_timeout)

    def submit_batch(self, txs: list[Tx | dict[str, Any]]) -> list[dict[str, Any]]:
        return self._request("POST", "/v1/txs/batch", json={"txs": [_tx_json(t) for t in txs]})["results"]

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self._get(f"/v1/txs/{tx_id}")

    def asset(self, asset_id: str) -> dict[str, Any]:
        return self._get(f"/v1/assets/{asset_id}")

    def history(self, asset_id: str, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page: {"asset_id", "entries", "next"}; pass `next` back as `cursor` for the following one."""
        return self._get(f"/v1/assets/{asset_id}/history", cursor=cursor, limit=limit)

    def history_entries(self, asset_id: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every history entry of the asset, oldest first, fetched page by page."""
        return _follow(lambda cursor: self.history(asset_id, cursor=cursor, limit=page_size), "entries")

    def proof(self, asset_id: str) -> dict[str, Any]:
        """A proof of the asset's state as of the node's head, or for an id no asset holds, of its
        absence (`claim` says which). Check it offline with chain.audit.verify_ownership_proof:
        trust the result, not the node. 503 not_ready before the first block."""
        return self._get(f"/v1/assets/{asset_id}/proof")

    def account(self, account: str, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """{"account", "roles", "assets", "next"}: one page of the assets it owns."""
        return self._get(f"/v1/accounts/{account}", cursor=cursor, limit=limit)

    def account_assets(self, account: str, *, page_size: int | None = None) -> Iterator[str]:
        """Every asset id the account owns, in id order, fetched page by page."""
        return _follow(lambda cursor: self.account(account, cursor=cursor, limit=page_size), "assets")

    def block(self, height: int | str = "latest") -> dict[str, Any]:
        return self._get(f"/v1/blocks/{height}")

    def blocks(self, start: int, limit: int = 100) -> list[dict[str, Any]]:
        return self._get("/v1/blocks", **{"from": start, "limit": limit})["blocks"]

    def evidence(self, offset: int = 0, limit: int = 10, validator: str | None = None) -> dict[str, Any]:
        """{"total", "offset", "evidence": [equivocation records]}; each verifies offline."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if validator is not None:
            params["validator"] = validator
        return self._get("/v1/evidence", **params)

    def events(self, from_height: int | None = None) -> Iterator[dict[str, Any]]:
        """Committed blocks as they come: each {"event", "id", "data": {"height", "block_hash", "receipts"...}}."""
        with self._http.stream("GET", "/v1/events", params={"from": from_height} if from_height else {}, timeout=None) as r:
            if r.status_code >= 300:
                r.read()
                _raise_for(r)
            yield from _parse_sse(r.iter_lines())


class AsyncClient:
    """The same client for asyncio programs."""

    def __init__(self, rpc: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rpc = rpc.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.rpc, headers=headers, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return _raise_for(await self._http.request(method, path, **kwargs))
        except httpx.TransportError as e:
            raise NodeUnreachable(self.rpc, e) from e

    async def _get(self, path: str, **params: Any) -> Any:
        return await self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def status(self) -> dict[str, Any]:
        return await self._get("/v1/status")

    async def submit(self, tx: Tx | dict[str, Any], *, wait: bool = False, timeout: float | None = None) -> dict[str, Any]:
        http_timeout = max(DEFAULT_TIMEOUT, (timeout or 0) + 5)
        return await self._request(
            "POST", "/v1/txs", json=_tx_json(tx), params=_submit_params(wait, timeout), timeout=http_timeout
        )

    async def submit_batch(self, txs: list[Tx | dict[str, Any]]) -> list[dict[str, Any]]:
        return (await self._request("POST", "/v1/txs/batch", json={"txs": [_tx_json(t) for t in txs]}))["results"]

    async def tx(self, tx_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/txs/{tx_id}")

    async def asset(self, asset_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/assets/{asset_id}")

    async def block(self, height: int | str = "latest") -> dict[str, Any]:
        return await self._get(f"/v1/blocks/{height}")

    async def events(self, from_height: int | None = None) -> AsyncIterator[dict[str, Any]]:
        params = {"from": from_height} if from_height else {}
        async with self._http.stream("GET", "/v1/events", params=params, timeout=None) as r:
            if r.status_code >= 300:
                await r.aread()
                _raise_for(r)
            lines: list[str] = []
            async for line in r.aiter_lines():
                lines.append(line)
                if line == "":
                    for ev in _parse_sse(iter(lines)):
                        yield ev
                    lines = []
