"""What the contracts keep beside the state tree for a state imported from a snapshot.

A state-synced store (chain/store_sync.py) receives the state as tree leaves (key, value); the
apply path would have kept, for each, its `s/` record and, for an asset, the owner index `o/`,
and one `v/` record per validator set. These rules rebuild exactly those records, so a synced
store holds what a replayed one holds at the same height (bar the history below the base), and
the audit from the base (chain/audit_base.py) recomputes them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chain.encoding import canonical
from chain.genesis import Genesis
from chain.snapshot import SnapshotError
from chain.sync_anchor import ValidatorChange
from contracts.apply import STATE_PREFIX, owner_key, unpack, valset_key
from contracts.state import ASSET_PREFIX


class ContractBaseRules:
    """chain.audit_base.BaseRules for the contracts' store layout (contracts/apply.py)."""

    def leaf_writes(self, key: bytes, value: bytes) -> Mapping[bytes, bytes]:
        writes = {STATE_PREFIX + key: value}
        if key.startswith(ASSET_PREFIX.encode()):
            asset_id = key[len(ASSET_PREFIX) :].decode()
            try:
                owner = unpack(value)["owner"]
            except (ValueError, TypeError, KeyError) as e:
                # certified state the contracts wrote cannot fail this: the chain itself is damaged
                raise SnapshotError(f"the certified state holds an asset {asset_id!r} without an owner: {e}") from None
            writes[owner_key(owner, asset_id)] = b""
        return writes

    def valset_writes(self, genesis: Genesis, changes: Sequence[ValidatorChange]) -> Mapping[bytes, bytes]:
        """v/1 for the genesis set and v/<h+1> for the set each change at height h made."""
        writes = {valset_key(1): canonical(genesis.validators.to_plain())}
        for change in changes:
            writes[valset_key(change.header.height + 1)] = canonical(change.validators.to_plain())
        return writes


RULES = ContractBaseRules()
