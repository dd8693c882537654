"""The deterministic state machine of assets, roles and governance (docs/contracts.md).

Pure functions of (state view, tx, height): no clock, randomness, I/O or floats, and nothing
depends on the iteration order of untrusted dicts. See docs/contracts.md.
"""

from contracts.genesis_state import genesis_writes
from contracts.registry import OPS, execute, validate_args
from contracts.result import REJECTION_CODES, Rejection
from contracts.roles import OBSERVER_ROLES, observer_role_at
from contracts.state import (
    ASSET_PREFIX,
    GOV_KEY,
    VALIDATORS_KEY,
    MemoryView,
    StateView,
    asset_key,
    doc_key,
    proposal_key,
    read_asset,
    read_gov,
    read_proposal,
    read_roles,
    read_validator_set,
    roles_key,
)

__all__ = [
    "ASSET_PREFIX",
    "GOV_KEY",
    "OBSERVER_ROLES",
    "OPS",
    "REJECTION_CODES",
    "VALIDATORS_KEY",
    "MemoryView",
    "Rejection",
    "StateView",
    "asset_key",
    "doc_key",
    "execute",
    "genesis_writes",
    "observer_role_at",
    "proposal_key",
    "read_asset",
    "read_gov",
    "read_proposal",
    "read_roles",
    "read_validator_set",
    "roles_key",
    "validate_args",
]
