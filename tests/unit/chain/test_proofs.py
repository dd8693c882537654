"""Ownership proofs: verify with only the genesis, across validator-set changes; any altered field fails."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from factories import mix_views, seeded_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_fixtures import LedgerChain, build_story_across_a_set_change

from chain.block import Certificate
from chain.proofcheck import ASSET_STATE_PREFIX, PROOF_VERSION, verify_ownership_proof
from contracts.proofs import ProofError, build_ownership_proof
from contracts.state import ASSET_PREFIX


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> LedgerChain:
    ch = build_story_across_a_set_change(tmp_path_factory.mktemp("proofs") / "node")
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def proof(chain: LedgerChain) -> dict[str, Any]:
    return build_ownership_proof(chain.ledger.store, "WR-1")


def test_prefix_agrees_with_contracts() -> None:
    assert ASSET_STATE_PREFIX == ASSET_PREFIX


def test_proof_verifies_across_a_validator_change(chain: LedgerChain, proof: dict[str, Any]) -> None:
    assert chain.ledger.validator_set_at(8).n == 5
    assert len(proof["validator_changes"]) == 1
    assert len(proof["certificate"]["signatures"]) == 4
    result = verify_ownership_proof(json.loads(json.dumps(proof)), chain.c.genesis)
    assert result.ok, result.reason
    assert (result.height, result.owner, result.asset_id) == (8, chain.c.users[6].public, "WR-1")


def test_forgeries_fail_and_name_the_field(chain: LedgerChain, proof: dict[str, Any]) -> None:
    g = chain.c.genesis

    def reason(edit) -> str:  # noqa: ANN001
        p = copy.deepcopy(proof)
        edit(p)
        result = verify_ownership_proof(p, g)
        assert not result.ok
        return result.reason

    assert "state_proof" in reason(lambda p: p["asset"].update(owner=chain.c.users[0].public))
    assert "certificate" in reason(lambda p: p["header"].update(time=1))
    assert "certificate" in reason(lambda p: p["certificate"]["signatures"].pop())
    assert "validator_changes[0]" in reason(lambda p: p["validator_changes"][0]["validators"].pop())
    assert "validators_hash" in reason(lambda p: p.update(validator_changes=[]))
    assert "genesis_hash" in reason(lambda p: p.update(genesis_hash="00" * 32))
    assert "asset" in reason(lambda p: p.update(asset_id="WR-2"))
    # an honest proof of another asset cannot pass for this one
    other = build_ownership_proof(chain.ledger.store, "WR-2")
    assert "state_proof" in reason(lambda p: p.update(state_proof=other["state_proof"]))
    assert "asset: an ownership proof carries" in reason(lambda p: p.update(asset=None))
    assert "state_proof: does not show 'asset/WR-1' absent" in reason(lambda p: p.update(asset=None, claim="absence"))


@pytest.mark.parametrize("where", ["head", "validator change"])
def test_a_certificate_mixing_views_fails(chain: LedgerChain, proof: dict[str, Any], where: str) -> None:
    """Defect 3: genuine commits from two views are no certificate, wherever the proof carries one."""
    g = chain.c.genesis
    keys = [*chain.c.validator_keys, seeded_key("validator-new")]
    p = copy.deepcopy(proof)
    target, field = (p, "") if where == "head" else (p["validator_changes"][0], "validator_changes[0].")
    cert = Certificate.from_plain(target["certificate"])
    target["certificate"] = mix_views(cert, keys, g.chain_id, cert.view + 2).to_plain()
    result = verify_ownership_proof(p, g)
    assert not result.ok
    assert result.reason.startswith(f"{field}certificate:")
    assert f"not its commit to this block in view {cert.view + 2}" in result.reason


def test_a_proof_of_the_previous_format_fails_naming_both_versions(chain: LedgerChain, proof: dict[str, Any]) -> None:
    old = copy.deepcopy(proof)
    old["version"] = PROOF_VERSION - 1
    result = verify_ownership_proof(old, chain.c.genesis)
    assert f"the proof is version {PROOF_VERSION - 1}, this verifier reads version {PROOF_VERSION}" in result.reason
    del old["claim"]  # a version 2 proof had no claim: still refused for its version
    assert f"the proof is version {PROOF_VERSION - 1}, this verifier reads version {PROOF_VERSION}" in (
        verify_ownership_proof(old, chain.c.genesis).reason
    )
    old["claim"] = "ownership"
    del old["certificate"]["view"]  # and its certificates would have had no view
    old["version"] = PROOF_VERSION
    assert "certificate: a certificate is exactly" in verify_ownership_proof(old, chain.c.genesis).reason


def _leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(obj, dict):
        return [leaf for k in sorted(obj) for leaf in _leaves(obj[k], (*path, k))]
    if isinstance(obj, list):
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(v, (*path, i))]
    return [path]


HEX = "0123456789abcdef"
TEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:."


def _mutate(value: Any, pos: int, alt: int) -> Any:
    if type(value) is str and value:
        i = pos % len(value)
        alphabet = HEX if all(c in HEX for c in value) else TEXT
        choices = [c for c in alphabet if c != value[i]]
        return value[:i] + choices[alt % len(choices)] + value[i + 1 :]
    if type(value) is int:
        return value + 1 + alt % 1000
    if value is None:
        return "x"
    return value + "x" if type(value) is str else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_any_altered_value_fails(chain: LedgerChain, proof: dict[str, Any], which: int, pos: int, alt: int) -> None:
    leaves = _leaves(proof)
    path = leaves[which % len(leaves)]
    p = copy.deepcopy(proof)
    target = p
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = _mutate(target[path[-1]], pos, alt)
    result = verify_ownership_proof(p, chain.c.genesis)
    assert not result.ok, f"altering {path} went unnoticed"


def test_no_proof_before_the_first_block(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "n")
    with pytest.raises(ProofError):
        build_ownership_proof(ch.ledger.store, "WR-1")
    ch.close()


def test_chain_with_a_validator_change_audits_clean(chain: LedgerChain) -> None:
    from node.runtime.ledger import audit_data_dir

    report = audit_data_dir(chain.path, chain.c.genesis)  # a copy: the ledger stays open meanwhile
    assert report.ok, report
    assert report.blocks == 8 and report.state_root == chain.ledger.state_root
