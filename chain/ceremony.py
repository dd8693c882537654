"""The genesis ceremony: a consortium's genesis assembled from its institutions' signed requests.

Theory of operation. No one party may hold every key: each institution creates its own keys on
its own machines and hands the coordinator a *membership request* holding only public parts (its
name, its account, the roles it asks for, and, for a validator, its node id, node key and peer
address), signed by its account key and, for a validator, by its node key too (so nobody can list
a node key it does not hold). The coordinator `assemble`s the requests and the consortium's
parameters into the genesis and a *manifest* (the parameters and the exact signed requests). The
genesis is a pure function of the manifest, so every institution re-derives it (`verify`), checks
that its own request is in it exactly as signed, and compares the genesis hash with the others
out of band. The coordinator never holds a private key and cannot change what anyone asked for.

This module does no I/O: it is handed plain values (parsed JSON) and returns plain values.
Formats and rules: docs/protocol.md ("Membership requests and the ceremony manifest").
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from chain.crypto import Domain, KeyPair, is_account, verify
from chain.encoding import EncodingError, canonical, hash_value, is_hex
from chain.genesis import CHAIN_ID_PATTERN, Genesis, GenesisError, Grant, Params, parse_grant
from chain.limits import MAX_CLASSES
from chain.validators import Validator, ValidatorSetError, dial_address_problem

MANIFEST_VERSION = 1
# BFT with n validators tolerates f = floor((n-1)/3) faulty ones; below 4, f = 0, so a single
# crashed validator halts the chain and a single malicious one may break its safety
MIN_VALIDATORS = 4
MAX_NAME_CHARS = 100
MAX_REQUESTS = 1000
MAX_REQUEST_BYTES = 64 * 1024  # a request is a few hundred bytes; callers refuse larger files unread
MAX_MANIFEST_BYTES = MAX_REQUESTS * MAX_REQUEST_BYTES

# characters a display name may hold besides letters, marks and digits: enough for "Crane &
# Whitlock (Audit) Ltd.", nothing that can hide or reorder text (controls, bidi overrides,
# zero-width characters) or break a table or a log line
NAME_PUNCTUATION = frozenset(" &'.,()-/")
BODY_FIELDS = frozenset({"chain_id", "name", "account", "roles", "validator"})
MANIFEST_FIELDS = frozenset(
    {"version", "chain_id", "time", "gov_threshold", "params", "requests", "institutions", "genesis_hash"}
)


class CeremonyError(ValueError):
    """A request, manifest or genesis that must be refused; the message says which and why."""


# -- names and addresses --------------------------------------------------------------------------


def check_name(name: Any) -> str:
    """An institution's display name: what tables show and people compare, so it must read the
    same everywhere: 1-100 letters, marks, digits, single spaces and `&'.,()-/`, in NFC form."""
    if type(name) is not str or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise CeremonyError(f"name: 1-{MAX_NAME_CHARS} characters")
    if unicodedata.normalize("NFC", name) != name:
        raise CeremonyError(f"name {name!r}: not in Unicode NFC form (the same text must be the same characters)")
    previous = " "
    for ch in name:
        kind = unicodedata.category(ch)[0]
        # a combining mark only on a letter: stacks of marks can overdraw the text around them
        allowed = ch in NAME_PUNCTUATION or kind in "LN" or (kind == "M" and unicodedata.category(previous)[0] == "L")
        if not allowed:
            raise CeremonyError(
                f"name {name!r}: character U+{ord(ch):04X} is not allowed (letters, digits, spaces and &'.,()-/ only)"
            )
        previous = ch
    if name != name.strip() or "  " in name:
        raise CeremonyError(f"name {name!r}: no leading, trailing or double spaces")
    return name


def name_key(name: str) -> str:
    """Names that people would read as the same one (case, compatibility forms) share a key."""
    return unicodedata.normalize("NFKC", name).casefold()


def check_address(address: Any) -> str:
    """A validator's peer address as the others will dial it: host:port, port 1-65535."""
    problem = dial_address_problem(address)
    if problem is not None:
        raise CeremonyError(f"address {address!r}: {problem}")
    return str(address)  # a str: dial_address_problem checked it


def check_roles(roles: Any) -> tuple[Grant, ...]:
    """The grants asked for: at most one per role, in canonical form (sorted by role; issuer
    classes sorted), so that one request has one byte form."""
    if type(roles) is not list:
        raise CeremonyError("roles: a list of grants")
    parsed = []
    for i, g in enumerate(roles):
        try:
            parsed.append(parse_grant(g, f"roles[{i}]"))
        except GenesisError as e:
            raise CeremonyError(str(e).removeprefix("genesis.")) from None
        if g.get("role") == "issuer" and len(g["classes"]) > MAX_CLASSES:
            raise CeremonyError(f"roles[{i}].classes: at most {MAX_CLASSES} classes")
    names = [g["role"] for g in parsed]
    if len(set(names)) != len(names):
        raise CeremonyError("roles: a role is asked for twice (list all issuer classes in one grant)")
    if parsed != sorted(parsed, key=lambda g: g["role"]) or parsed != list(roles):
        raise CeremonyError("roles: not in canonical form (grants sorted by role, issuer classes sorted)")
    return tuple(parsed)


def canonical_roles(grants: list[dict[str, Any]]) -> list[Grant]:
    """Grants as check_roles wants them; for whoever builds a request."""
    return sorted((parse_grant(g, "roles") for g in grants), key=lambda g: g["role"])


# -- membership requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipRequest:
    chain_id: str
    name: str
    account: str  # the institution's key: signs the request, holds its roles and member vote
    roles: tuple[Grant, ...]
    validator: Validator | None  # its node, if it runs one
    sig: str  # by account
    node_sig: str | None  # by validator.public, iff validator

    def body(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "name": self.name,
            "account": self.account,
            "roles": [dict(g) for g in self.roles],
            "validator": self.validator.to_plain() if self.validator else None,
        }

    def to_plain(self) -> dict[str, Any]:
        return {"body": self.body(), "sig": self.sig, "node_sig": self.node_sig}

    @property
    def is_member(self) -> bool:
        return any(g["role"] == "member" for g in self.roles)

    @property
    def grants(self) -> list[dict[str, Any]]:
        """The grants beyond membership (the genesis lists members separately)."""
        return [dict(g) for g in self.roles if g["role"] != "member"]

    @classmethod
    def create(
        cls,
        *,
        chain_id: str,
        name: str,
        account: KeyPair,
        roles: list[Grant],
        node: KeyPair | None = None,
        node_id: str | None = None,
        address: str | None = None,
    ) -> MembershipRequest:
        """Build and sign a request; refuses what `from_plain` would refuse."""
        if (node is None) != (node_id is None) or (node is None) != (address is None):
            raise CeremonyError("a validator needs its node key, node id and address; a non-validator none of them")
        validator = {"node_id": node_id, "public": node.public, "address": address} if node else None
        body = {"chain_id": chain_id, "name": name, "account": account.public, "roles": roles, "validator": validator}
        message = canonical(body)
        plain = {
            "body": body,
            "sig": account.sign(Domain.MEMBERSHIP, message),
            "node_sig": node.sign(Domain.MEMBERSHIP, message) if node else None,
        }
        return cls.from_plain(plain)

    @classmethod
    def from_plain(cls, obj: Any) -> MembershipRequest:
        """A request checked in full: every field, and both signatures."""
        if type(obj) is not dict or set(obj) != {"body", "sig", "node_sig"}:
            raise CeremonyError('a membership request is {"body", "sig", "node_sig"}')
        body = obj["body"]
        if type(body) is not dict or set(body) != BODY_FIELDS:
            raise CeremonyError(f"request body: exactly the fields {sorted(BODY_FIELDS)}")
        name = check_name(body["name"])
        where = f"request of {name!r}"
        if not CHAIN_ID_PATTERN.matches(body["chain_id"]):
            raise CeremonyError(f"{where}: chain_id: 1-64 of letters, digits, '_', '.', '-'")
        if not is_account(body["account"]):
            raise CeremonyError(f"{where}: account: 64 lowercase hex characters")
        try:
            roles = check_roles(body["roles"])
        except CeremonyError as e:
            raise CeremonyError(f"{where}: {e}") from None
        validator = _check_validator(body["validator"], body["account"], where)
        if not roles and validator is None:
            raise CeremonyError(f"{where}: asks for no role and runs no validator")
        try:
            message = canonical(body)
        except EncodingError as e:
            raise CeremonyError(f"{where}: {e}") from None
        if not (is_hex(obj["sig"], 64) and verify(body["account"], Domain.MEMBERSHIP, message, obj["sig"])):
            raise CeremonyError(f"{where}: sig is not the account's signature over this request")
        if validator is None and obj["node_sig"] is not None:
            raise CeremonyError(f"{where}: node_sig without a validator")
        if validator is not None and not (
            is_hex(obj["node_sig"], 64) and verify(validator.public, Domain.MEMBERSHIP, message, obj["node_sig"])
        ):
            raise CeremonyError(f"{where}: node_sig is not the validator key's signature over this request")
        return cls(body["chain_id"], name, body["account"], roles, validator, obj["sig"], obj["node_sig"])


def _check_validator(obj: Any, account: str, where: str) -> Validator | None:
    if obj is None:
        return None
    try:
        validator = Validator.from_plain(obj, "validator")
        check_address(validator.address)
    except (ValidatorSetError, CeremonyError) as e:
        raise CeremonyError(f"{where}: {e}") from None
    if validator.public == account:
        # the node machine signs votes all day; it must not also hold the governance key
        raise CeremonyError(f"{where}: the validator node key must not be the account key")
    return validator


# -- assembling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsortiumParams:
    """What the consortium agreed besides its members' requests."""

    chain_id: str
    time: int  # ms since the epoch
    gov_threshold: int | None = None  # None: a majority of the members at the time of each vote
    params: dict[str, int] | None = None  # the genesis `params`; None: the defaults

    def check(self) -> None:
        if not CHAIN_ID_PATTERN.matches(self.chain_id):
            raise CeremonyError("chain_id: 1-64 of letters, digits, '_', '.', '-'")
        if type(self.time) is not int or self.time < 0:
            raise CeremonyError("time: ms since the epoch, a non-negative integer")
        if self.gov_threshold is not None and (type(self.gov_threshold) is not int or self.gov_threshold < 1):
            raise CeremonyError("gov_threshold: a positive integer, or null for a majority")
        try:
            Params.from_plain(self.params)
        except GenesisError as e:
            raise CeremonyError(str(e).removeprefix("genesis.")) from None


@dataclass(frozen=True)
class Manifest:
    params: ConsortiumParams
    requests: tuple[MembershipRequest, ...]  # sorted by account: the genesis order
    genesis: Genesis

    def institutions(self) -> list[dict[str, Any]]:
        """The table of who is who: what explorers and people use to put names on keys."""
        return [
            {
                "name": r.name,
                "account": r.account,
                "member": r.is_member,
                "grants": r.grants,
                "node_id": r.validator.node_id if r.validator else None,
                "node_public": r.validator.public if r.validator else None,
                "address": r.validator.address if r.validator else None,
            }
            for r in self.requests
        ]

    def to_plain(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "chain_id": self.params.chain_id,
            "time": self.params.time,
            "gov_threshold": self.params.gov_threshold,
            "params": self.params.params,
            "requests": [r.to_plain() for r in self.requests],
            "institutions": self.institutions(),
            "genesis_hash": self.genesis.hash,
        }


def assemble(
    requests: list[MembershipRequest], params: ConsortiumParams, *, min_validators: int = MIN_VALIDATORS
) -> Manifest:
    """The genesis and manifest for these requests; refuses a set that cannot form a safe consortium."""
    params.check()
    if not requests:
        raise CeremonyError("no membership requests")
    if len(requests) > MAX_REQUESTS:
        raise CeremonyError(f"{len(requests)} requests: at most {MAX_REQUESTS}")
    for r in requests:
        if r.chain_id != params.chain_id:
            raise CeremonyError(f"request of {r.name!r} is for chain {r.chain_id!r}, not {params.chain_id!r}")
    _refuse_duplicates(requests)
    ordered = sorted(requests, key=lambda r: r.account)
    validators = [r.validator.to_plain() for r in ordered if r.validator]
    if len(validators) < min_validators:
        raise CeremonyError(
            f"{len(validators)} validators: BFT needs n >= 3f+1, so tolerating even one faulty validator"
            " (f = 1) takes 4;"
            " with fewer, one crashed validator stops the chain and one malicious validator can break it"
        )
    members = [r.account for r in ordered if r.is_member]
    if not members:
        raise CeremonyError("no request asks for the member role: nobody could govern the consortium")
    doc: dict[str, Any] = {
        "chain_id": params.chain_id,
        "time": params.time,
        "validators": validators,
        "members": members,
        "roles": {r.account: r.grants for r in ordered if r.grants},
    }
    if params.gov_threshold is not None:
        doc["gov_threshold"] = params.gov_threshold
    if params.params is not None:
        doc["params"] = dict(params.params)
    try:
        genesis = Genesis.from_plain(doc)
    except GenesisError as e:
        raise CeremonyError(f"the requests make a bad genesis: {e}") from None
    return Manifest(params, tuple(ordered), genesis)


def _refuse_duplicates(requests: list[MembershipRequest]) -> None:
    """No two requests may share a name, account, node id, node key or address, and no account
    may be another's node key: each would let one institution pass for, or shadow, another."""
    seen: dict[tuple[str, str], str] = {}

    def claim(kind: str, value: str, who: str) -> None:
        if (kind, value) in seen:
            raise CeremonyError(f"{kind} {value!r} of {who!r} is already claimed by {seen[kind, value]!r}")
        seen[kind, value] = who

    for r in requests:
        claim("name", name_key(r.name), r.name)
        claim("key", r.account, r.name)
        if r.validator:
            claim("node_id", r.validator.node_id.lower(), r.name)
            claim("key", r.validator.public, r.name)
            claim("address", r.validator.address.lower(), r.name)


# -- verifying ------------------------------------------------------------------------------------


def load_manifest(obj: Any) -> Manifest:
    """A manifest checked in full: every request's signatures, and the genesis re-derived from
    them and the stated parameters (it must hash to the manifest's `genesis_hash`)."""
    if type(obj) is not dict or set(obj) != MANIFEST_FIELDS:
        raise CeremonyError(f"a manifest has exactly the fields {sorted(MANIFEST_FIELDS)}")
    if type(obj["version"]) is not int or obj["version"] != MANIFEST_VERSION:  # True == 1 in Python
        raise CeremonyError(f"manifest version {obj['version']!r}; this program reads version {MANIFEST_VERSION}")
    if type(obj["requests"]) is not list or len(obj["requests"]) > MAX_REQUESTS:
        raise CeremonyError(f"requests: a list of at most {MAX_REQUESTS} membership requests")
    requests = []
    for i, r in enumerate(obj["requests"]):
        try:
            requests.append(MembershipRequest.from_plain(r))
        except CeremonyError as e:
            raise CeremonyError(f"requests[{i}]: {e}") from None
    params = ConsortiumParams(obj["chain_id"], obj["time"], obj["gov_threshold"], obj["params"])
    # the coordinator may have allowed fewer than 4 validators; verify reports f, it does not veto
    manifest = assemble(requests, params, min_validators=1)
    if [r.to_plain() for r in manifest.requests] != obj["requests"]:
        raise CeremonyError("requests: not in genesis order (sorted by account)")
    if obj["institutions"] != manifest.institutions():
        raise CeremonyError("institutions: the table does not match the signed requests")
    if obj["genesis_hash"] != manifest.genesis.hash:
        raise CeremonyError(f"genesis_hash {obj['genesis_hash']!r} is not the hash of the genesis the requests make")
    return manifest


def verify_genesis(genesis: Genesis, manifest: Manifest, own: MembershipRequest | None = None) -> None:
    """Raise unless `genesis` is exactly what the manifest makes and holds `own` as it was signed."""
    if genesis.hash != manifest.genesis.hash:
        raise CeremonyError(
            f"the genesis (hash {genesis.hash}) is not the one the manifest's requests and parameters make"
            f" (hash {manifest.genesis.hash})"
        )
    if own is None:
        return
    if own.to_plain() not in [r.to_plain() for r in manifest.requests]:
        raise CeremonyError(
            f"your request ({own.name!r}, account {own.account}) is not in the manifest as you signed it"
        )
    where = f"your request ({own.name!r})"
    if own.is_member != (own.account in genesis.members):
        raise CeremonyError(f"{where}: the genesis {'lacks' if own.is_member else 'adds'} your member role")
    if [dict(g) for g in genesis.roles.get(own.account, ())] != own.grants:
        raise CeremonyError(f"{where}: the genesis grants your account other roles than you asked for")
    listed = genesis.validators.by_node_id.get(own.validator.node_id) if own.validator else None
    if own.validator != listed:
        raise CeremonyError(f"{where}: your validator entry in the genesis is not the one you asked for")


def request_hash(request: MembershipRequest) -> str:
    """A short fingerprint of a request, to read out over the phone."""
    return hash_value(request.to_plain())
