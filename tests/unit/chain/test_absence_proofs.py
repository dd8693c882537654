"""Proofs of absence: an id no asset holds is provably absent as of a height, from the genesis alone.

Each way a proof can be altered is tried systematically on real proofs of both absence shapes (the
key's path ends in an empty subtree, or in another key's leaf) across a validator-set change: every
value, every sibling hash, every field removed or added, every list entry dropped or repeated.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factories import mix_views, seeded_key
from ledger_fixtures import LedgerChain, build_story_across_a_set_change
from ledger_node import LedgerNode, serve_in_thread

from chain import smt
from chain.block import Certificate
from chain.encoding import H
from chain.proofcheck import ASSET_ID_RE, PROOF_VERSION, verify_ownership_proof
from contracts.args import ASSET_ID_PATTERN
from contracts.proofs import build_ownership_proof
from contracts.state import asset_key
from node.sdk.client import Client, RpcError

GHOST = "WR-GHOST"  # named only by rejected txs, in the head block


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerChain]:
    ch = build_story_across_a_set_change(tmp_path_factory.mktemp("absence") / "node")
    u = ch.c.users
    # a user registers (not an issuer) and another moves what does not exist: both rejected, committed
    ch.block([ch.sign(u[0], "asset.register", {**ch.register(GHOST, u[0]).args}), ch.transfer(GHOST, u[1], u[2])])
    yield ch
    ch.close()


def _ends(chain: LedgerChain, asset_id: str) -> str:
    """Where asset_id's path ends under the head's root: "empty", "other" (another key's leaf), "own"."""
    store = chain.ledger.store
    proof = smt.prove(smt.root_at(store.get, store.height), asset_key(asset_id).encode(), store.get)
    if proof.leaf is None:
        return "empty"
    return "own" if proof.leaf[0] == H(asset_key(asset_id).encode()) else "other"


@pytest.fixture(scope="module")
def absent_ids(chain: LedgerChain) -> dict[str, str]:
    """An unregistered id for each absence shape, found by trying ids in a fixed order."""
    found: dict[str, str] = {}
    for i in range(200):
        found.setdefault(_ends(chain, f"NO-SUCH-{i}"), f"NO-SUCH-{i}")
        if {"empty", "other"} <= set(found):
            return found
    raise AssertionError(f"200 ids gave only the shapes {sorted(found)}")


@pytest.fixture(scope="module", params=["empty", "other"])
def absence(request: pytest.FixtureRequest, chain: LedgerChain, absent_ids: dict[str, str]) -> dict[str, Any]:
    proof = build_ownership_proof(chain.ledger.store, absent_ids[request.param])
    assert (proof["state_proof"]["leaf"] is None) == (request.param == "empty")
    return json.loads(json.dumps(proof))  # exactly what a file holds


def _fails(proof: dict[str, Any], chain: LedgerChain) -> str:
    result = verify_ownership_proof(proof, chain.c.genesis)
    assert not result.ok
    return result.reason


def test_pattern_agrees_with_contracts() -> None:
    assert ASSET_ID_RE == ASSET_ID_PATTERN.pattern


def test_an_absence_proof_verifies_at_the_head_across_a_set_change(chain: LedgerChain, absence: dict[str, Any]) -> None:
    assert absence["version"] == PROOF_VERSION and absence["claim"] == "absence" and absence["asset"] is None
    assert len(absence["validator_changes"]) == 1 and absence["state_proof"]["levels"]
    result = verify_ownership_proof(absence, chain.c.genesis)
    assert result.ok, result.reason
    assert (result.absent, result.asset_id, result.height) == (True, absence["asset_id"], chain.ledger.height)


def test_an_id_named_only_by_rejected_txs_is_absent(chain: LedgerChain) -> None:
    head = chain.ledger.store.get_block(chain.ledger.height)
    assert [t.args["asset_id"] for t in head.txs] == [GHOST, GHOST]
    receipts = chain.ledger.store.get_receipts(chain.ledger.height)
    assert [(r["status"], r["error"]["code"]) for r in receipts] == [
        ("rejected", "not_authorized"), ("rejected", "asset_not_found"),
    ]
    proof = build_ownership_proof(chain.ledger.store, GHOST)
    assert proof["claim"] == "absence"
    assert verify_ownership_proof(proof, chain.c.genesis).absent


def test_a_redeemed_asset_is_present_and_has_no_absence_proof(chain: LedgerChain, absence: dict[str, Any]) -> None:
    proof = build_ownership_proof(chain.ledger.store, "WR-3")
    result = verify_ownership_proof(proof, chain.c.genesis)
    assert result.ok and result.asset is not None and result.asset["status"] == "redeemed"
    # its own path, claimed as absence, shows its leaf: refused
    as_absence = {**proof, "claim": "absence", "asset": None}
    assert "state_proof: does not show 'asset/WR-3' absent" in _fails(as_absence, chain)
    # and an absence proof of another id relabelled to it is refused too
    assert "state_proof: does not show 'asset/WR-3' absent" in _fails({**absence, "asset_id": "WR-3"}, chain)


@pytest.mark.parametrize("asset_id", ["WR-1", "WR-2", "WR-3"])
def test_an_absence_proof_relabelled_to_a_registered_asset_fails(
    chain: LedgerChain, absence: dict[str, Any], asset_id: str
) -> None:
    assert f"does not show 'asset/{asset_id}' absent" in _fails({**absence, "asset_id": asset_id}, chain)


def test_an_ownership_proof_turned_into_an_absence_claim_fails(chain: LedgerChain, absence: dict[str, Any]) -> None:
    owned = json.loads(json.dumps(build_ownership_proof(chain.ledger.store, "WR-1")))
    assert "asset: an absence proof carries null" in _fails({**owned, "claim": "absence"}, chain)
    assert "does not show 'asset/WR-1' absent" in _fails({**owned, "claim": "absence", "asset": None}, chain)
    # the absence shape of the real tree borrowed for WR-1: another key's path, folded along WR-1's bits
    forged = {**owned, "claim": "absence", "asset": None, "state_proof": absence["state_proof"]}
    assert "does not show 'asset/WR-1' absent" in _fails(forged, chain)
    # and the reverse: an absence proof claiming ownership of a state it does not prove
    state = {**owned["asset"], "asset_id": absence["asset_id"]}
    assert "asset/state_proof" in _fails({**absence, "claim": "ownership", "asset": state}, chain)
    assert "asset: an ownership proof carries" in _fails({**absence, "claim": "ownership"}, chain)


@pytest.mark.parametrize("bad", ["WR-1\n", "no/such", "", " WR-1", "x" * 129, 7, None])
def test_an_id_the_contracts_would_refuse_is_no_absence(chain: LedgerChain, bad: Any) -> None:
    """Such an id is absent, trivially; a proof of that would only lend weight to a look-alike."""
    honest = build_ownership_proof(chain.ledger.store, bad) if type(bad) is str and bad else None
    for proof in (honest, {**build_ownership_proof(chain.ledger.store, "NO-SUCH-0"), "asset_id": bad}):
        if proof is not None:
            assert _fails(json.loads(json.dumps(proof)), chain).startswith("asset_id: not an asset id")


@pytest.mark.parametrize("where", ["head", "validator change"])
def test_a_certificate_mixing_views_fails(chain: LedgerChain, absence: dict[str, Any], where: str) -> None:
    keys = [*chain.c.validator_keys, seeded_key("validator-new")]
    p = copy.deepcopy(absence)
    target, field = (p, "") if where == "head" else (p["validator_changes"][0], "validator_changes[0].")
    cert = Certificate.from_plain(target["certificate"])
    target["certificate"] = mix_views(cert, keys, chain.c.genesis.chain_id, cert.view + 2).to_plain()
    reason = _fails(p, chain)
    assert reason.startswith(f"{field}certificate:") and f"in view {cert.view + 2}" in reason


def test_another_version_is_refused_naming_both(chain: LedgerChain, absence: dict[str, Any]) -> None:
    old = {k: v for k, v in absence.items() if k != "claim"}  # version 2 had no claim
    old["version"] = 2
    assert f"the proof is version 2, this verifier reads version {PROOF_VERSION}" in _fails(old, chain)


def test_a_proof_stays_true_as_of_its_height(tmp_path: Path) -> None:
    """Absence is as of a height: an id registered later was absent before, and its old proof says
    so (with its height), while a fresh one proves ownership. A relying party checks the height."""
    ch = LedgerChain(tmp_path / "n")
    try:
        u = ch.c.users
        ch.block([ch.register("WR-1", u[0])])
        before = build_ownership_proof(ch.ledger.store, "WR-LATE")
        ch.block([ch.register("WR-LATE", u[1])])
        old = verify_ownership_proof(before, ch.c.genesis)
        new = verify_ownership_proof(build_ownership_proof(ch.ledger.store, "WR-LATE"), ch.c.genesis)
        assert (old.absent, old.height) == (True, 1)
        assert (new.ok, new.absent, new.owner, new.height) == (True, False, u[1].public, 2)
    finally:
        ch.close()


def test_the_sdk_fetches_both_claims_and_says_when_there_is_nothing_to_prove(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "n")
    try:
        with serve_in_thread(LedgerNode(ch)) as url, Client(url) as client:
            with pytest.raises(RpcError) as empty:
                client.proof("WR-1")
            assert (empty.value.status, empty.value.code) == (503, "not_ready")
            ch.block([ch.register("WR-1", ch.c.users[0])])
            owned, absent = client.proof("WR-1"), client.proof("WR-NEVER")
        assert (owned["claim"], absent["claim"], absent["asset"]) == ("ownership", "absence", None)
        assert verify_ownership_proof(owned, ch.c.genesis).owner == ch.c.users[0].public
        assert verify_ownership_proof(absent, ch.c.genesis).absent
    finally:
        ch.close()


# -- every byte that matters ------------------------------------------------------------------------


def _paths(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) of a plain value, containers included."""
    yield path, obj
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from _paths(obj[k], (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*path, i))


def _variants(value: Any) -> Iterator[tuple[str, Any]]:
    """Alterations of one value: each a different value of the kind an attacker could write."""
    if type(value) is str:
        hexy = value and all(c in "0123456789abcdef" for c in value)
        for i in sorted({0, len(value) // 2, len(value) - 1}) if value else ():
            alt = ("0" if value[i] != "0" else "1") if hexy else ("A" if value[i] != "A" else "B")
            yield f"char {i}", value[:i] + alt + value[i + 1 :]
        yield "appended", value + ("0" if hexy else "x")
    elif type(value) is int:
        yield "plus one", value + 1
        yield "minus one", value - 1
    elif value is None:
        yield "an object", {"key_hash": "00" * 32, "value_hash": "00" * 32}
    elif type(value) is dict:
        for k in sorted(value):
            yield f"without {k}", {kk: vv for kk, vv in value.items() if kk != k}
        yield "with an extra field", {**value, "extra": 1}
    elif type(value) is list:
        for i in range(len(value)):
            yield f"without [{i}]", value[:i] + value[i + 1 :]
        if value:
            yield "last repeated", [*value, value[-1]]
            yield "reversed", value[::-1] if len(value) > 1 else [*value, value[0]]


def _set(proof: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    p = copy.deepcopy(proof)
    if not path:
        return value
    target = p
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return p


def _harmless(chain: LedgerChain, path: tuple, what: str, altered: dict[str, Any]) -> bool:
    """The two alterations that may verify, because what they then prove is still true:
    - the certificate's signatures in another order: the same set of commits (order is no part
      of a certificate's validity, docs/protocol.md);
    - an absence proof relabelled to another id whose path runs through the same empty subtree
      (or to the same other key's leaf): that id is absent as well, and the proof now says so."""
    if path and path[-1] == "signatures" and what == "reversed":
        return True
    return path == ("asset_id",) and _ends(chain, altered["asset_id"]) != "own"


def _unnoticed(chain: LedgerChain, proof: dict[str, Any]) -> tuple[int, list[str]]:
    """(alterations tried, those that verified though what they prove is no longer true)."""
    assert verify_ownership_proof(proof, chain.c.genesis).ok
    tried, kept = 0, []
    for path, value in _paths(proof):
        for what, altered_value in _variants(value):
            tried += 1
            altered = _set(proof, path, altered_value)
            if verify_ownership_proof(altered, chain.c.genesis).ok and not _harmless(chain, path, what, altered):
                kept.append(f"{'.'.join(map(str, path)) or 'proof'}: {what}")
    return tried, kept


def test_every_alteration_of_an_absence_proof_fails(chain: LedgerChain, absence: dict[str, Any]) -> None:
    tried, kept = _unnoticed(chain, absence)
    assert not kept, f"{len(kept)} of {tried} alterations went unnoticed: {kept[:10]}"
    # every field, sibling hash, header field, signature and validator change was among them
    assert tried > 300, tried


def test_every_alteration_of_an_ownership_proof_fails(chain: LedgerChain) -> None:
    tried, kept = _unnoticed(chain, json.loads(json.dumps(build_ownership_proof(chain.ledger.store, "WR-1"))))
    assert not kept, f"{len(kept)} of {tried} alterations went unnoticed: {kept[:10]}"
    assert tried > 300, tried
