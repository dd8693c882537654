"""Offline checks of what a node hands out about the chain, holding only the genesis: ownership and
absence proofs, and a header certified through the validator-set changes since the genesis (the
light client that proofs and state sync share)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from chain import smt
from chain.block import BlockError, Certificate, CertificateError, Header
from chain.encoding import EncodingError, canonical
from chain.errors import ChainError
from chain.genesis import Genesis
from chain.patterns import WholePattern
from chain.validators import ValidatorSet, ValidatorSetError

# -- ownership and absence proofs (docs/protocol.md, "Ownership and absence proofs") ------------


@dataclass(frozen=True)
class ProofResult:
    ok: bool
    reason: str
    asset_id: str | None = None
    asset: dict[str, Any] | None = None  # None with ok: the asset provably does not exist
    height: int | None = None
    block_hash: str | None = None
    state_root: str | None = None

    @property
    def owner(self) -> str | None:
        return None if self.asset is None else self.asset.get("owner")

    @property
    def absent(self) -> bool:
        """A valid proof that no asset holds asset_id as of height."""
        return self.ok and self.asset is None


class _ProofBad(Exception):
    pass


def verify_ownership_proof(proof: Any, genesis: Genesis) -> ProofResult:
    """Check a proof of ownership or of absence (contracts/proofs.py, docs/protocol.md) holding only
    the genesis. A valid absence proof has ok and asset None (`.absent`)."""
    try:
        return _verify_proof(proof, genesis)
    except _ProofBad as e:
        return ProofResult(False, str(e))


PROOF_FIELDS = frozenset(
    {
        "version", "claim", "chain_id", "genesis_hash", "asset_id", "asset",
        "state_proof", "header", "certificate", "validator_changes",
    }
)

# must equal contracts.state.ASSET_PREFIX (a test holds them together; chain/ may not import it)
ASSET_STATE_PREFIX = "asset/"
# must equal contracts.args.ASSET_ID_PATTERN's text (a test holds them together): a proof, of
# absence above all, speaks only of an id the contracts could ever have registered
ASSET_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_ASSET_ID = WholePattern(ASSET_ID_RE)
# 2: the certificates a proof carries name their view (commit signatures v2)
# 3: a proof states its claim, "ownership" or "absence", which must agree with its asset field
# 4: the state tree has sixteen children a node: the state proof lists, a level, the node's other
#    fifteen children (store schema 11)
# 5: an inner node's hash leaves its empty children out: H(0x02 || bitmap || non-empty children's
#    hashes) (store schema 12); the proof's fields are version 4's
PROOF_VERSION = 5
OWNERSHIP: Final = "ownership"  # Final: typed as the literal (contracts.proofs.OwnershipProof.claim)
ABSENCE: Final = "absence"


def _verify_proof(proof: Any, genesis: Genesis) -> ProofResult:
    if type(proof) is not dict:
        raise _ProofBad(f"proof: must be an object with exactly the fields {sorted(PROOF_FIELDS)}")
    # the version first: a proof of another version has other fields, and should be told so
    if type(proof.get("version")) is not int:
        raise _ProofBad(f"version: must be an integer (this verifier reads version {PROOF_VERSION})")
    if proof["version"] != PROOF_VERSION:
        raise _ProofBad(
            f"version: the proof is version {proof['version']}, this verifier reads version {PROOF_VERSION}"
        )
    if set(proof) != PROOF_FIELDS:
        raise _ProofBad(f"proof: must have exactly the fields {sorted(PROOF_FIELDS)}")
    if proof["chain_id"] != genesis.chain_id:
        raise _ProofBad("chain_id: not the chain of this genesis")
    if proof["genesis_hash"] != genesis.hash:
        raise _ProofBad("genesis_hash: not the hash of this genesis")
    vset, last = _follow_changes(proof["validator_changes"], genesis)
    header = _certified(proof["header"], proof["certificate"], vset, genesis, "")
    if header.height <= last:
        raise _ProofBad("header.height: must lie above every validator change")
    asset_id, asset = _claimed(proof)
    try:
        state_proof = smt.Proof.from_plain(proof["state_proof"])
        value = None if asset is None else canonical(asset)
    except (ValueError, EncodingError) as e:
        raise _ProofBad(f"state_proof: {e}") from None
    key = (ASSET_STATE_PREFIX + asset_id).encode()
    if not smt.verify_proof(header.state_root, key, value, state_proof):
        if asset is None:
            raise _ProofBad(f"state_proof: does not show {key.decode()!r} absent under header.state_root")
        raise _ProofBad("asset/state_proof: does not lead to header.state_root")
    return ProofResult(True, "", asset_id, asset, header.height, header.block_hash, header.state_root)


def _claimed(proof: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The asset id and the state the proof claims for it: a map for ownership, None for absence."""
    claim, asset_id, asset = proof["claim"], proof["asset_id"], proof["asset"]
    if not _ASSET_ID.matches(asset_id):
        raise _ProofBad("asset_id: not an asset id the contracts accept (1-128 of letters, digits, '_', '.', ':', '-')")
    if claim == OWNERSHIP:
        if type(asset) is not dict or asset.get("asset_id") != asset_id:
            raise _ProofBad("asset: an ownership proof carries the asset's state, naming asset_id")
    elif claim == ABSENCE:
        if asset is not None:
            raise _ProofBad("asset: an absence proof carries null")
    else:
        raise _ProofBad(f"claim: must be {OWNERSHIP!r} or {ABSENCE!r}")
    return asset_id, asset


def _follow_changes(changes: Any, genesis: Genesis) -> tuple[ValidatorSet, int]:
    """The validator set after a list of certified validator changes (proofs and evidence carry
    them in one shape: {header, certificate, validators}, ascending), and the last change's height."""
    if type(changes) is not list:
        raise _ProofBad("validator_changes: must be a list")
    vset = genesis.validators
    last = 0
    for i, change in enumerate(changes):
        where = f"validator_changes[{i}]."
        if type(change) is not dict or set(change) != {"header", "certificate", "validators"}:
            raise _ProofBad(f"validator_changes[{i}]: must be {{header, certificate, validators}}")
        header = _certified(change["header"], change["certificate"], vset, genesis, where)
        if header.height <= last:
            raise _ProofBad(f"{where}header.height: changes must ascend")
        last = header.height
        try:
            new = ValidatorSet.from_plain(change["validators"]) if type(change["validators"]) is list else None
        except ValidatorSetError as e:
            raise _ProofBad(f"{where}validators: {e}") from None
        if new is None or new.hash != header.next_validators_hash:
            raise _ProofBad(f"{where}validators: not the set the header's next_validators_hash names")
        vset = new
    return vset, last


def _certified(header_obj: Any, cert_obj: Any, vset: ValidatorSet, genesis: Genesis, where: str) -> Header:
    try:
        header = Header.from_plain(header_obj)
    except BlockError as e:
        raise _ProofBad(f"{where}header: {e}") from None
    if header.chain_id != genesis.chain_id:
        raise _ProofBad(f"{where}header.chain_id: not this chain")
    if header.validators_hash != vset.hash:
        raise _ProofBad(f"{where}header.validators_hash: not the validator set this proof reaches")
    try:
        cert = Certificate.from_plain(cert_obj)
        cert.verify(genesis.chain_id, header.height, header.block_hash, vset)
    except CertificateError as e:
        raise _ProofBad(f"{where}certificate: {e}") from None
    return header



class LinkError(ChainError, ValueError):
    """Headers, certificates or validator changes that do not link to the genesis."""


def follow_validator_changes(changes: Any, genesis: Genesis) -> tuple[ValidatorSet, int]:
    """`_follow_changes` for other verifiers (node/consensus/evidence.py); raises LinkError."""
    try:
        return _follow_changes(changes, genesis)
    except _ProofBad as e:
        raise LinkError(str(e)) from None


def certified_header(header_obj: Any, cert_obj: Any, vset: ValidatorSet, genesis: Genesis, where: str) -> Header:
    """A header of this chain whose certificate verifies under vset; raises LinkError."""
    try:
        return _certified(header_obj, cert_obj, vset, genesis, where)
    except _ProofBad as e:
        raise LinkError(str(e)) from None
