"""The published test vectors (tests/vectors/) still hold, checked from first principles."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import msgpack
import nacl.exceptions
import nacl.signing
import pytest

from chain.block import Certificate, CertificateError, Header
from chain.crypto import Domain, KeyPair, verify
from chain.tx import parse_tx
from chain.validators import ValidatorSet

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "tx_vectors.json").read_text(encoding="utf-8"))
COMMITS = json.loads((ROOT / "tests" / "vectors" / "commit_vectors.json").read_text(encoding="utf-8"))


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


COMMIT_PREFIX = b"titlechain/commit/v2\n"


def ed25519_ok(public: str, signed: bytes, sig: str) -> bool:
    """Verification straight through libsodium, not through chain.crypto."""
    try:
        nacl.signing.VerifyKey(bytes.fromhex(public)).verify(signed, bytes.fromhex(sig))
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def test_commit_vote_vectors_hold() -> None:
    votes = COMMITS["commit_votes"]
    assert len({v["vote"]["view"] for v in votes}) >= 2  # the view is signed: same block, other view, other bytes
    assert len({v["sig"] for v in votes}) == len(votes)
    for vec in votes:
        assert set(vec["vote"]) == {"chain_id", "height", "view", "block_hash"}
        assert sorted_msgpack(vec["vote"]).hex() == vec["canonical_vote_hex"]
        assert vec["signing_prefix"] == COMMIT_PREFIX.decode()
        signed = COMMIT_PREFIX + bytes.fromhex(vec["canonical_vote_hex"])
        assert signed.hex() == vec["signed_bytes_hex"]
        key = KeyPair.from_seed(bytes.fromhex(vec["seed"]))
        assert key.public == vec["public"]
        assert ed25519_ok(vec["public"], signed, vec["sig"])
        assert key.sign(Domain.COMMIT, bytes.fromhex(vec["canonical_vote_hex"])) == vec["sig"]


def test_header_vector_hashes_to_its_block_hash() -> None:
    header = COMMITS["header"]
    assert sorted_msgpack(header).hex() == COMMITS["canonical_header_hex"]
    assert hashlib.sha256(bytes.fromhex(COMMITS["canonical_header_hex"])).hexdigest() == COMMITS["block_hash"]
    assert hashlib.sha256(sorted_msgpack(COMMITS["validators"])).hexdigest() == COMMITS["validators_hash"]
    assert header["validators_hash"] == COMMITS["validators_hash"]
    assert Header.from_plain(header).block_hash == COMMITS["block_hash"]


def independently_valid(cert: dict, validators: list[dict], chain_id: str, height: int, block_hash: str) -> bool:
    """The certificate rule of docs/protocol.md, written again from the text."""
    n = len(validators)
    quorum = (n + (n - 1) // 3) // 2 + 1
    if set(cert) != {"height", "view", "block_hash", "signatures"}:
        return False
    if (cert["height"], cert["block_hash"]) != (height, block_hash):
        return False
    vote = {"chain_id": chain_id, "height": height, "view": cert["view"], "block_hash": block_hash}
    signed = COMMIT_PREFIX + sorted_msgpack(vote)
    members = {v["public"] for v in validators}
    signers = [s["validator"] for s in cert["signatures"]]
    if len(set(signers)) != len(signers) or not set(signers) <= members:
        return False
    return all(ed25519_ok(s["validator"], signed, s["sig"]) for s in cert["signatures"]) and len(signers) >= quorum


def test_certificate_vectors_hold_and_the_invalid_ones_fail() -> None:
    validators, header = COMMITS["validators"], COMMITS["header"]
    vset = ValidatorSet.from_plain(validators)
    assert vset.quorum == COMMITS["quorum"]
    for seed, v in zip(COMMITS["validator_seeds"], validators, strict=True):
        assert KeyPair.from_seed(bytes.fromhex(seed)).public == v["public"]
    args = (header["chain_id"], header["height"], COMMITS["block_hash"])
    cert = COMMITS["certificate"]
    assert cert["view"] != header["view"]  # committed in a later view than proposed: both are fine
    assert independently_valid(cert, validators, *args)
    Certificate.from_plain(cert).verify(args[0], args[1], args[2], vset)
    assert len(COMMITS["invalid_certificates"]) >= 3
    for bad in COMMITS["invalid_certificates"]:
        assert not independently_valid(bad["certificate"], validators, *args), bad["why"]
        with pytest.raises(CertificateError):
            Certificate.from_plain(bad["certificate"]).verify(args[0], args[1], args[2], vset)


def test_vector_files_are_what_the_code_produces() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_vectors.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
