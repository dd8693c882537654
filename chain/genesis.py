"""The genesis document (docs/protocol.md, Genesis): load, validate, hash.

The genesis is the one thing every participant trusts: an auditor or a proof checker holds
nothing else. It is validated field by field, and a refusal names the field that is wrong.
`genesis_hash` is over the document exactly as given; defaults for omitted optional fields
(`gov_threshold`, individual `params`) are applied after hashing and never written back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from chain.crypto import is_account
from chain.encoding import EncodingError, hash_value, normalize
from chain.errors import ChainError
from chain.limits import MAX_BLOCK_BYTES_LIMIT
from chain.patterns import WholePattern
from chain.validators import ValidatorSet, ValidatorSetError

ROLES = frozenset({"member", "issuer", "regulator", "auditor"})
CLASS_PATTERN = WholePattern(r"^[a-z][a-z0-9_]{0,31}$")
CHAIN_ID_PATTERN = WholePattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REQUIRED = frozenset({"chain_id", "time", "validators", "members", "roles"})
OPTIONAL = frozenset({"gov_threshold", "params"})


class GenesisError(ChainError, ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"genesis.{field}: {message}")
        self.field = field



@dataclass(frozen=True)
class Params:
    """Consensus and block limits; every validator must use the same, so they live in genesis."""

    max_block_txs: int = 2000
    max_block_bytes: int = 8 * 1024 * 1024
    view_timeout_ms: int = 2000
    max_view_timeout_ms: int = 30000
    batch_delay_ms: int = 20

    @classmethod
    def from_plain(cls, obj: Any) -> Params:
        if obj is None:
            return cls()
        if type(obj) is not dict:
            raise GenesisError("params", "must be an object")
        known = {f.name for f in fields(cls)}
        for k, v in obj.items():
            if k not in known:
                raise GenesisError(f"params.{k}", f"unknown parameter; known: {', '.join(sorted(known))}")
            if type(v) is not int or v <= 0:
                raise GenesisError(f"params.{k}", "must be a positive integer")
        p = cls(**obj)
        if p.max_block_bytes > MAX_BLOCK_BYTES_LIMIT:
            raise GenesisError(
                "params.max_block_bytes", f"must be at most {MAX_BLOCK_BYTES_LIMIT} (a block must fit in a peer frame)"
            )
        if p.max_view_timeout_ms < p.view_timeout_ms:
            raise GenesisError("params.max_view_timeout_ms", "must be at least view_timeout_ms")
        return p


class Grant(TypedDict):
    """A role grant as the genesis and the role records hold it: `classes` for issuers only."""

    role: str
    classes: NotRequired[list[str]]


def parse_grant(obj: Any, where: str) -> Grant:
    """A role grant: {"role": r} or, for issuers, {"role": "issuer", "classes": [...]}."""
    if type(obj) is not dict or obj.get("role") not in ROLES:
        raise GenesisError(where, f'a grant is {{"role": one of {sorted(ROLES)}}}')
    if obj["role"] == "issuer":
        if set(obj) != {"role", "classes"}:
            raise GenesisError(where, 'an issuer grant is {"role": "issuer", "classes": [...]}')
        classes = obj["classes"]
        if type(classes) is not list or not classes or not all(CLASS_PATTERN.matches(c) for c in classes):
            raise GenesisError(f"{where}.classes", "a non-empty list of class names like 'warehouse_receipt'")
        if len(set(classes)) != len(classes):
            raise GenesisError(f"{where}.classes", "a class is listed twice")
        return {"role": "issuer", "classes": sorted(classes)}
    if set(obj) != {"role"}:
        raise GenesisError(where, f"a {obj['role']} grant has only the field 'role'")
    return {"role": obj["role"]}


@dataclass(frozen=True)
class Genesis:
    doc: dict[str, Any]
    chain_id: str
    time: int
    validators: ValidatorSet
    members: tuple[str, ...]
    roles: dict[str, tuple[Grant, ...]]
    gov_threshold: int
    params: Params

    @cached_property
    def hash(self) -> str:
        return hash_value(self.doc)

    @classmethod
    def from_plain(cls, doc: Any) -> Genesis:
        if type(doc) is not dict:
            raise GenesisError("$", "the genesis is a JSON object")
        try:
            doc = normalize(doc)
        except EncodingError as e:
            raise GenesisError("$", f"not a plain value: {e}") from None
        missing = REQUIRED - doc.keys()
        if missing:
            raise GenesisError(sorted(missing)[0], "required field is missing")
        unknown = doc.keys() - REQUIRED - OPTIONAL
        if unknown:
            raise GenesisError(sorted(unknown)[0], "unknown field")
        if not CHAIN_ID_PATTERN.matches(doc["chain_id"]):
            raise GenesisError("chain_id", "1-64 of letters, digits, '_', '.', '-'")
        if type(doc["time"]) is not int or doc["time"] < 0:
            raise GenesisError("time", "milliseconds since the epoch, a non-negative integer")
        if type(doc["validators"]) is not list or not doc["validators"]:
            raise GenesisError("validators", "a non-empty list")
        try:
            validators = ValidatorSet.from_plain(doc["validators"])
        except ValidatorSetError as e:
            raise GenesisError("validators", str(e)) from None
        members = doc["members"]
        if type(members) is not list or not members:
            raise GenesisError("members", "a non-empty list of accounts")
        for i, m in enumerate(members):
            if not is_account(m):
                raise GenesisError(f"members[{i}]", "an account is 64 lowercase hex characters")
        if len(set(members)) != len(members):
            raise GenesisError("members", "an account is listed twice")
        if type(doc["roles"]) is not dict:
            raise GenesisError("roles", "an object: account -> list of grants")
        roles: dict[str, tuple[Grant, ...]] = {}
        for account, grants in doc["roles"].items():
            if not is_account(account):
                raise GenesisError(f"roles.{account}", "keys are accounts (64 lowercase hex characters)")
            if type(grants) is not list:
                raise GenesisError(f"roles.{account}", "a list of grants")
            roles[account] = tuple(parse_grant(g, f"roles.{account}[{i}]") for i, g in enumerate(grants))
        threshold = doc.get("gov_threshold", len(members) // 2 + 1)
        if type(threshold) is not int or not 1 <= threshold <= len(members):
            raise GenesisError("gov_threshold", f"an integer from 1 to the number of members ({len(members)})")
        return cls(
            doc=doc,
            chain_id=doc["chain_id"],
            time=doc["time"],
            validators=validators,
            members=tuple(members),
            roles=roles,
            gov_threshold=threshold,
            params=Params.from_plain(doc.get("params")),
        )

    @classmethod
    def load(cls, path: str | Path) -> Genesis:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise GenesisError("$", f"cannot read {path}: {e.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenesisError("$", f"{path} is not JSON: {e}") from None
        return cls.from_plain(doc)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.doc, indent=2, sort_keys=True) + "\n")
