"""The validator-to-validator messages that are not consensus votes: tx gossip, blocks, catch-up.

Both kinds travel as the `body` of a transport frame `{"kind": "msg", "body": ...}` (node/p2p/transport.py).
Consensus messages (node/consensus/messages.py) are signed objects `{"body", "sender", "sig"}`; the messages
here carry a `"t"` field instead and need no signature of their own: the transport has authenticated the
sending validator, every tx carries its signer's signature, every synced block travels with its
commit certificate, which the receiver checks against the validator set of its height, and a
proposed block is only ever used by the hash a signed PRE-PREPARE or proof names (the consensus
core checks the hash and the tx root).

    {"t": "txs", "txs": [tx, ...]}                                 txs admitted by the sender
    {"t": "sync_req", "from": H, "limit": N}                        "send me blocks from H on"
    {"t": "sync_resp", "head": H, "blocks": [{"block", "certificate"}, ...]}
    {"t": "block", "block": block}                                  a proposal's block, pushed
    {"t": "block_req", "hash": X, "height": H}                      "send me block X (of height H)"
    {"t": "block_resp", "hash": X, "block": block or null}          one block: at most max_block_bytes
                                                                    of txs plus a header
    {"t": "head", "height": H}                                      to observers only: "I committed H"

An observer (docs/operations.md) sends only `sync_req`; a validator sends it only `head` notices
and `sync_resp` answers. A `head` notice is a hint, never trusted: the observer then asks for the
blocks, which come with their certificates.

Parsing never raises anything but `WireError`: a peer's message is untrusted input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Union

from chain.block import Block, Certificate
from chain.encoding import canonical, canonical_array, canonical_map, is_hex
from chain.tx import Tx, TxError, parse_tx
from node.errors import NodeError

MAX_GOSSIP_TXS = 1000  # per message; well under the frame cap for txs of the maximum size
MAX_SYNC_BLOCKS = 64  # per response
SYNC_RESPONSE_BYTES = 4 * 1024 * 1024  # a response stops adding blocks past this size


class WireError(NodeError, ValueError):
    pass


@dataclass(frozen=True)
class TxGossip:
    txs: tuple[Tx, ...]
    refused: int  # entries that did not parse as txs (a Byzantine or buggy peer)

    def to_plain(self) -> dict[str, Any]:
        return {"t": "txs", "txs": [tx.to_plain() for tx in self.txs]}

    def encode(self) -> bytes:
        """canonical(self.to_plain()) from each tx's own canonical bytes: txs this node admitted are
        not normalised again to be gossiped."""
        return canonical_map({"t": canonical("txs"), "txs": canonical_array([tx.encode() for tx in self.txs])})


@dataclass(frozen=True)
class SyncRequest:
    start: int
    limit: int

    def to_plain(self) -> dict[str, Any]:
        return {"t": "sync_req", "from": self.start, "limit": self.limit}


@dataclass(frozen=True)
class SyncResponse:
    head: int
    blocks: tuple[tuple[Block, Certificate], ...]

    @staticmethod
    def plain(head: int, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        """The wire form, from already-plain {"block", "certificate"} entries (no re-parsing)."""
        return {"t": "sync_resp", "head": head, "blocks": blocks}


@dataclass(frozen=True)
class HeadNotice:
    height: int

    def to_plain(self) -> dict[str, Any]:
        return {"t": "head", "height": self.height}


@dataclass(frozen=True)
class BlockPush:
    block: Block

    def encode(self) -> bytes:
        """canonical({"t": "block", "block": ...}) from the block's own encoding (megabytes)."""
        return canonical_map({"t": canonical("block"), "block": self.block.encode()})


@dataclass(frozen=True)
class BlockRequest:
    block_hash: str
    height: int

    def to_plain(self) -> dict[str, Any]:
        return {"t": "block_req", "hash": self.block_hash, "height": self.height}


@dataclass(frozen=True)
class BlockResponse:
    block_hash: str
    block: Block | None  # None: the peer does not hold it

    @staticmethod
    def encode_raw(block_hash: str, block_bytes: bytes | None) -> bytes:
        """The wire form from a block's canonical bytes (as stored, or Block.encode())."""
        body = canonical(None) if block_bytes is None else block_bytes
        return canonical_map({"t": canonical("block_resp"), "hash": canonical(block_hash), "block": body})


WireMessage = Union[TxGossip, SyncRequest, SyncResponse, HeadNotice, BlockPush, BlockRequest, BlockResponse]


def is_wire(obj: Any) -> bool:
    """Whether a peer's message is one of ours (else it is for the consensus core)."""
    return type(obj) is dict and "t" in obj


def _int(obj: dict[str, Any], name: str, lo: int) -> int:
    v = obj.get(name)
    if type(v) is not int or v < lo:
        raise WireError(f"{obj.get('t')}.{name}: an integer >= {lo}")
    return v


def parse_from_validator(sender: str, obj: Any, log: logging.Logger) -> WireMessage | None:
    """`parse_wire` of a validator's message; None (and a warning naming the sender) if malformed."""
    try:
        return parse_wire(obj)
    except WireError as e:
        log.warning("malformed message from validator %s…: %s", sender[:12], e)
        return None


def parse_wire(obj: Any) -> WireMessage:
    """A peer's message from the value `chain.encoding.decode` returned for its frame (so every
    part of it is already known to be canonical)."""
    if type(obj) is not dict:
        raise WireError("a message is an object")
    kind = obj.get("t")
    if kind == "txs":
        raw = obj.get("txs")
        if set(obj) != {"t", "txs"} or type(raw) is not list or len(raw) > MAX_GOSSIP_TXS:
            raise WireError(f'txs: {{"t": "txs", "txs": [at most {MAX_GOSSIP_TXS} txs]}}')
        txs = []
        for item in raw:
            try:
                # the frame was decoded, and so checked canonical, whole (parse_wire's contract)
                txs.append(parse_tx(item, decoded=True))
            except (TxError, RecursionError):
                continue
        return TxGossip(tuple(txs), len(raw) - len(txs))
    if kind == "sync_req":
        if set(obj) != {"t", "from", "limit"}:
            raise WireError('sync_req: {"t", "from", "limit"}')
        return SyncRequest(_int(obj, "from", 1), min(_int(obj, "limit", 1), MAX_SYNC_BLOCKS))
    if kind == "sync_resp":
        raw = obj.get("blocks")
        if set(obj) != {"t", "head", "blocks"} or type(raw) is not list or len(raw) > MAX_SYNC_BLOCKS:
            raise WireError('sync_resp: {"t", "head", "blocks": [...]}')
        blocks = []
        for item in raw:
            if type(item) is not dict or set(item) != {"block", "certificate"}:
                raise WireError('sync_resp: each entry is {"block", "certificate"}')
            try:
                blocks.append((Block.from_plain(item["block"]), Certificate.from_plain(item["certificate"])))
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                raise WireError(f"sync_resp: a block does not parse: {e}") from None
        return SyncResponse(_int(obj, "head", 0), tuple(blocks))
    if kind == "head":
        if set(obj) != {"t", "height"}:
            raise WireError('head: {"t", "height"}')
        return HeadNotice(_int(obj, "height", 1))
    if kind in ("block", "block_req", "block_resp"):
        return _parse_block_message(kind, obj)
    raise WireError(f"unknown message type {kind!r}")


def _block(obj: Any, what: str) -> Block:
    try:
        return Block.from_plain(obj)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise WireError(f"{what}: the block does not parse: {e}") from None


def _block_hash(obj: dict[str, Any], what: str) -> str:
    if not is_hex(obj.get("hash"), 32):
        raise WireError(f"{what}.hash: 64 lowercase hex characters")
    return obj["hash"]


def _parse_block_message(kind: str, obj: dict[str, Any]) -> WireMessage:
    if kind == "block":
        if set(obj) != {"t", "block"}:
            raise WireError('block: {"t", "block"}')
        return BlockPush(_block(obj["block"], "block"))
    if kind == "block_req":
        if set(obj) != {"t", "hash", "height"}:
            raise WireError('block_req: {"t", "hash", "height"}')
        return BlockRequest(_block_hash(obj, "block_req"), _int(obj, "height", 1))
    if set(obj) != {"t", "hash", "block"}:
        raise WireError('block_resp: {"t", "hash", "block"}')
    block = None if obj["block"] is None else _block(obj["block"], "block_resp")
    return BlockResponse(_block_hash(obj, "block_resp"), block)
