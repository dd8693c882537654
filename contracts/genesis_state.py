"""The state at height 0, derived from the genesis document alone."""

from __future__ import annotations

from chain.encoding import Value
from chain.genesis import Genesis, Grant
from contracts.roles import holds, merge_grants
from contracts.state import GOV_KEY, VALIDATORS_KEY, GovConfig, roles_key, standing_key


def genesis_writes(genesis: Genesis) -> dict[str, Value]:
    """Roles (every listed member gets the member role, plus its genesis grants), their holders'
    standing, validators, gov.

    The threshold is the genesis `gov_threshold` if the document states one; left out, it is
    None: a majority of whoever the members are at the time (not frozen at the genesis count).
    """
    grants: dict[str, list[Grant]] = {m: [{"role": "member"}] for m in genesis.members}
    for account, extra in genesis.roles.items():
        grants[account] = [*grants.get(account, []), *extra]
    writes: dict[str, Value] = {}
    members = 0
    for account in sorted(grants):
        merged = merge_grants(grants[account])
        if merged:
            writes[roles_key(account)] = merged
            writes[standing_key(account)] = 0  # every genesis grant gives standing from the start
        members += holds(merged, "member")
    writes[VALIDATORS_KEY] = genesis.validators.to_plain()
    writes[GOV_KEY] = GovConfig(genesis.doc.get("gov_threshold"), members).to_plain()
    return writes
