"""The contract state as seen by the contracts: a flat map of str keys to plain values.

Keys (every value is a plain value, chain.encoding):

    asset/<asset_id>   the asset, exactly the fields of docs/contracts.md; stays forever, redeemed or not
    doc/<doc_hash>     asset_id of the one non-redeemed asset holding this document hash
    role/<account>     the account's grants, one per role, sorted by role; absent if it has none
    standing/<account> height at which the account first held a role, owned an asset or held one
                       in pledge; never removed (contracts/standing.py: who may submit at all)
    proposal/<id>      a governance proposal (id = the tx_id that opened it)
    validators         the validator set, in chain.validators plain form (order = primary order)
    gov                {"threshold": int | None, "member_count": int}

The contracts only read through `StateView.get`; they never iterate the state, so nothing
depends on the order in which a store lists its keys. Counts that governance needs (members)
are kept as state of their own for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

from chain.encoding import Value
from chain.genesis import Grant
from chain.validators import ValidatorSet

ASSET_PREFIX = "asset/"
DOC_PREFIX = "doc/"
ROLE_PREFIX = "role/"
STANDING_PREFIX = "standing/"
PROPOSAL_PREFIX = "proposal/"
VALIDATORS_KEY = "validators"
GOV_KEY = "gov"

AssetStatus = Literal["active", "pledged", "frozen", "redeemed"]

# An asset record, exactly the fields of docs/contracts.md ("class" is a keyword, hence this form).
AssetState = TypedDict(
    "AssetState",
    {
        "asset_id": str,
        "class": str,
        "issuer": str,
        "owner": str,
        "status": AssetStatus,
        "doc_hash": str,
        "meta": dict[str, str],
        "pledgee": str | None,
        "registered_at": int,
        "updated_at": int,
        "version": int,
    },
)

Writes = dict[str, Value | None]  # state key -> new value; None deletes


class StateView(Protocol):
    def get(self, key: str) -> Value | None: ...


def asset_key(asset_id: str) -> str:
    return ASSET_PREFIX + asset_id


def doc_key(doc_hash: str) -> str:
    return DOC_PREFIX + doc_hash


def roles_key(account: str) -> str:
    return ROLE_PREFIX + account


def standing_key(account: str) -> str:
    return STANDING_PREFIX + account


def proposal_key(proposal_id: str) -> str:
    return PROPOSAL_PREFIX + proposal_id


class MemoryView:
    """A dict-backed StateView, optionally layered over another view (writes of earlier txs)."""

    def __init__(self, data: Mapping[str, Value] | None = None, base: StateView | None = None) -> None:
        self._data: dict[str, Value | None] = dict(data or {})
        self._base = base

    def get(self, key: str) -> Value | None:
        if key in self._data:
            return self._data[key]
        return self._base.get(key) if self._base is not None else None

    def apply(self, writes: Mapping[str, Value | None]) -> None:
        """Layer writes on top; a None hides the base's value (a deletion)."""
        self._data.update(writes)

    def items(self) -> dict[str, Value]:
        """The live keys of this layer alone (for tests and genesis, never for execution)."""
        return {k: v for k, v in self._data.items() if v is not None}


@dataclass(frozen=True)
class GovConfig:
    threshold: int | None  # None: a majority of the current members
    member_count: int

    @property
    def effective_threshold(self) -> int:
        """Approvals needed now. Capped by the member count so revocations never lock governance."""
        wanted = self.threshold if self.threshold is not None else self.member_count // 2 + 1
        return max(1, min(wanted, self.member_count))

    def to_plain(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "member_count": self.member_count}


def read_asset(view: StateView, asset_id: str) -> AssetState | None:
    asset: AssetState | None = view.get(asset_key(asset_id))  # only process_register writes these
    return asset


def read_roles(view: StateView, account: str) -> list[Grant]:
    grants: list[Grant] = view.get(roles_key(account)) or []  # only contracts.roles builds these
    return grants


def read_proposal(view: StateView, proposal_id: str) -> dict[str, Any] | None:
    return view.get(proposal_key(proposal_id))


def read_validator_set(view: StateView) -> ValidatorSet:
    plain = view.get(VALIDATORS_KEY)
    if plain is None:
        raise LookupError("the state holds no validator set (genesis state not written?)")
    return ValidatorSet.from_plain(plain)


def read_gov(view: StateView) -> GovConfig:
    plain = view.get(GOV_KEY)
    if plain is None:
        raise LookupError("the state holds no governance config (genesis state not written?)")
    return GovConfig(threshold=plain["threshold"], member_count=plain["member_count"])
