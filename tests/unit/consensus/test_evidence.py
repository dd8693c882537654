"""Equivocation evidence: a record built by the node's store verifies offline with only the genesis,
across a validator-set change; every forgery or omission fails and names the part; the store is
bounded and durable; the CLI's exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories import make_consortium, seeded_key
from ledger_fixtures import LedgerChain, build_story

from chain.crypto import Domain, KeyPair
from chain.encoding import hash_hex
from chain.store import Store
from node.cli.main import main
from node.consensus.evidence import EquivocationEvidence, parse_core, verify_evidence
from node.consensus.messages import Prepare, PrePrepare, Signed
from node.runtime.evidence_store import EvidenceStore
from node.runtime.metrics import NodeMetrics

NEW = seeded_key("validator-new")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> LedgerChain:
    """Blocks 1-5, a governance vote adding validator v4 (blocks 6-7), block 8 by the set of five."""
    ch = build_story(tmp_path_factory.mktemp("evidence") / "node")
    m = ch.c.members
    params = {"node_id": "v4", "public": NEW.public, "address": "10.0.0.5:27004"}
    propose = ch.sign(m[0], "gov.propose", {"action": "add_validator", "params": params})
    ch.block([propose])
    ch.block([ch.sign(m[i], "gov.approve", {"proposal_id": propose.tx_id}) for i in (1, 2)])
    ch.block([])
    yield ch
    ch.close()


def double_prepare(key: KeyPair, chain: LedgerChain, view: int, height: int) -> EquivocationEvidence:
    a = Signed.sign(key, Prepare(view, height, hash_hex(b"a")))
    b = Signed.sign(key, Prepare(view, height, hash_hex(b"b")))
    return EquivocationEvidence.of(chain.c.genesis.chain_id, chain.c.genesis.hash, b, a)


def full(chain: LedgerChain, ev: EquivocationEvidence, tmp_path: Path) -> dict[str, Any]:
    record = EvidenceStore(chain.ledger.store).full_record(ev)
    assert record is not None
    return json.loads(json.dumps(record))  # as it travels: JSON


def test_order_does_not_matter_and_the_core_round_trips(chain: LedgerChain) -> None:
    key = chain.c.validator_keys[1]
    a = Signed.sign(key, Prepare(0, 3, hash_hex(b"a")))
    b = Signed.sign(key, Prepare(0, 3, hash_hex(b"b")))
    g = chain.c.genesis
    assert EquivocationEvidence.of(g.chain_id, g.hash, a, b) == EquivocationEvidence.of(g.chain_id, g.hash, b, a)
    ev = EquivocationEvidence.of(g.chain_id, g.hash, a, b)
    assert parse_core(json.loads(json.dumps(ev.core_plain()))) == ev


@pytest.mark.parametrize(
    ("who", "height", "changes", "anchored"), [(1, 1, 0, False), (1, 5, 0, True), (4, 8, 1, False), (4, 9, 1, True)]
)
def test_records_verify_offline(
    chain: LedgerChain, tmp_path: Path, who: int, height: int, changes: int, anchored: bool
) -> None:
    key = NEW if who == 4 else chain.c.validator_keys[who]
    record = full(chain, double_prepare(key, chain, 2, height), tmp_path)
    assert len(record["validator_changes"]) == changes and (record["anchor"] is not None) == anchored
    result = verify_evidence(record, chain.c.genesis)
    assert result.ok, result.reason
    assert result.evidence is not None and result.evidence.validator == key.public


def test_a_pre_prepare_pair_verifies(chain: LedgerChain, tmp_path: Path) -> None:
    block = chain.ledger.store.get_block(5)
    assert block is not None
    key = chain.c.validator_keys[0]
    other = chain.ledger.store.get_block(4)
    assert other is not None
    a = Signed.sign(key, PrePrepare(1, 5, block.block_hash))
    b = Signed.sign(key, PrePrepare(2, 5, block.block_hash))  # another view: not equivocation
    c = Signed.sign(key, PrePrepare(1, 5, other.block_hash))
    g = chain.c.genesis
    record = full(chain, EquivocationEvidence.of(g.chain_id, g.hash, a, c), tmp_path)
    assert verify_evidence(record, g).ok
    bad = copy.deepcopy(record)
    bad["second"] = json.loads(json.dumps(b.to_plain()))  # both of view 1: replace either
    assert "not a pre_prepare message for view 1" in verify_evidence(bad, g).reason


def _forge(record: dict[str, Any], what: str) -> dict[str, Any]:
    r = copy.deepcopy(record)
    if what == "sig":
        s = r["first"]["sig"]
        r["first"]["sig"] = ("0" if s[0] != "0" else "1") + s[1:]
    elif what == "same":
        r["second"] = r["first"]
    elif what == "order":
        r["first"], r["second"] = r["second"], r["first"]
    elif what == "body":
        r["second"]["body"]["block_hash"] = hash_hex(b"c")  # the signature no longer covers it
    elif what == "omit_change":
        r["validator_changes"] = []
    elif what == "anchor":
        r["anchor"]["header"]["height"] -= 1
    elif what == "version":
        r["version"] = 2
    elif what == "links":
        del r["anchor"]
    return r


@pytest.mark.parametrize(
    ("what", "reason"),
    [
        ("sig", "first.sig"),
        ("same", "the same message"),
        ("order", "canonical order"),
        ("body", "second.sig"),
        ("omit_change", "validator set"),
        ("anchor", "anchor"),
        ("version", "version"),
        ("links", "links"),
    ],
)
def test_forgeries_fail_and_name_the_part(chain: LedgerChain, tmp_path: Path, what: str, reason: str) -> None:
    record = full(chain, double_prepare(NEW, chain, 0, 9), tmp_path)
    result = verify_evidence(_forge(record, what), chain.c.genesis)
    assert not result.ok and reason in result.reason, result.reason


def test_a_non_validator_of_the_height_and_another_chain_fail(chain: LedgerChain, tmp_path: Path) -> None:
    # v4 joined at height 8: signatures it made for height 5 convict no validator of height 5
    result = verify_evidence(full(chain, double_prepare(NEW, chain, 0, 5), tmp_path), chain.c.genesis)
    assert not result.ok and "not a validator at height 5" in result.reason
    record = full(chain, double_prepare(chain.c.validator_keys[0], chain, 0, 5), tmp_path)
    result = verify_evidence(record, make_consortium(chain_id="other-chain").genesis)
    assert not result.ok and "chain_id" in result.reason


def test_no_record_is_served_before_its_links_exist(chain: LedgerChain) -> None:
    assert EvidenceStore(chain.ledger.store).full_record(double_prepare(NEW, chain, 0, 11)) is None


def test_the_store_keeps_one_record_per_key_within_its_caps_durably(tmp_path: Path) -> None:
    ch = build_story(tmp_path / "node")
    try:
        keys = ch.c.validator_keys
        store = EvidenceStore(ch.ledger.store, max_records=3)
        assert store.add(double_prepare(keys[1], ch, 0, 2))
        assert not store.add(double_prepare(keys[1], ch, 0, 2))  # the same key: kept once
        assert store.add(double_prepare(keys[1], ch, 1, 2))
        assert store.add(double_prepare(keys[2], ch, 0, 3))
        assert not store.add(double_prepare(keys[3], ch, 0, 4))  # full
        tiny = EvidenceStore(ch.ledger.store, max_records=3, max_bytes=10)
        assert not tiny.add(double_prepare(keys[3], ch, 0, 5))
        listed = store.listing(0, 2, None)
        assert listed.total == 3 and len(listed.records) == 2
        assert store.listing(1, 10, keys[1].public).records[0]["view"] == 1
        assert all(verify_evidence(r, ch.c.genesis).ok for r in store.listing(0, 10, None).records)
        path = ch.path
    finally:
        ch.close()
    with Store.open_read_only(path) as s:
        reopened = EvidenceStore(s)
        assert len(reopened) == 3 and reopened.by_validator == {keys[1].public: 2, keys[2].public: 1}


def test_cli_verify_evidence_exit_codes(chain: LedgerChain, tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    chain.c.genesis.write(genesis)
    record = full(chain, double_prepare(NEW, chain, 0, 9), tmp_path)
    good, bad, notjson = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "x.json"
    good.write_text(json.dumps(record))
    bad.write_text(json.dumps(_forge(record, "omit_change")))
    notjson.write_text("{")
    run = CliRunner().invoke
    r = run(main, ["audit", "verify-evidence", str(good), "--genesis", str(genesis)])
    assert r.exit_code == 0 and f"validator {NEW.public} equivocated" in r.output, r.output
    r = run(main, ["audit", "verify-evidence", str(bad), "--genesis", str(genesis), "--json"])
    assert r.exit_code == 1 and not json.loads(r.output)["ok"], r.output
    r = run(main, ["audit", "verify-evidence", str(notjson), "--genesis", str(genesis)])
    assert r.exit_code == 1 and "not JSON" in r.output
    r = run(main, ["audit", "verify-evidence", str(good)])
    assert r.exit_code == 2


def test_the_signature_is_over_the_consensus_domain(chain: LedgerChain, tmp_path: Path) -> None:
    key = chain.c.validator_keys[2]
    ev = double_prepare(key, chain, 0, 3)
    record = full(chain, ev, tmp_path)
    # the same bytes signed under another domain (e.g. a tx signature) do not count
    record["first"]["sig"] = key.sign(Domain.TX, ev.first.body_bytes)
    record["second"]["sig"] = key.sign(Domain.TX, ev.second.body_bytes)
    assert "first.sig" in verify_evidence(record, chain.c.genesis).reason


def test_the_metric_counts_records_by_validator() -> None:
    metrics = NodeMetrics()
    metrics.on_evidence("ab" * 32, 2)
    metrics.on_evidence("ab" * 32)
    assert f'titlechain_evidence_total{{validator="{"ab" * 32}"}} 3.0' in metrics.render().decode()
