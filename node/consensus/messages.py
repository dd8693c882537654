"""Consensus messages: plain values on the wire, frozen dataclasses inside.

Every message is `{"body": body, "sender": public, "sig": hex}` where the body carries its
`kind` and the signature is the sender's over `Domain.CONSENSUS + canonical(body)`. Parsing
checks shape and types only; whether the sender is a validator and the signature holds is the
replica's business (it knows the validator set of each height and owns the verify function).
Nested messages (the proofs inside VIEW-CHANGE and NEW-VIEW) are parsed the same way, to a
bounded depth, so a peer cannot make a replica recurse or allocate without limit.

No message carries a block: a PRE-PREPARE names its block by hash, and the block travels beside
it as a data frame (node/p2p/messages.py), fetched by hash when missing. So every message here, and every
proof made of them, is bounded by the number of validators, never by the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeGuard, TypeVar, Union

from chain.block import BlockError, Certificate, CertificateError
from chain.crypto import Domain, KeyPair
from chain.encoding import EncodingError, canonical, canonical_map, hash_hex, is_hex, pack_normalized
from chain.limits import MAX_HEIGHT
from node.errors import NodeError

MAX_PROOF_MESSAGES = 1024


class MessageError(NodeError, ValueError):
    """A peer sent something that is not a well-formed consensus message."""


@dataclass(frozen=True)
class PrePrepare:
    """The primary's proposal, naming the block by its hash (the block travels separately)."""

    view: int
    height: int
    block_hash: str

    kind = "pre_prepare"

    def to_plain(self) -> dict[str, Any]:
        return {"kind": self.kind, "view": self.view, "height": self.height, "block_hash": self.block_hash}


@dataclass(frozen=True)
class Prepare:
    view: int
    height: int
    block_hash: str

    kind = "prepare"

    def to_plain(self) -> dict[str, Any]:
        return {"kind": self.kind, "view": self.view, "height": self.height, "block_hash": self.block_hash}


@dataclass(frozen=True)
class Commit:
    """A commit vote; `commit_sig` signs (height, view, block_hash), so a quorum of one view is a Certificate."""

    view: int
    height: int
    block_hash: str
    commit_sig: str

    kind = "commit"

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "view": self.view,
            "height": self.height,
            "block_hash": self.block_hash,
            "commit_sig": self.commit_sig,
        }


@dataclass(frozen=True)
class PreparedProof:
    """A block prepared at (view, height): the primary's PRE-PREPARE and matching PREPAREs."""

    pre_prepare: Signed[PrePrepare]
    prepares: tuple[Signed[Prepare], ...]

    def to_plain(self) -> dict[str, Any]:
        return {"pre_prepare": self.pre_prepare.to_plain(), "prepares": [p.to_plain() for p in self.prepares]}

    @property
    def view(self) -> int:
        return self.pre_prepare.msg.view

    @property
    def block_hash(self) -> str:
        return self.pre_prepare.msg.block_hash


@dataclass(frozen=True)
class ViewChange:
    """Sent on moving to `view`; `height` is the sender's next height to commit."""

    view: int
    height: int
    prepared: PreparedProof | None

    kind = "view_change"

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "view": self.view,
            "height": self.height,
            "prepared": None if self.prepared is None else self.prepared.to_plain(),
        }


@dataclass(frozen=True)
class NewView:
    view: int
    height: int
    view_changes: tuple[Signed[ViewChange], ...]
    pre_prepare: Signed[PrePrepare] | None

    kind = "new_view"

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "view": self.view,
            "height": self.height,
            "view_changes": [v.to_plain() for v in self.view_changes],
            "pre_prepare": None if self.pre_prepare is None else self.pre_prepare.to_plain(),
        }


@dataclass(frozen=True)
class Status:
    """A reply to a peer that is behind: our head certificate, the NEW-VIEW of our view, and
    the VIEW-CHANGEs we hold for the view the peer is stuck in."""

    view: int
    height: int  # the sender's head height
    head_block_hash: str | None
    certificate: Certificate | None
    new_view: Signed[NewView] | None
    view_changes: tuple[Signed[ViewChange], ...] = ()

    kind = "status"

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "view": self.view,
            "height": self.height,
            "head_block_hash": self.head_block_hash,
            "certificate": None if self.certificate is None else self.certificate.to_plain(),
            "new_view": None if self.new_view is None else self.new_view.to_plain(),
            "view_changes": [v.to_plain() for v in self.view_changes],
        }


Message = Union[PrePrepare, Prepare, Commit, ViewChange, NewView, Status]
# the kind of message a Signed holds: Signed[PrePrepare] inside a prepared proof, Signed[Message]
# for one of any kind as it comes off the wire (narrowed with `is_kind`)
M = TypeVar("M", bound=Message, covariant=True)
K = TypeVar("K", bound=Message)


@dataclass(frozen=True)
class Signed(Generic[M]):
    msg: M
    sender: str
    sig: str

    @cached_property
    def body_bytes(self) -> bytes:
        return encode_body(self.msg)

    @cached_property
    def digest(self) -> str:
        return hash_hex(self.body_bytes)

    @property
    def kind(self) -> str:
        return self.msg.kind

    def to_plain(self) -> dict[str, Any]:
        return {"body": self.msg.to_plain(), "sender": self.sender, "sig": self.sig}

    def encode(self) -> bytes:
        """canonical(self.to_plain()), reusing body_bytes (encoded once, when signed or parsed)."""
        return canonical_map({"body": self.body_bytes, "sender": canonical(self.sender), "sig": canonical(self.sig)})

    @staticmethod
    def sign(key: KeyPair, msg: K) -> Signed[K]:
        body = encode_body(msg)
        signed = Signed(msg, key.public, key.sign(Domain.CONSENSUS, body))
        signed.__dict__["body_bytes"] = body  # fill the cached_property: the same bytes, encoded once
        return signed


def is_kind(signed: Signed[Message], kind: type[K]) -> TypeGuard[Signed[K]]:
    """Whether `signed` holds a message of class `kind`: narrows Signed[Message] to Signed[kind]."""
    return isinstance(signed.msg, kind)


def encode_body(msg: Message) -> bytes:
    """canonical(msg.to_plain()): the bytes a signature covers."""
    return canonical(msg.to_plain())


def _int(obj: dict[str, Any], name: str) -> int:
    v = obj.get(name)
    if type(v) is not int or v < 0 or v > MAX_HEIGHT:
        raise MessageError(f"{name} must be a non-negative integer")
    return v


def _hash(obj: dict[str, Any], name: str) -> str:
    v = obj.get(name)
    if not is_hex(v, 32):
        raise MessageError(f"{name} must be 64 lowercase hex characters")
    return v


def _fields(obj: Any, names: set[str]) -> dict[str, Any]:
    if type(obj) is not dict or set(obj) != names:
        raise MessageError(f"expected exactly the fields {sorted(names)}")
    return obj


def _proof_list(obj: Any, depth: int, kind: type[K]) -> tuple[Signed[K], ...]:
    if type(obj) is not list or len(obj) > MAX_PROOF_MESSAGES:
        raise MessageError(f"a proof is a list of at most {MAX_PROOF_MESSAGES} messages")
    return tuple(parse_signed_as(x, kind, depth + 1) for x in obj)


def _optional(obj: Any, depth: int, kind: type[K]) -> Signed[K] | None:
    return None if obj is None else parse_signed_as(obj, kind, depth + 1)


def _parse_body(body: dict[str, Any], depth: int) -> Message:
    kind = body.get("kind")
    if kind == "pre_prepare":
        _fields(body, {"kind", "view", "height", "block_hash"})
        return PrePrepare(_int(body, "view"), _int(body, "height"), _hash(body, "block_hash"))
    if kind == "prepare":
        _fields(body, {"kind", "view", "height", "block_hash"})
        return Prepare(_int(body, "view"), _int(body, "height"), _hash(body, "block_hash"))
    if kind == "commit":
        _fields(body, {"kind", "view", "height", "block_hash", "commit_sig"})
        if not is_hex(body["commit_sig"], 64):
            raise MessageError("commit_sig must be 128 lowercase hex characters")
        return Commit(_int(body, "view"), _int(body, "height"), _hash(body, "block_hash"), body["commit_sig"])
    if kind == "view_change":
        _fields(body, {"kind", "view", "height", "prepared"})
        prepared = None if body["prepared"] is None else parse_prepared_proof(body["prepared"], depth)
        return ViewChange(_int(body, "view"), _int(body, "height"), prepared)
    if kind == "new_view":
        _fields(body, {"kind", "view", "height", "view_changes", "pre_prepare"})
        return NewView(
            _int(body, "view"),
            _int(body, "height"),
            _proof_list(body["view_changes"], depth, ViewChange),
            _optional(body["pre_prepare"], depth, PrePrepare),
        )
    if kind == "status":
        _fields(body, {"kind", "view", "height", "head_block_hash", "certificate", "new_view", "view_changes"})
        head = body["head_block_hash"]
        if head is not None and not is_hex(head, 32):
            raise MessageError("head_block_hash must be 64 hex or null")
        cert = None if body["certificate"] is None else Certificate.from_plain(body["certificate"])
        return Status(
            _int(body, "view"),
            _int(body, "height"),
            head,
            cert,
            _optional(body["new_view"], depth, NewView),
            _proof_list(body["view_changes"], depth, ViewChange),
        )
    raise MessageError(f"unknown message kind {str(kind)[:32]!r}")


def parse_prepared_proof(obj: Any, depth: int = 0) -> PreparedProof:
    p = _fields(obj, {"pre_prepare", "prepares"})
    try:
        return PreparedProof(
            parse_signed_as(p["pre_prepare"], PrePrepare, depth + 1), _proof_list(p["prepares"], depth, Prepare)
        )
    except (BlockError, CertificateError, EncodingError) as e:
        raise MessageError(str(e)) from None


def _packed(value: Any) -> bytes | None:
    try:
        return pack_normalized(value)
    except (TypeError, ValueError, OverflowError):
        return None  # not even msgpack: the full check below says why


def parse_signed_as(obj: Any, kind: type[K], depth: int = 0) -> Signed[K]:
    """A Signed message of class `kind` (a proof's parts, a vote record's VIEW-CHANGE); raises
    MessageError on anything malformed or of another kind."""
    signed = parse_signed(obj, depth)
    if is_kind(signed, kind):
        return signed
    raise MessageError(f"expected a {kind.kind} message, not {signed.kind}")


def parse_signed(obj: Any, depth: int = 0) -> Signed[Message]:
    """A Signed message from a plain value; raises MessageError on anything malformed."""
    if depth > 3:
        raise MessageError("messages nested too deeply")
    env = _fields(obj, {"body", "sender", "sig"})
    if not is_hex(env["sender"], 32) or not is_hex(env["sig"], 64):
        raise MessageError("sender must be 64 hex and sig 128 hex")
    if type(env["body"]) is not dict:
        raise MessageError("body must be an object")
    try:
        msg = _parse_body(env["body"], depth)
        signed: Signed[Message] = Signed(msg, env["sender"], env["sig"])
        # A body as decoded from a frame is already in canonical order, so packing it as it is
        # gives its canonical bytes at once; anything else (a hand-built dict) takes the full
        # check. Equal bytes mean the same plain value either way.
        received = env["body"]
        if signed.body_bytes != _packed(received) and signed.body_bytes != canonical(received):
            raise MessageError("body does not round-trip to the same canonical bytes")
    except (BlockError, CertificateError, EncodingError) as e:
        raise MessageError(str(e)) from None
    return signed
