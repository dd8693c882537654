"""A deterministic in-memory consortium: validator, member, issuer, regulator, auditor and user
keys derived from fixed labels, and its genesis. For the simulator, the benchmarks and the tests,
which need the same consortium on every run without files or a key ceremony.

Never for a real consortium: every key here is derived from a public label, so anyone can
recompute it. A real one comes from `titlechain init` (node/devnet/provision.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.crypto import KeyPair
from chain.encoding import H
from chain.genesis import Genesis

DEVNET_PEER_PORT = 27000  # node i's genesis address is 127.0.0.1:DEVNET_PEER_PORT+i; nothing dials it


def seeded_key(label: str) -> KeyPair:
    """The key derived from `label`: the same on every run, and known to everyone."""
    return KeyPair.from_seed(H(b"titlechain-test-key/" + label.encode()))


@dataclass
class Consortium:
    """The keys of a devnet and its genesis (`make_consortium`)."""

    genesis: Genesis
    validator_keys: list[KeyPair]
    members: list[KeyPair]
    issuer: KeyPair
    regulator: KeyPair
    auditor: KeyPair
    users: list[KeyPair]


def make_consortium(n: int = 4, chain_id: str = "test-chain", params: dict[str, Any] | None = None) -> Consortium:
    """n validators and n members (majority threshold), one issuer of every class, a regulator, an
    auditor and eight users with no role; `params` go into the genesis as they are."""
    vkeys = [seeded_key(f"validator-{i}") for i in range(n)]
    members = [seeded_key(f"member-{i}") for i in range(n)]
    issuer, regulator, auditor = seeded_key("issuer"), seeded_key("regulator"), seeded_key("auditor")
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "time": 1_700_000_000_000,
        "validators": [
            {"node_id": f"v{i}", "public": k.public, "address": f"127.0.0.1:{DEVNET_PEER_PORT + i}"} for i, k in enumerate(vkeys)
        ],
        "members": [m.public for m in members],
        "roles": {
            issuer.public: [{"role": "issuer", "classes": ["warehouse_receipt", "property_deed", "receivable"]}],
            regulator.public: [{"role": "regulator"}],
            auditor.public: [{"role": "auditor"}],
        },
        "gov_threshold": n // 2 + 1,
    }
    if params:
        doc["params"] = params
    users = [seeded_key(f"user-{i}") for i in range(8)]
    return Consortium(Genesis.from_plain(doc), vkeys, members, issuer, regulator, auditor, users)
