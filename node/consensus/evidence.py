"""Accountable evidence of equivocation: a self-verifying record and its offline check.

A validator that signs two different consensus messages of one kind for one (view, height) has
broken the protocol on purpose or through a fault nobody else can cause: its key is the only one
that can make those signatures. The consensus core notices (node/consensus/pbft.py `Evidence`); this module
turns that into a record anyone can check holding only the genesis, long after the fact:

- the two signed messages as they travelled (`Signed.to_plain()`), in canonical order (the
  smaller body digest first), so every node that saw the same pair writes the same record;
- the chain id, genesis hash, validator, kind, view and height they are about;
- the links from the genesis to the validator set of that height: the certified validator
  changes below it (the shape ownership proofs use) and, unless the last change is at height-1,
  the certified header at height-1 (`anchor`), whose `validators_hash` proves no change was left
  out and whose `next_validators_hash` names the set in force at the height.

The record is versioned (EVIDENCE_VERSION); a verifier refuses a version it does not read. Only
the record's `core` (everything but the links) is what a node stores: the links are read from
its chain when the record is served, since they only grow more certain as the chain does.

Nothing here does I/O: the node (node/runtime/evidence_store.py) and `titlechain audit verify-evidence`
share these functions. The checks use only the message envelope (`Signed`: body digest, sender,
signature over Domain.CONSENSUS) and the kind/view/height every message body carries, so a body
that grows a field (a view in commit signatures, a block hash instead of a block in PRE-PREPARE)
changes nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chain.crypto import Domain, verify
from chain.encoding import canonical, hash_hex, is_hex
from chain.genesis import Genesis
from chain.limits import MAX_HEIGHT
from chain.proofcheck import LinkError, certified_header, follow_validator_changes
from node.consensus.messages import Message, MessageError, Signed, parse_signed
from node.errors import NodeError

EVIDENCE_VERSION = 1
EVIDENCE_TYPE = "equivocation"
EQUIVOCATION_KINDS = ("pre_prepare", "prepare", "commit")  # one per (view, height) per validator
CORE_FIELDS = frozenset(
    {"version", "type", "chain_id", "genesis_hash", "validator", "kind", "view", "height", "first", "second"}
)
LINK_FIELDS = frozenset({"validator_changes", "anchor"})


class EvidenceError(NodeError, ValueError):
    """A record that does not prove what it claims; the message says which part and why."""


@dataclass(frozen=True)
class EquivocationEvidence:
    """Two conflicting messages signed by `validator` for (kind, view, height) on one chain."""

    chain_id: str
    genesis_hash: str
    validator: str
    kind: str
    view: int
    height: int
    first: Signed[Message]
    second: Signed[Message]

    @classmethod
    def of(cls, chain_id: str, genesis_hash: str, a: Signed[Message], b: Signed[Message]) -> EquivocationEvidence:
        """The record of two conflicting messages, in canonical order (either order given)."""
        first, second = (a, b) if a.digest < b.digest else (b, a)
        msg = first.msg
        return cls(chain_id, genesis_hash, first.sender, msg.kind, msg.view, msg.height, first, second)

    @property
    def key(self) -> tuple[str, str, int, int]:
        """At most one record is kept per key."""
        return (self.validator, self.kind, self.view, self.height)

    def core_plain(self) -> dict[str, Any]:
        return {
            "version": EVIDENCE_VERSION,
            "type": EVIDENCE_TYPE,
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash,
            "validator": self.validator,
            "kind": self.kind,
            "view": self.view,
            "height": self.height,
            "first": self.first.to_plain(),
            "second": self.second.to_plain(),
        }

    def encode_core(self) -> bytes:
        """The canonical bytes a node stores (and whose hash is the record's id)."""
        return canonical(self.core_plain())

    @property
    def evidence_id(self) -> str:
        return hash_hex(self.encode_core())

    def to_plain(
        self, validator_changes: Sequence[Mapping[str, Any]], anchor: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The full, self-verifying record: the core plus its links to the genesis."""
        return {**self.core_plain(), "validator_changes": validator_changes, "anchor": anchor}


def parse_core(obj: Any) -> EquivocationEvidence:
    """The core of a record (links, if present, are ignored here); raises EvidenceError.

    Checks the shape and everything that needs no validator set: both messages well formed,
    from the named validator, of the named kind, view and height, different, in canonical order,
    and each signature valid under the consensus domain.
    """
    if type(obj) is not dict or not CORE_FIELDS <= set(obj) or not set(obj) <= CORE_FIELDS | LINK_FIELDS:
        raise EvidenceError(
            f"record: must have the fields {sorted(CORE_FIELDS)} (and optionally {sorted(LINK_FIELDS)})"
        )
    if type(obj["version"]) is not int or obj["version"] != EVIDENCE_VERSION:
        raise EvidenceError(
            f"version: this verifier reads version {EVIDENCE_VERSION}, the record is {obj['version']!r}"
        )
    if obj["type"] != EVIDENCE_TYPE:
        raise EvidenceError(f"type: must be {EVIDENCE_TYPE!r}")
    if type(obj["chain_id"]) is not str or not is_hex(obj["genesis_hash"], 32) or not is_hex(obj["validator"], 32):
        raise EvidenceError("chain_id, genesis_hash, validator: a string and two 64-hex values")
    if obj["kind"] not in EQUIVOCATION_KINDS:
        raise EvidenceError(f"kind: must be one of {list(EQUIVOCATION_KINDS)}")
    for name in ("view", "height"):
        if type(obj[name]) is not int or not 0 <= obj[name] <= MAX_HEIGHT:
            raise EvidenceError(f"{name}: must be a non-negative integer")
    if obj["height"] < 1:
        raise EvidenceError("height: blocks start at 1")
    msgs = []
    for name in ("first", "second"):
        try:
            signed = parse_signed(obj[name])
        except (MessageError, RecursionError) as e:
            raise EvidenceError(f"{name}: not a well-formed signed consensus message: {e}") from None
        _check_message(name, signed, obj)
        msgs.append(signed)
    first, second = msgs
    if first.digest == second.digest:
        raise EvidenceError("second: the same message as first; equivocation needs two different ones")
    if first.digest > second.digest:
        raise EvidenceError("first, second: not in canonical order (the smaller body digest first)")
    return EquivocationEvidence(
        obj["chain_id"], obj["genesis_hash"], obj["validator"], obj["kind"], obj["view"], obj["height"], first, second
    )


def _check_message(name: str, signed: Signed[Message], obj: dict[str, Any]) -> None:
    msg = signed.msg
    if signed.sender != obj["validator"]:
        raise EvidenceError(f"{name}.sender: not the validator the record names")
    if msg.kind != obj["kind"] or msg.view != obj["view"] or msg.height != obj["height"]:
        raise EvidenceError(f"{name}.body: not a {obj['kind']} message for view {obj['view']} height {obj['height']}")
    if not verify(signed.sender, Domain.CONSENSUS, signed.body_bytes, signed.sig):
        raise EvidenceError(f"{name}.sig: not the validator's signature of this body under the consensus domain")


@dataclass(frozen=True)
class EvidenceResult:
    ok: bool
    reason: str
    evidence: EquivocationEvidence | None = None

    def to_plain(self) -> dict[str, Any]:
        ev = self.evidence
        out: dict[str, Any] = {"ok": self.ok, "reason": self.reason}
        if ev is not None:
            out.update(
                evidence_id=ev.evidence_id, validator=ev.validator, kind=ev.kind, view=ev.view, height=ev.height,
                digests=[ev.first.digest, ev.second.digest],
            )
        return out


def verify_evidence(record: Any, genesis: Genesis) -> EvidenceResult:
    """Check a full record (to_plain) holding only the genesis; never raises on bad input."""
    try:
        ev = parse_core(record)
        _check_chain(ev, record, genesis)
    except EvidenceError as e:
        return EvidenceResult(False, str(e))
    return EvidenceResult(True, "", ev)


def _check_chain(ev: EquivocationEvidence, record: dict[str, Any], genesis: Genesis) -> None:
    if ev.chain_id != genesis.chain_id:
        raise EvidenceError("chain_id: not the chain of this genesis")
    if ev.genesis_hash != genesis.hash:
        raise EvidenceError("genesis_hash: not the hash of this genesis")
    if not LINK_FIELDS <= set(record):
        raise EvidenceError(f"record: lacks {sorted(LINK_FIELDS)}, the links to the validator set of its height")
    try:
        vset, last = follow_validator_changes(record["validator_changes"], genesis)
        if last >= ev.height:
            raise EvidenceError("validator_changes: a change at or above the evidence height does not apply to it")
        anchor = record["anchor"]
        if ev.height == 1 or last == ev.height - 1:
            if anchor is not None:
                raise EvidenceError("anchor: must be null when the validator set of the height is already proved")
        else:
            if type(anchor) is not dict or set(anchor) != {"header", "certificate"}:
                raise EvidenceError("anchor: must be {header, certificate} of the block at height-1")
            header = certified_header(anchor["header"], anchor["certificate"], vset, genesis, "anchor.")
            if header.height != ev.height - 1:
                raise EvidenceError("anchor.header.height: must be the evidence height minus one")
            if header.next_validators_hash != vset.hash:
                raise EvidenceError("anchor.header.next_validators_hash: a validator change is missing")
    except LinkError as e:
        raise EvidenceError(str(e)) from None
    if ev.validator not in vset.publics:
        raise EvidenceError(f"validator: not a validator at height {ev.height}")
