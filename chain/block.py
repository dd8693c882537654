"""Block headers, blocks and commit certificates (docs/protocol.md, "Blocks" and "Commit certificates").

Blocks start at height 1, whose `prev_hash` is the genesis hash, so every block chains back to
the genesis document itself. Besides the fields the public contract requires, a header carries
`validators_hash` (the set that certifies this block) and `next_validators_hash` (the set that
certifies the next one): an ownership proof can then walk from the genesis validators to any
height through the few headers where the set changed, without the whole chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import Domain, KeyPair, verify
from chain.encoding import EncodingError, canonical, canonical_array, canonical_map, decode, hash_hex, is_hex
from chain.errors import ChainError
from chain.limits import MAX_CERTIFICATE_SIGNATURES
from chain.merkle import tx_root
from chain.tx import Tx, TxError, parse_tx
from chain.validators import ValidatorSet

HASH_FIELDS = ("prev_hash", "tx_root", "state_root", "receipts_root", "validators_hash", "next_validators_hash")
HEADER_FIELDS = frozenset({"chain_id", "height", "proposer", "view", "time", *HASH_FIELDS})


class BlockError(ChainError, ValueError):
    pass


class CertificateError(ChainError, ValueError):
    pass


# the RPC's schema of a header is derived from this class, docstring included (node/rpc/models.py)
@dataclass(frozen=True)
class Header:
    """A block header (docs/protocol.md, "Blocks"); its block hash is the hash of its canonical
    encoding. `time` is the proposer's clock, ms since the epoch: informational, no rule reads it."""

    chain_id: str
    height: int
    prev_hash: str
    tx_root: str
    state_root: str
    receipts_root: str
    validators_hash: str
    next_validators_hash: str
    proposer: str
    view: int
    time: int

    @classmethod
    def from_plain(cls, obj: Any) -> Header:
        if type(obj) is not dict or set(obj) != HEADER_FIELDS:
            raise BlockError(f"header must have exactly the fields {sorted(HEADER_FIELDS)}")
        for name in HASH_FIELDS:
            if not is_hex(obj[name], 32):
                raise BlockError(f"header.{name} must be 64 lowercase hex characters")
        if not is_hex(obj["proposer"], 32):
            raise BlockError("header.proposer must be a validator's public key")
        for name in ("height", "view", "time"):
            if type(obj[name]) is not int or obj[name] < 0:
                raise BlockError(f"header.{name} must be a non-negative integer")
        if obj["height"] < 1:
            raise BlockError("header.height starts at 1")
        if type(obj["chain_id"]) is not str or not obj["chain_id"]:
            raise BlockError("header.chain_id must be a non-empty str")
        return cls(**obj)

    def to_plain(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in sorted(HEADER_FIELDS)}  # one JSON form everywhere

    @cached_property
    def block_hash(self) -> str:
        return hash_hex(canonical(self.to_plain()))


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Tx, ...]

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def block_hash(self) -> str:
        return self.header.block_hash

    @cached_property
    def tx_ids(self) -> list[str]:
        return [t.tx_id for t in self.txs]

    def check_tx_root(self) -> None:
        if tx_root(self.tx_ids) != self.header.tx_root:
            raise BlockError(f"block {self.height}: tx_root does not match its txs")
        if len(set(self.tx_ids)) != len(self.tx_ids):
            raise BlockError(f"block {self.height}: a tx appears twice")

    def to_plain(self) -> dict[str, Any]:
        return {"header": self.header.to_plain(), "txs": [t.to_plain() for t in self.txs]}

    def encode(self) -> bytes:
        """canonical(self.to_plain()), built from the header's and each tx's own encodings."""
        return canonical_map(
            {"header": canonical(self.header.to_plain()), "txs": canonical_array([t.encode() for t in self.txs])}
        )

    @classmethod
    def from_plain(cls, obj: Any) -> Block:
        if type(obj) is not dict or set(obj) != {"header", "txs"} or type(obj["txs"]) is not list:
            raise BlockError('a block is {"header": {...}, "txs": [...]}')
        header = Header.from_plain(obj["header"])
        try:
            txs = tuple(parse_tx(t) for t in obj["txs"])
        except TxError as e:
            raise BlockError(f"block {header.height}: {e}") from None
        return cls(header, txs)

    @classmethod
    def decode(cls, data: bytes) -> Block:
        try:
            return cls.from_plain(decode(data))
        except EncodingError as e:
            raise BlockError(f"block is not canonical msgpack: {e}") from None


def commit_message(chain_id: str, height: int, view: int, block_hash: str) -> bytes:
    """The bytes a validator signs (under Domain.COMMIT) to commit `block_hash` in `view`.

    The view is part of the message so that commits cast in different views can never be
    pooled into one certificate: a quorum in ONE view is what the consensus safety argument
    relies on (docs/consensus.md, "Why it is safe"), and a quorum spread over several views
    proves nothing (docs/protocol.md, "Commit certificates").
    """
    return canonical({"chain_id": chain_id, "height": height, "view": view, "block_hash": block_hash})


def sign_commit(key: KeyPair, chain_id: str, height: int, view: int, block_hash: str) -> str:
    return key.sign(Domain.COMMIT, commit_message(chain_id, height, view, block_hash))


CERTIFICATE_FIELDS = frozenset({"height", "view", "block_hash", "signatures"})


@dataclass(frozen=True)
class Certificate:
    """Commit signatures of a quorum of the validators of `height`, all cast in `view`."""

    height: int
    view: int
    block_hash: str
    signatures: tuple[tuple[str, str], ...]  # (validator public key, sig), sorted by key

    @classmethod
    def build(cls, height: int, view: int, block_hash: str, sigs: dict[str, str]) -> Certificate:
        return cls(height, view, block_hash, tuple(sorted(sigs.items())))

    def to_plain(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "view": self.view,
            "block_hash": self.block_hash,
            "signatures": [{"validator": v, "sig": s} for v, s in self.signatures],
        }

    @classmethod
    def from_plain(cls, obj: Any) -> Certificate:
        if type(obj) is not dict or set(obj) != CERTIFICATE_FIELDS:
            raise CertificateError('a certificate is exactly {"height", "view", "block_hash", "signatures"}')
        for name in ("height", "view"):
            if type(obj[name]) is not int or obj[name] < 0:
                raise CertificateError(f"certificate {name} must be a non-negative integer")
        if not is_hex(obj["block_hash"], 32):
            raise CertificateError("certificate block_hash must be 64 lowercase hex characters")
        sigs = obj["signatures"]
        if type(sigs) is not list or len(sigs) > MAX_CERTIFICATE_SIGNATURES:
            raise CertificateError(f"certificate signatures must be a list of at most {MAX_CERTIFICATE_SIGNATURES}")
        pairs = []
        for s in sigs:
            if type(s) is not dict or set(s) != {"validator", "sig"}:
                raise CertificateError('each signature is {"validator", "sig"}')
            if type(s["validator"]) is not str or type(s["sig"]) is not str:
                raise CertificateError("a signature's validator and sig are hex strings")
            pairs.append((s["validator"], s["sig"]))
        return cls(obj["height"], obj["view"], obj["block_hash"], tuple(pairs))

    def verify(self, chain_id: str, height: int, block_hash: str, validators: ValidatorSet) -> None:
        """Raise CertificateError unless a quorum of distinct validators committed this block in self.view.

        Every signature is checked against the one message naming `self.view`; a commit cast in
        any other view does not verify here, so signatures from different views never add up.
        """
        if self.height != height:
            raise CertificateError(f"certificate is for height {self.height}, not {height}")
        if self.block_hash != block_hash:
            raise CertificateError(f"certificate at height {height} is for another block")
        seen: set[str] = set()
        message = commit_message(chain_id, height, self.view, block_hash)
        for validator, sig in self.signatures:
            if validator in seen:
                raise CertificateError(f"certificate at height {height}: validator {validator[:16]}… signs twice")
            if validator not in validators.publics:
                raise CertificateError(f"certificate at height {height}: {validator[:16]}… is not a validator")
            if not verify(validator, Domain.COMMIT, message, sig):
                raise CertificateError(
                    f"certificate at height {height}: bad signature from {validator[:16]}… "
                    f"(not its commit to this block in view {self.view})"
                )
            seen.add(validator)
        if len(seen) < validators.quorum:
            raise CertificateError(
                f"certificate at height {height}: {len(seen)} signatures, a quorum is {validators.quorum} of {validators.n}"
            )
