"""The titlechain SDK: what an issuer's back office calls, sync and async (docs/sdk.md).

    from node.sdk.client import Client
    with Client("http://127.0.0.1:26601") as c:
        receipt = c.submit(key, "asset.transfer", {"asset_id": "WR-1", "to": buyer}, wait=True)["receipt"]

`submit(key, op, args)` fills in the chain id, a fresh nonce and an expiry height; `submit(tx)`
sends a tx signed elsewhere (`sign`, or `titlechain tx --sign-only`). A node that answers 429
(busy) or 503 (not ready) is asked again after the `Retry-After` it gives, or with exponential
backoff, a bounded number of times (`Retry`); every other answer is returned or raised at once.

Every non-2xx answer raises `RpcError` carrying the HTTP status and the error code, so a
program can tell a duplicate (409) from a full mempool (429) from a bad signature (422). Two
answers have classes of their own, since a program acts on them differently: `NotPermitted`
(403 not_permitted: the signing key has no standing on the ledger, and retrying will not help
until it is granted a role or an asset) and `RetryLater` (429: mempool full, the signer's quota
or the client's rate limit; `retry_after_s` says when, from the node's Retry-After). A node
that cannot be reached at all (refused, reset, timed out) raises `NodeUnreachable`, an RpcError
with status 0, so callers handle every failure of a call with one except clause.
An https:// node is checked against the system trust store, or with `ca=FILE` against the CA
certificate(s) in that PEM file only (a consortium's own CA, or a node's self-signed certificate).
HTTP goes through httpx (sync and async clients from one library); this is its only user.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from chain.crypto import KeyPair
from chain.tx import Tx, sign_tx
from node.errors import NodeError

DEFAULT_TIMEOUT = 30.0
DEFAULT_EXPIRES_IN = 100  # heights: ample for a tx to commit, short enough that a lost one dies soon
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Retry:
    """How often to ask again when a node answers 429 or 503: `attempts` calls in all, waiting
    what its Retry-After says (at most `cap` seconds) or `base * 2**n` seconds with jitter."""

    attempts: int = 4
    base: float = 0.25
    cap: float = 10.0

    def delay(self, r: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before asking again, or None to take this answer as final."""
        if r.status_code not in RETRY_STATUSES or attempt + 1 >= self.attempts:
            return None
        after = retry_after_seconds(r.headers.get("Retry-After"))
        if after is None:
            after = self.base * 2**attempt * (0.5 + random.random() / 2)  # jitter: clients do not retry in step
        return min(self.cap, after)


NO_RETRY = Retry(attempts=1)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


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
        super().__init__(0, "unreachable", f"{rpc}: {_unreachable_reason(error)}")


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    """The TLS failure under httpx's ConnectError (it wraps httpcore's, which wraps the ssl module's)."""
    seen: BaseException | None = error
    for _ in range(8):  # bounded: a cause chain may loop
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unreachable_reason(error: Exception) -> str:
    cause = _ssl_cause(error)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"the node's TLS certificate is not trusted ({cause.verify_message}): pass the CA certificate "
            "that signed it with --cacert FILE (SDK: ca=FILE), or add that CA to the system trust store"
        )
    if isinstance(cause, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(cause):
        return "the node answered in plain HTTP, not TLS: use an http:// URL (its config sets no rpc_tls_cert)"
    if isinstance(error, httpx.RemoteProtocolError):
        # a validator's peer port answers HTTP with a binary hello frame or a close; an HTTPS RPC
        # closes a plain HTTP connection without a byte, so a silent close may be either mistake
        peer = (
            "that address speaks the peer protocol, not the RPC "
            "(use the node's rpc_listen address; `titlechain init` puts it at the peer port + 1)"
        )
        if "without sending a response" in str(error):
            return f"no HTTP answer: either {peer}, or the node's RPC serves HTTPS (rpc_tls_cert is set): use an https:// URL"
        return f"the answer is not HTTP: {peer}"
    return f"{type(error).__name__}: {error}"


def tls_verify(ca: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """httpx's `verify=`: the system trust store, or only the CA certificate(s) in the PEM file `ca`
    (a consortium's own CA or a node's self-signed certificate)."""
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca))
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError: not PEM, no certificate in it
        raise NodeError(f"{os.fspath(ca)}: cannot load CA certificate: {getattr(e, 'strerror', None) or e}") from None


def sign(key: KeyPair, chain_id: str, op: str, args: dict[str, Any], *, expires: int, nonce: str | None = None) -> Tx:
    """Build and sign a tx (docs/protocol.md, Transactions); `expires` is the last height at which it may be included."""
    return sign_tx(key, chain_id=chain_id, op=op, args=args, expires=expires, nonce=nonce)


def new_tx(key: KeyPair, status: dict[str, Any], op: str, args: dict[str, Any], expires_in: int, nonce: str | None) -> Tx:
    """A tx for the chain and height a node's status names, expiring `expires_in` heights above it."""
    return sign(key, status["chain_id"], op, args, expires=int(status["height"]) + expires_in, nonce=nonce)


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


def _need(value: str | None, what: str) -> str:
    if value is None:
        raise TypeError(f"submit(key, op, args): {what} is required with a key")
    return value


def _retry_after(raw: str | None) -> int | None:
    """Retry-After in whole seconds, rounded up (RetryLater.retry_after_s)."""
    seconds = retry_after_seconds(raw)
    return None if seconds is None else math.ceil(seconds)


def _tx_json(tx: Tx | dict[str, Any]) -> dict[str, Any]:
    return tx.to_plain() if isinstance(tx, Tx) else tx


def _submit_call(tx: Tx | dict[str, Any], wait: bool, timeout: float | None) -> dict[str, Any]:
    """The request arguments of POST /v1/txs; the HTTP timeout outlasts the node's wait."""
    params = {"wait": "true"} if wait else {}
    if wait and timeout is not None:
        params["timeout"] = f"{timeout:g}"
    return {"json": _tx_json(tx), "params": params, "timeout": max(DEFAULT_TIMEOUT, (timeout or 0) + 5)}


def _follow(fetch: Any, key: str) -> Iterator[Any]:
    """The items under `key` of every page, fetching the next with the previous page's `next`."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page[key]
        cursor = page.get("next")
        if cursor is None:
            return


async def _afollow(fetch: Any, key: str) -> AsyncIterator[Any]:
    """`_follow` for the async client: `fetch(cursor)` is awaited."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page[key]:
            yield item
        cursor = page.get("next")
        if cursor is None:
            return


def _evidence_params(offset: int, limit: int, validator: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"offset": offset, "limit": limit}
    if validator is not None:
        params["validator"] = validator
    return params


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

    def __init__(
        self, rpc: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, retry: Retry = Retry(),
        ca: str | os.PathLike[str] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rpc = rpc.rstrip("/")
        self.retry = retry
        self._http = httpx.Client(base_url=self.rpc, headers=headers, timeout=timeout, verify=tls_verify(ca))
        self._chain_id: str | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                r = self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                raise NodeUnreachable(self.rpc, e) from e
            wait = self.retry.delay(r, attempt)
            if wait is None:
                return _raise_for(r)
            time.sleep(wait)
            attempt += 1

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

    def submit(
        self,
        tx: Tx | dict[str, Any] | KeyPair,
        op: str | None = None,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        expires_in: int = DEFAULT_EXPIRES_IN,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/txs: `submit(tx)` a signed tx, or `submit(key, op, args)` to sign one here."""
        if isinstance(tx, KeyPair):
            tx = new_tx(tx, self.status(), _need(op, "op"), args or {}, expires_in, nonce)
        return self._request("POST", "/v1/txs", **_submit_call(tx, wait, timeout))

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
        absence (`claim` says which). Check it offline with chain.proofcheck.verify_ownership_proof:
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
        return self._get("/v1/evidence", **_evidence_params(offset, limit, validator))

    def events(self, from_height: int | None = None) -> Iterator[dict[str, Any]]:
        """Committed blocks as they come: each {"event", "id", "data": {"height", "block_hash", "receipts"...}}."""
        with self._http.stream("GET", "/v1/events", params={"from": from_height} if from_height else {}, timeout=None) as r:
            if r.status_code >= 300:
                r.read()
                _raise_for(r)
            yield from _parse_sse(r.iter_lines())


class AsyncClient:
    """The same client for asyncio programs."""

    def __init__(
        self, rpc: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, retry: Retry = Retry(),
        ca: str | os.PathLike[str] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rpc = rpc.rstrip("/")
        self.retry = retry
        self._http = httpx.AsyncClient(base_url=self.rpc, headers=headers, timeout=timeout, verify=tls_verify(ca))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                r = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as e:
                raise NodeUnreachable(self.rpc, e) from e
            wait = self.retry.delay(r, attempt)
            if wait is None:
                return _raise_for(r)
            await asyncio.sleep(wait)
            attempt += 1

    async def _get(self, path: str, **params: Any) -> Any:
        return await self._request("GET", path, params={k: v for k, v in params.items() if v is not None})

    async def status(self) -> dict[str, Any]:
        return await self._get("/v1/status")

    async def height(self) -> int:
        return int((await self.status())["height"])

    async def genesis(self) -> dict[str, Any]:
        return await self._get("/v1/genesis")

    async def submit(
        self,
        tx: Tx | dict[str, Any] | KeyPair,
        op: str | None = None,
        args: dict[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float | None = None,
        expires_in: int = DEFAULT_EXPIRES_IN,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/txs: `submit(tx)` a signed tx, or `submit(key, op, args)` to sign one here."""
        if isinstance(tx, KeyPair):
            tx = new_tx(tx, await self.status(), _need(op, "op"), args or {}, expires_in, nonce)
        return await self._request("POST", "/v1/txs", **_submit_call(tx, wait, timeout))

    async def submit_batch(self, txs: list[Tx | dict[str, Any]]) -> list[dict[str, Any]]:
        return (await self._request("POST", "/v1/txs/batch", json={"txs": [_tx_json(t) for t in txs]}))["results"]

    async def tx(self, tx_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/txs/{tx_id}")

    async def asset(self, asset_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/assets/{asset_id}")

    async def history(self, asset_id: str, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self._get(f"/v1/assets/{asset_id}/history", cursor=cursor, limit=limit)

    def history_entries(self, asset_id: str, *, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """`async for` over every history entry of the asset, oldest first, fetched page by page."""
        return _afollow(lambda cursor: self.history(asset_id, cursor=cursor, limit=page_size), "entries")

    async def proof(self, asset_id: str) -> dict[str, Any]:
        return await self._get(f"/v1/assets/{asset_id}/proof")

    async def account(self, account: str, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self._get(f"/v1/accounts/{account}", cursor=cursor, limit=limit)

    def account_assets(self, account: str, *, page_size: int | None = None) -> AsyncIterator[str]:
        """`async for` over every asset id the account owns, fetched page by page."""
        return _afollow(lambda cursor: self.account(account, cursor=cursor, limit=page_size), "assets")

    async def block(self, height: int | str = "latest") -> dict[str, Any]:
        return await self._get(f"/v1/blocks/{height}")

    async def blocks(self, start: int, limit: int = 100) -> list[dict[str, Any]]:
        return (await self._get("/v1/blocks", **{"from": start, "limit": limit}))["blocks"]

    async def evidence(self, offset: int = 0, limit: int = 10, validator: str | None = None) -> dict[str, Any]:
        return await self._get("/v1/evidence", **_evidence_params(offset, limit, validator))

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
