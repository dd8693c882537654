"""Transactions: build, sign, parse and check (docs/protocol.md, Transactions).

A tx is `{"body": body, "sig": hex}`; its id is hex(H(canonical(body))) and its signature is
over `Domain.TX + canonical(body)`. This module checks everything a tx must satisfy on its own
(shape, types, size, signature) and against a chain (chain id, expiry window). Whether its op
exists and its args are well formed is the contracts' business (`contracts.validate_args`).

Every refusal is a `TxError` whose `code` names the rule broken; the RPC maps codes to statuses.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar, overload

from chain.crypto import Domain, KeyPair, is_account, verify
from chain.encoding import (
    EncodingError,
    Value,
    canonical,
    canonical_map,
    decode,
    hash_hex,
    is_hex,
    normalize,
    pack_normalized,
)
from chain.errors import ChainError
from chain.limits import EXPIRY_WINDOW, MAX_CHAIN_ID_LEN, MAX_NONCE_LEN, MAX_TX_BYTES
from chain.patterns import WholePattern

OP_PATTERN = WholePattern(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$")
BODY_FIELDS = frozenset({"chain_id", "signer", "op", "args", "nonce", "expires"})


class TxBody(TypedDict):
    """The signed part of a tx, as `parse_tx` has checked it (docs/protocol.md, Transactions)."""

    chain_id: str
    signer: str
    op: str
    args: dict[str, Any]
    nonce: str
    expires: int


class TxError(ChainError, ValueError):
    """A tx that must never enter a block. `code` is one of:

    malformed, too_large, bad_signature, wrong_chain, expired, expires_too_far,
    unknown_op, invalid_args.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


T = TypeVar("T")


class _computed_once(Generic[T]):
    """A cached property without functools.cached_property's lock: Python 3.11 takes an RLock on
    the first read of each, and every node reads a new tx's id and encoding once per tx (a
    microsecond each, admission's hot path). A Tx never changes, so two threads racing here
    could only store the same value twice. Stored in the instance's __dict__, which later reads
    find first (this is a non-data descriptor)."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__

    @overload
    def __get__(self, obj: None, owner: type) -> _computed_once[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object, owner: type | None = None) -> T | _computed_once[T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


_SIG_KEY = canonical("sig")
# what precedes the body in a tx's encoding: a 2-entry map's header and the key "body"
_BODY_KEY = canonical_map({"body": b"", "sig": b""}).removesuffix(_SIG_KEY)


@dataclass(frozen=True)
class Tx:
    body: TxBody
    sig: str
    body_bytes: bytes = field(repr=False, compare=False)

    @_computed_once
    def tx_id(self) -> str:
        return hash_hex(self.body_bytes)

    @property
    def chain_id(self) -> str:
        return self.body["chain_id"]

    @property
    def signer(self) -> str:
        return self.body["signer"]

    @property
    def op(self) -> str:
        return self.body["op"]

    @property
    def args(self) -> dict[str, Any]:
        return self.body["args"]

    @property
    def expires(self) -> int:
        return self.body["expires"]

    def to_plain(self) -> dict[str, Any]:
        return {"body": self.body, "sig": self.sig}

    def encode(self) -> bytes:
        return self._encoded

    @_computed_once
    def _encoded(self) -> bytes:
        # canonical({"body": ..., "sig": ...}) spelled out: body_bytes is already canonical
        # (parse_tx and sign_tx make it so), "body" sorts before "sig", and sig is a checked str
        return b"".join((_BODY_KEY, self.body_bytes, _SIG_KEY, pack_normalized(self.sig)))

    def signature_valid(self) -> bool:
        return verify(self.signer, Domain.TX, self.body_bytes, self.sig)


def known_tx(body: TxBody, sig: str, body_bytes: bytes, tx_id: str, encoded: bytes) -> Tx:
    """A Tx whose id and canonical encoding were computed and checked elsewhere (the audit's
    workers decode each stored tx strictly and check it: chain/sigcheck.py), so that they are not
    computed again: its id is hex(H(body_bytes)) and `encoded` its canonical bytes, or the
    caller's check was wrong."""
    tx = Tx(body=body, sig=sig, body_bytes=body_bytes)
    tx.__dict__.update(tx_id=tx_id, _encoded=encoded)  # the cached properties' own slots
    return tx


def _check_body_fields(body: dict[str, Any]) -> None:
    missing = BODY_FIELDS - body.keys()
    extra = body.keys() - BODY_FIELDS
    if missing:
        raise TxError("malformed", f"body lacks {', '.join(sorted(missing))}")
    if extra:
        raise TxError("malformed", f"body has unknown fields {', '.join(sorted(extra))}")
    cid = body["chain_id"]
    if type(cid) is not str or not 0 < len(cid) <= MAX_CHAIN_ID_LEN:
        raise TxError("malformed", f"chain_id must be a non-empty str of at most {MAX_CHAIN_ID_LEN} characters")
    if not is_account(body["signer"]):
        raise TxError("malformed", "signer must be an account: 64 lowercase hex characters")
    if not OP_PATTERN.matches(body["op"]):
        raise TxError("malformed", "op must look like 'asset.transfer'")
    if type(body["args"]) is not dict:
        raise TxError("malformed", "args must be an object")
    nonce = body["nonce"]
    if type(nonce) is not str or not 0 < len(nonce) <= MAX_NONCE_LEN:
        raise TxError("malformed", f"nonce must be a non-empty str of at most {MAX_NONCE_LEN} characters")
    if type(body["expires"]) is not int or body["expires"] < 0:
        raise TxError("malformed", "expires must be a non-negative integer height")


RECENT_TXS = 16_384  # parsed txs remembered by signature (a few blocks' worth)
_recent: OrderedDict[str, Tx] = OrderedDict()  # popitem(last=False) is O(1); a dict's front deletes are not


def tx_memo_size() -> int:
    """How many parsed txs `parse_tx` remembers now (at most RECENT_TXS)."""
    return len(_recent)


def parse_tx(obj: Value, *, decoded: bool = False) -> Tx:
    """A Tx from a plain value (JSON from a client, or decoded msgpack); shape and size only.

    `decoded`: obj is (part of) a value `chain.encoding.decode` returned, which has checked that
    every dict in it is in canonical key order and every value plain; its body is then packed as
    it is instead of being normalised again. Never for a client's JSON or a hand-built value.

    Every validator parses each tx twice: from gossip, then inside the primary's proposal. The
    second time the recently parsed Tx with the same signature is returned, provided the body
    packs to exactly its canonical bytes (a decoded body is already in canonical order), which
    makes it the same tx; anything else is parsed in full. A pure memo: the result is the same.
    """
    # only a str sig is looked up: a list or object sig is unhashable, and it is the parser's
    # job (not a TypeError's) to refuse it as malformed
    if type(obj) is dict and len(obj) == 2 and type(obj.get("sig")) is str:
        known = _recent.get(obj["sig"])
        if known is not None and type(obj.get("body")) is dict and _packs_to(obj["body"], known.body_bytes):
            return known
    tx = _parse_tx(obj, decoded)
    if len(_recent) >= RECENT_TXS:
        _recent.popitem(last=False)
    _recent[tx.sig] = tx
    return tx


def _packs_to(body: dict[str, Any], body_bytes: bytes) -> bool:
    try:
        return pack_normalized(body) == body_bytes
    except (TypeError, ValueError, OverflowError):
        return False


def _parse_tx(obj: Value, decoded: bool = False) -> Tx:
    if type(obj) is not dict or set(obj) != {"body", "sig"}:
        raise TxError("malformed", 'a tx is {"body": {...}, "sig": "<128 hex>"}')
    body, sig = obj["body"], obj["sig"]
    if type(body) is not dict:
        raise TxError("malformed", "body must be an object")
    if not is_hex(sig, 64):
        raise TxError("malformed", "sig must be 128 lowercase hex characters")
    _check_body_fields(body)
    try:
        if not decoded:
            body = normalize(body)
        body_bytes = pack_normalized(body)
    except EncodingError as e:
        raise TxError("malformed", f"body is not a plain value: {e}") from None
    size = len(body_bytes) + 70  # the sig and the envelope around the body
    if size > MAX_TX_BYTES:
        raise TxError("too_large", f"tx is {size} bytes encoded; the limit is {MAX_TX_BYTES}")
    return Tx(body=body, sig=sig, body_bytes=body_bytes)


def decode_tx(data: bytes) -> Tx:
    """A Tx from its canonical msgpack bytes (as in blocks and peer messages)."""
    if len(data) > MAX_TX_BYTES:
        raise TxError("too_large", f"tx is {len(data)} bytes encoded; the limit is {MAX_TX_BYTES}")
    try:
        obj = decode(data)
    except EncodingError as e:
        raise TxError("malformed", str(e)) from None
    return parse_tx(obj)


def check_signature(tx: Tx) -> None:
    if not tx.signature_valid():
        raise TxError("bad_signature", "signature does not verify for signer over this body")


def check_for_chain(tx: Tx, chain_id: str, next_height: int) -> None:
    """Chain id and expiry window, against the height the tx could next be included at."""
    if tx.chain_id != chain_id:
        raise TxError("wrong_chain", f"tx is for chain {tx.chain_id!r}, this is {chain_id!r}")
    if tx.expires < next_height:
        raise TxError("expired", f"tx expired at height {tx.expires}; the next height is {next_height}")
    if tx.expires > next_height + EXPIRY_WINDOW:
        raise TxError(
            "expires_too_far",
            f"expires {tx.expires} lies more than {EXPIRY_WINDOW} heights beyond the next height {next_height}",
        )


def new_nonce() -> str:
    return os.urandom(16).hex()


def sign_tx(
    key: KeyPair,
    *,
    chain_id: str,
    op: str,
    args: dict[str, Any],
    expires: int,
    nonce: str | None = None,
) -> Tx:
    body = {
        "chain_id": chain_id,
        "signer": key.public,
        "op": op,
        "args": args,
        "nonce": nonce if nonce is not None else new_nonce(),
        "expires": expires,
    }
    body_bytes = canonical(body)
    return parse_tx({"body": body, "sig": key.sign(Domain.TX, body_bytes)})
