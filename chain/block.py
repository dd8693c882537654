"""Block headers, blocks and commit certificates (SPEC §5).

Blocks start at height 1, whose `prev_hash` is the genesis hash, so every block chains back to
the genesis document itself. Besides the fields SPEC §5 requires, a header carries
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
from chain.merkle import tx_root
from chain.tx import Tx, TxError, parse_tx
from chain.validators import ValidatorSet

HASH_FIELDS = ("prev_hash", "tx_root", "state_root", "receipts_root", "validators_hash", "next_validators_hash")
HEADER_FIELDS = frozenset({"chain_id", "height", "proposer", "view", "time", *HASH_FIELDS})


class BlockError(ValueError):
    pass


class CertificateError(ValueError):
    pass


@dataclass(frozen=True)
class Header:
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


def commit_message(chain_id: str, height: int, block_hash: str) -> bytes:
    return canonical({"chain_id": chain_id, "height": height, "block_hash": block_hash})


def sign_commit(key: KeyPair, chain_id: str, height: int, block_hash: str) -> str:
    return key.sign(Domain.COMMIT, commit_message(chain_id, height, block_hash))


@dataclass(frozen=True)
class Certificate:
    """Commit signatures of a quorum of the validators of `height` over its block hash."""

    height: int
    block_hash: str
    signatures: tuple[tuple[str, str], ...]  # (validator public key, sig), sorted by key

    @classmethod
    def build(cls, height: int, block_hash: str, sigs: dict[str, str]) -> Certificate:
        return cls(height, block_hash, tuple(sorted(sigs.items())))

    def to_plain(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "block_hash": self.block_hash,
            "signatures": [{"validator": v, "sig": s} for v, s in self.signatures],
        }

    @classmethod
    def from_plain(cls, obj: Any) -> Certificate:
        if type(obj) is not dict or set(obj) != {"height", "block_hash", "signatures"}:
            raise CertificateError('a certificate is {"height", "block_hash", "signatures"}')
        if type(obj["height"]) is not int or not is_hex(obj["block_hash"], 32):
            raise CertificateError("certificate height must be an int and block_hash 64 hex")
        sigs = obj["signatures"]
        if type(sigs) is not list or len(sigs) > 1024:
            raise CertificateError("certificate signatures must be a list")
        pairs = []
        for s in sigs:
            if type(s) is not dict or set(s) != {"validator", "sig"}:
                raise CertificateError('each signature is {"validator", "sig"}')
            pairs.append((s["validator"], s["sig"]))
        return cls(obj["height"], obj["block_hash"], tuple(pairs))

    def verify(self, chain_id: str, height: int, block_hash: str, validators: ValidatorSet) -> None:
        """Raise CertificateError unless a quorum of distinct validators signed this block."""
        if self.height != height:
            raise CertificateError(f"certificate is for height {self.height}, not {height}")
        if self.block_hash != block_hash:
            raise CertificateError(f"certificate at height {height} is for another block")
        seen: set[str] = set()
        message = commit_message(chain_id, height, block_hash)
        for validator, sig in self.signatures:
            if validator in seen:
                raise CertificateError(f"certificate at height {height}: validator {validator[:16]}… signs twice")
            if validator not in validators.publics:
                raise CertificateError(f"certificate at height {height}: {str(validator)[:16]}… is not a validator")
            if not verify(validator, Domain.COMMIT, message, sig):
                raise CertificateError(f"certificate at height {height}: bad signature from {validator[:16]}…")
            seen.add(validator)
        if len(seen) < validators.quorum:
            raise CertificateError(
                f"certificate at height {height}: {len(seen)} signatures, a quorum is {validators.quorum} of {validators.n}"
            )

