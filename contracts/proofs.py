"""Ownership and absence proofs, built from a store; verified by chain.proofcheck.verify_ownership_proof.

A proof is a plain JSON-able dict (format in docs/protocol.md, "Ownership and absence proofs"): its
claim, the asset's state (null for absence) and the state-tree path of its key to the head's
state_root, the head header and its certificate, and for each block that changed the validator
set, that header, its certificate and the new set.

An id no asset holds gets a proof of absence. The contracts never delete an asset's state (a
redeemed asset stays, status "redeemed"), so absence at a height means no asset was ever
registered under that id up to it; txs that named the id and were rejected leave no state.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from chain import smt
from chain.encoding import decode
from chain.proofcheck import ABSENCE, OWNERSHIP, PROOF_VERSION
from chain.store import Store
from contracts.apply import VALSET_PREFIX, state_key
from contracts.errors import ContractError
from contracts.state import AssetState, asset_key


class ProofError(ContractError, LookupError):
    """No proof can be built (an empty chain, or a store missing records it should hold)."""


class Certified(TypedDict):
    """A header and its commit certificate, in their docs/protocol.md forms."""

    header: dict[str, Any]
    certificate: dict[str, Any]


class ValidatorChange(Certified):
    """A block that changed the validator set, and the set it made (its ValidatorSet.to_plain())."""

    validators: list[dict[str, Any]]


class OwnershipProof(TypedDict):
    """The proof document (docs/protocol.md, "Ownership and absence proofs", version 5)."""

    version: int
    claim: Literal["ownership", "absence"]
    chain_id: str
    genesis_hash: str
    asset_id: str
    asset: AssetState | None  # None exactly for a proof of absence
    state_proof: dict[str, Any]  # smt.Proof.to_plain()
    header: dict[str, Any]
    certificate: dict[str, Any]
    validator_changes: list[ValidatorChange]


def build_ownership_proof(store: Store, asset_id: str) -> OwnershipProof:
    """A proof of asset_id's state, or of its absence, as of the store's head."""
    head = store.head
    if head is None:
        raise ProofError("no block is committed yet: there is no certified state root to prove against")
    key = asset_key(asset_id)
    raw = store.get(state_key(key))
    root = smt.root_at(store.get, head.height)
    if root[0].hex() != head.state_root:
        raise smt.SmtError(f"the state tree's root record of height {head.height} is not the head's state root")
    state_proof = smt.prove(root, key.encode(), store.get)
    head_summary = store.get_summary(head.height)  # a synced store's base block has no tx records
    if head_summary is None:  # the head record names a block the store does not hold
        raise ProofError(f"the store's head block {head.height} is missing: audit this data dir")
    # the state record and the tree must agree, or the proof would not verify: say so here
    if not smt.verify_proof(head.state_root, key.encode(), raw, state_proof):
        raise smt.SmtError(f"the state tree at height {head.height} disagrees with the stored {key!r}")
    head_certified = certified(store, head.height)
    return {
        "version": PROOF_VERSION,
        "claim": ABSENCE if raw is None else OWNERSHIP,
        "chain_id": head_summary[0].chain_id,
        "genesis_hash": store.genesis_hash,
        "asset_id": asset_id,
        "asset": None if raw is None else decode(raw),
        "state_proof": state_proof.to_plain(),
        "header": head_certified["header"],
        "certificate": head_certified["certificate"],
        "validator_changes": validator_changes(store, head.height),
    }


def certified(store: Store, height: int) -> Certified:
    """The header and certificate of a height (a synced store keeps those of its validator-set
    changes below its base, chain/store.py)."""
    found = store.certified_header(height)
    if found is None:
        raise ProofError(f"the store lacks block or certificate {height}")
    return {"header": found[0].to_plain(), "certificate": found[1].to_plain()}


def validator_changes(store: Store, below: int) -> list[ValidatorChange]:
    """For each block before `below` whose txs changed the validator set: header, certificate, new set."""
    out: list[ValidatorChange] = []
    for key, raw in store.iterate(VALSET_PREFIX):
        first = int(key[len(VALSET_PREFIX) :])  # the set certifies from this height; block first-1 made it
        if 1 < first <= below:
            made = certified(store, first - 1)
            out.append({"header": made["header"], "certificate": made["certificate"], "validators": decode(raw)})
    return out
