"""Write tests/vectors/: signed txs, commit votes and certificates from fixed seeds.

For clients and auditors written in other languages (docs/protocol.md states the formats):

- `tx_vectors.json`: per tx the seed, the body, its canonical msgpack (hex), the tx_id and the
  signature.
- `commit_vectors.json`: commit votes (the signed bytes for a chain_id, height, view and block
  hash, and the signature made with a seed key), one whole block header with its block_hash, a
  valid certificate for it by a 4-validator set, and certificates that must be refused, each
  saying why (one of them mixes commits cast in two views).

`tests/unit/chain/test_vectors.py` checks that the code still produces them byte for byte, so the
files are a promise: regenerate them only when a format in docs/protocol.md changes, and bump
that format's version when you do.

    python scripts/gen_vectors.py            # rewrite the files
    python scripts/gen_vectors.py --check    # exit 1 if a file differs from what the code makes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chain.block import Certificate, Header, commit_message, sign_commit
from chain.crypto import Domain, KeyPair
from chain.encoding import H, canonical
from chain.merkle import EMPTY_ROOT, tx_root
from chain.tx import sign_tx
from chain.validators import ValidatorSet

DIR = Path(__file__).resolve().parent.parent / "tests" / "vectors"
CHAIN_ID = "titlechain-vectors"


def seed_of(label: str) -> bytes:
    return H(b"titlechain-vector/" + label.encode())


CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "issuer",
        "asset.register",
        {
            "asset_id": "WR-2026-000001",
            "class": "warehouse_receipt",
            "owner": KeyPair.from_seed(seed_of("owner")).public,
            "doc_hash": H(b"receipt scan WR-2026-000001").hex(),
            "meta": {"commodity": "copper cathode", "tonnes": "25", "warehouse": "Shanghai Bonded No. 3"},
        },
        120,
        "00112233445566778899aabbccddeeff",
    ),
    ("owner", "asset.transfer", {"asset_id": "WR-2026-000001", "to": KeyPair.from_seed(seed_of("bank")).public}, 10_000, "01"),
    (
        "owner",
        "asset.pledge",
        {"asset_id": "WR-2026-000001", "pledgee": KeyPair.from_seed(seed_of("bank")).public, "terms_hash": H(b"loan terms").hex()},
        42,
        "nonce-with-ünïcode",
    ),
    ("member", "gov.propose", {"action": "grant_role", "params": {"account": KeyPair.from_seed(seed_of("owner")).public, "role": "auditor"}}, 7, "a"),
]


def build_txs() -> dict[str, Any]:
    txs = []
    for signer, op, args, expires, nonce in CASES:
        key = KeyPair.from_seed(seed_of(signer))
        tx = sign_tx(key, chain_id=CHAIN_ID, op=op, args=args, expires=expires, nonce=nonce)
        txs.append(
            {
                "seed": seed_of(signer).hex(),
                "public": key.public,
                "tx": tx.to_plain(),
                "canonical_body_hex": tx.body_bytes.hex(),
                "signing_prefix": Domain.TX.value.decode(),
                "tx_id": tx.tx_id,
                "sig": tx.sig,
            }
        )
    return {"about": "titlechain transaction vectors (docs/protocol.md); seeds are Ed25519 32-byte seeds", "txs": txs}


def commit_vote(label: str, height: int, view: int, block_hash: str) -> dict[str, Any]:
    key = KeyPair.from_seed(seed_of(label))
    message = commit_message(CHAIN_ID, height, view, block_hash)
    return {
        "seed": seed_of(label).hex(),
        "public": key.public,
        "vote": {"chain_id": CHAIN_ID, "height": height, "view": view, "block_hash": block_hash},
        "canonical_vote_hex": message.hex(),
        "signing_prefix": Domain.COMMIT.value.decode(),
        "signed_bytes_hex": (Domain.COMMIT.value + message).hex(),
        "sig": sign_commit(key, CHAIN_ID, height, view, block_hash),
    }


VALIDATOR_LABELS = [f"validator-{i}" for i in range(4)]


def vector_validators() -> ValidatorSet:
    return ValidatorSet.from_plain(
        [
            {"node_id": f"v{i}", "public": KeyPair.from_seed(seed_of(label)).public, "address": f"10.0.0.{i + 1}:26600"}
            for i, label in enumerate(VALIDATOR_LABELS)
        ]
    )


def vector_header(vset: ValidatorSet) -> Header:
    """Height 7, proposed in view 1 and (after a view change) committed in view 2."""
    ids = [H(b"tx one").hex(), H(b"tx two").hex()]
    return Header(
        chain_id=CHAIN_ID,
        height=7,
        prev_hash=H(b"block 6").hex(),
        tx_root=tx_root(ids),
        state_root=H(b"state after block 7").hex(),
        receipts_root=EMPTY_ROOT,
        validators_hash=vset.hash,
        next_validators_hash=vset.hash,
        proposer=vset.primary(1).public,
        view=1,
        time=1_767_225_600_000,
    )


def certificate(header: Header, view: int, signers: list[tuple[str, int]]) -> dict[str, Any]:
    """A certificate naming `view`, with each (label, view it was signed in) signature."""
    keys = [(KeyPair.from_seed(seed_of(label)), signed_in) for label, signed_in in signers]
    sigs = {k.public: sign_commit(k, CHAIN_ID, header.height, signed_in, header.block_hash) for k, signed_in in keys}
    return Certificate.build(header.height, view, header.block_hash, sigs).to_plain()


def build_commits() -> dict[str, Any]:
    vset = vector_validators()
    header = vector_header(vset)
    v0, v1, v2, v3 = VALIDATOR_LABELS
    bad = [
        ("signatures cast in views 1 and 2 do not combine: 2 of them verify for view 2, a quorum is 3",
         certificate(header, 2, [(v0, 1), (v2, 2), (v3, 2)])),
        ("the same signatures under the view they were not cast in: none verifies",
         certificate(header, 1, [(v0, 2), (v2, 2), (v3, 2)])),
        ("2 signatures, a quorum of 4 validators is 3", certificate(header, 2, [(v0, 2), (v2, 2)])),
    ]
    return {
        "about": (
            "titlechain commit vectors (docs/protocol.md): commit votes, a block header and its hash, and "
            "certificates by the 4 validators below (seeds are Ed25519 32-byte seeds; quorum 3)"
        ),
        "commit_votes": [commit_vote("validator", 5, 0, H(b"a block").hex()),
                         commit_vote("validator", 5, 3, H(b"a block").hex())],
        "validators": vset.to_plain(),
        "validator_seeds": [seed_of(label).hex() for label in VALIDATOR_LABELS],
        "validators_hash": vset.hash,
        "quorum": vset.quorum,
        "header": header.to_plain(),
        "canonical_header_hex": canonical(header.to_plain()).hex(),
        "block_hash": header.block_hash,
        "certificate": certificate(header, 2, [(v0, 2), (v1, 2), (v3, 2)]),
        "invalid_certificates": [{"why": why, "certificate": cert} for why, cert in bad],
    }


FILES = {"tx_vectors.json": build_txs, "commit_vectors.json": build_commits}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    a = parser.parse_args()
    differ = []
    for name, build in FILES.items():
        path, text = DIR / name, render(build)
        if a.check:
            if not (path.exists() and path.read_text(encoding="utf-8") == text):
                differ.append(name)
            continue
        DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if a.check:
        print(f"{', '.join(differ)} in {DIR} differ from what the code produces" if differ else "vectors match")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
