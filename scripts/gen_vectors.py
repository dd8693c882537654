"""Write tests/vectors/tx_vectors.json: signed txs from fixed seeds, for clients in other languages.

Each vector gives the seed, the body, its canonical msgpack (hex), the tx_id and the signature,
plus a commit-vote vector. `tests/unit/test_vectors.py` checks that the code still produces them
byte for byte, so the file is a promise: regenerate it only when SPEC changes.

    python scripts/gen_vectors.py            # rewrite the file
    python scripts/gen_vectors.py --check    # exit 1 if the file differs from what the code makes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from chain.block import sign_commit
from chain.crypto import Domain, KeyPair
from chain.encoding import H, canonical
from chain.tx import sign_tx

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "tx_vectors.json"


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


def build() -> dict[str, Any]:
    txs = []
    for signer, op, args, expires, nonce in CASES:
        key = KeyPair.from_seed(seed_of(signer))
        tx = sign_tx(key, chain_id="titlechain-vectors", op=op, args=args, expires=expires, nonce=nonce)
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
    validator = KeyPair.from_seed(seed_of("validator"))
    block_hash = H(b"a block").hex()
    commit = {
        "seed": seed_of("validator").hex(),
        "public": validator.public,
        "vote": {"chain_id": "titlechain-vectors", "height": 5, "block_hash": block_hash},
        "canonical_vote_hex": canonical({"chain_id": "titlechain-vectors", "height": 5, "block_hash": block_hash}).hex(),
        "signing_prefix": Domain.COMMIT.value.decode(),
        "sig": sign_commit(validator, "titlechain-vectors", 5, block_hash),
    }
    return {"about": "titlechain test vectors (SPEC §2-§5); seeds are Ed25519 32-byte seeds", "txs": txs, "commit_votes": [commit]}


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    a = parser.parse_args()
    text = render()
    if a.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("vectors match the code" if same else f"{OUT} differs from what the code produces")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
