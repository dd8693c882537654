"""The published test vectors (tests/vectors/) still hold, checked from first principles."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import msgpack

from chain.crypto import Domain, KeyPair, verify
from chain.tx import parse_tx

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "tx_vectors.json").read_text(encoding="utf-8"))


def sorted_msgpack(v: object) -> bytes:
    """An independent canonical encoder: keys sorted by UTF-8 bytes, msgpack's smallest forms."""

    def norm(x: object) -> object:
        if isinstance(x, dict):
            return {k: norm(x[k]) for k in sorted(x, key=lambda k: k.encode())}
        if isinstance(x, list):
            return [norm(i) for i in x]
        return x

    return msgpack.packb(norm(v), use_bin_type=True)


def test_tx_vectors_hold() -> None:
    assert len(VECTORS["txs"]) >= 3
    for vec in VECTORS["txs"]:
        body = vec["tx"]["body"]
        assert sorted_msgpack(body).hex() == vec["canonical_body_hex"]
        assert hashlib.sha256(bytes.fromhex(vec["canonical_body_hex"])).hexdigest() == vec["tx_id"]
        assert KeyPair.from_seed(bytes.fromhex(vec["seed"])).public == vec["public"] == body["signer"]
        assert vec["signing_prefix"] == "titlechain/tx/v1\n"
        assert verify(vec["public"], Domain.TX, bytes.fromhex(vec["canonical_body_hex"]), vec["sig"])
        tx = parse_tx(vec["tx"])
        assert (tx.tx_id, tx.sig) == (vec["tx_id"], vec["sig"])
        # Ed25519 is deterministic: signing again gives the published signature
        assert KeyPair.from_seed(bytes.fromhex(vec["seed"])).sign(Domain.TX, tx.body_bytes) == vec["sig"]


def test_commit_vote_vectors_hold() -> None:
    for vec in VECTORS["commit_votes"]:
        assert sorted_msgpack(vec["vote"]).hex() == vec["canonical_vote_hex"]
        assert vec["signing_prefix"] == "titlechain/commit/v1\n"
        assert verify(vec["public"], Domain.COMMIT, bytes.fromhex(vec["canonical_vote_hex"]), vec["sig"])


def test_vector_file_is_what_the_code_produces() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_vectors.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
