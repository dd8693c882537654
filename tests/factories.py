"""Deterministic test consortia: keys from fixed seeds, a genesis, signed blocks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chain.block import Block, Certificate, Header, sign_commit
from chain.crypto import KeyPair
from chain.encoding import H
from chain.genesis import Genesis
from chain.merkle import EMPTY_ROOT, tx_root
from chain.tx import Tx


def seeded_key(label: str) -> KeyPair:
    return KeyPair.from_seed(H(b"titlechain-test-key/" + label.encode()))


@dataclass
class Consortium:
    genesis: Genesis
    validator_keys: list[KeyPair]
    members: list[KeyPair]
    issuer: KeyPair
    regulator: KeyPair
    auditor: KeyPair
    users: list[KeyPair]


def make_consortium(n: int = 4, chain_id: str = "test-chain", params: dict[str, Any] | None = None) -> Consortium:
    vkeys = [seeded_key(f"validator-{i}") for i in range(n)]
    members = [seeded_key(f"member-{i}") for i in range(n)]
    issuer, regulator, auditor = seeded_key("issuer"), seeded_key("regulator"), seeded_key("auditor")
    doc: dict[str, Any] = {
        "chain_id": chain_id,
        "time": 1_700_000_000_000,
        "validators": [
            {"node_id": f"v{i}", "public": k.public, "address": f"127.0.0.1:{27000 + i}"} for i, k in enumerate(vkeys)
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


def make_block(
    c: Consortium, height: int, prev_hash: str, txs: list[Tx], state_root: str = EMPTY_ROOT, view: int = 0
) -> tuple[Block, Certificate]:
    """A block and a certificate signed by a quorum; roots other than tx_root are given."""
    vset = c.genesis.validators
    header = Header(
        chain_id=c.genesis.chain_id,
        height=height,
        prev_hash=prev_hash,
        tx_root=tx_root([t.tx_id for t in txs]),
        state_root=state_root,
        receipts_root=EMPTY_ROOT,
        validators_hash=vset.hash,
        next_validators_hash=vset.hash,
        proposer=vset.primary(view).public,
        view=view,
        time=c.genesis.time + height,
    )
    block = Block(header, tuple(txs))
    keys = c.validator_keys[: vset.quorum]
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, view, block.block_hash) for k in keys}
    return block, Certificate.build(height, view, block.block_hash, sigs)


def mix_views(cert: Certificate, keys: Iterable[KeyPair], chain_id: str, other_view: int) -> Certificate:
    """cert's block with every signer but the first re-committing in `other_view`, naming that view.

    What a Byzantine party assembles from genuine commits for one block cast in two views: a
    quorum of signatures in all, but fewer than a quorum in any one view.
    """
    by_public = {k.public: k for k in keys}
    (first, first_sig), *rest = cert.signatures
    sigs = {first: first_sig}
    sigs |= {v: sign_commit(by_public[v], chain_id, cert.height, other_view, cert.block_hash) for v, _ in rest}
    return Certificate.build(cert.height, other_view, cert.block_hash, sigs)
