"""The genesis ceremony's rules (chain/ceremony.py): requests, assembling, verifying, refusals.

Attackers here use real capabilities: their own valid keys and well-formed, validly signed
requests, or a coordinator editing the files it hands out.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from factories import seeded_key

from chain.ceremony import (
    CeremonyError,
    ConsortiumParams,
    Manifest,
    MembershipRequest,
    assemble,
    check_name,
    load_manifest,
    verify_genesis,
)
from chain.crypto import Domain, KeyPair
from chain.encoding import canonical
from chain.genesis import Genesis

CHAIN = "acme-1"
PARAMS = ConsortiumParams(CHAIN, 1_800_000_000_000)


def bank(i: int, **kw: Any) -> MembershipRequest:
    args: dict[str, Any] = {
        "chain_id": CHAIN,
        "name": f"Bank {i}",
        "account": seeded_key(f"account-{i}"),
        "roles": [{"role": "member"}],
        "node": seeded_key(f"node-{i}"),
        "node_id": f"bank-{i}",
        "address": f"bank{i}.example:26600",
    }
    args.update(kw)
    return MembershipRequest.create(**args)


def issuer() -> MembershipRequest:
    return MembershipRequest.create(
        chain_id=CHAIN,
        name="Northgate Receipts",
        account=seeded_key("issuer"),
        roles=[{"role": "issuer", "classes": ["warehouse_receipt"]}],
    )


def four() -> list[MembershipRequest]:
    return [bank(i) for i in range(4)]


def resign(plain: dict[str, Any], account: KeyPair, node: KeyPair | None) -> dict[str, Any]:
    """A request body changed by its own institution and validly signed again."""
    msg = canonical(plain["body"])
    node_sig = node.sign(Domain.MEMBERSHIP, msg) if node else None
    return {"body": plain["body"], "sig": account.sign(Domain.MEMBERSHIP, msg), "node_sig": node_sig}


# -- assembling -----------------------------------------------------------------------------------


def test_assemble_makes_the_genesis_the_requests_ask_for() -> None:
    reqs = [*four(), issuer()]
    m = assemble(reqs, PARAMS)
    g = m.genesis
    assert g.validators.n == 4 and g.validators.f == 1
    assert set(g.members) == {r.account for r in reqs[:4]}
    assert g.roles == {reqs[4].account: ({"role": "issuer", "classes": ["warehouse_receipt"]},)}
    addresses = {v.node_id: v.address for v in g.validators.validators}
    assert addresses == {f"bank-{i}": f"bank{i}.example:26600" for i in range(4)}
    assert "gov_threshold" not in g.doc  # a majority of the members at the time of each vote
    # the genesis depends on the set of requests, not on the order the coordinator read them in
    assert assemble(list(reversed(reqs)), PARAMS).genesis.hash == g.hash
    # and the manifest re-derives it exactly
    assert load_manifest(m.to_plain()).genesis.hash == g.hash


def test_stated_parameters_go_into_the_genesis() -> None:
    m = assemble(four(), ConsortiumParams(CHAIN, 5, gov_threshold=3, params={"view_timeout_ms": 1500}))
    assert m.genesis.doc["gov_threshold"] == 3 and m.genesis.params.view_timeout_ms == 1500
    with pytest.raises(CeremonyError, match="gov_threshold"):
        assemble(four(), ConsortiumParams(CHAIN, 5, gov_threshold=5))
    with pytest.raises(CeremonyError, match="params.no_such"):
        assemble(four(), ConsortiumParams(CHAIN, 5, params={"no_such": 1}))


def test_fewer_than_four_validators_is_refused_with_the_reason() -> None:
    with pytest.raises(CeremonyError, match=r"3 validators: BFT needs n >= 3f\+1.*f = 1.*takes 4"):
        assemble(four()[:3], PARAMS)
    assert assemble(four()[:3], PARAMS, min_validators=1).genesis.validators.f == 0


def test_a_chain_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(CeremonyError, match="chain_id"):
        bank(0, chain_id=CHAIN + "\n")
    with pytest.raises(CeremonyError, match="chain_id"):
        assemble(four(), ConsortiumParams(CHAIN + "\n", 5))


def test_a_request_for_another_chain_is_refused() -> None:
    with pytest.raises(CeremonyError, match="for chain 'other'"):
        assemble([*four()[:3], bank(3, chain_id="other")], PARAMS)


def test_a_consortium_without_members_is_refused() -> None:
    reqs = [bank(i, roles=[{"role": "auditor"}]) for i in range(4)]
    with pytest.raises(CeremonyError, match="member role"):
        assemble(reqs, PARAMS)


@pytest.mark.parametrize(
    "clash,match",
    [
        ({"name": "Bank 0"}, "name"),
        ({"name": "BANK 0"}, "name"),  # read as the same name
        ({"name": "Ｂａｎｋ 0"}, "name"),  # fullwidth letters: the same name after NFKC
        ({"node_id": "bank-0"}, "node_id"),
        ({"node_id": "BANK-0"}, "node_id"),
        ({"address": "bank0.example:26600"}, "address"),
        ({"address": "BANK0.example:26600"}, "address"),
        ({"node": seeded_key("node-0")}, "key"),  # another institution's node key
        ({"account": seeded_key("account-0")}, "key"),  # another institution's account
        ({"node": seeded_key("account-0")}, "key"),  # another institution's account as a node key
    ],
)
def test_duplicates_are_refused(clash: dict[str, Any], match: str) -> None:
    # institution 4 signs its own well-formed request that claims something institution 0 holds
    reqs = [*four(), bank(4, **clash)]
    with pytest.raises(CeremonyError, match=f"{match} .* already claimed by 'Bank 0'"):
        assemble(reqs, PARAMS)


# -- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        " Bank A",
        "Bank  A",
        "Bank A\n",
        "Bank\u202eA",  # right-to-left override: displays reversed text
        "Bank\u200bA",  # zero-width space
        "Bank\x00A",
        "Bank <A>",
        "Bank A;rm",
        "x" * 101,
        "Cafe\u0301",  # not NFC (é as e + combining accent)
        "\u0301\u0301Bank",  # marks with no letter to sit on
    ],
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(CeremonyError, match="name"):
        check_name(name)
    with pytest.raises(CeremonyError, match="name"):
        bank(0, name=name)


@pytest.mark.parametrize(
    "name", ["Bank A", "Crédit Mutuel", "Crane & Whitlock (Audit) Ltd.", "東京銀行", "A/S Nordbank-2"]
)
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "address", ["bank", "bank:0", "bank:70000", "0.0.0.0:26600", "[::]:26600", "bank :1", "bank:port", "bank:1\n"]
)
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(CeremonyError, match="address"):
        bank(0, address=address)


def test_a_forged_account_signature_is_refused() -> None:
    plain = bank(0).to_plain()
    # the coordinator (or anyone) swaps in its own account and signs with its own key but cannot
    # make the victim's node key sign; a request whose sig is by another key fails outright
    forged = copy.deepcopy(plain)
    forged["sig"] = seeded_key("mallory").sign(Domain.MEMBERSHIP, canonical(forged["body"]))
    with pytest.raises(CeremonyError, match="sig is not the account's signature"):
        MembershipRequest.from_plain(forged)
    tampered = copy.deepcopy(plain)
    tampered["body"]["roles"] = [{"role": "member"}, {"role": "regulator"}]
    with pytest.raises(CeremonyError, match="sig is not the account's signature"):
        MembershipRequest.from_plain(tampered)


def test_a_node_key_the_requester_does_not_hold_is_refused() -> None:
    # Mallory lists Bank 0's node key (public, from Bank 0's request) as its own validator and
    # signs with its own account key: without Bank 0's node key it cannot make node_sig
    victim = bank(0)
    mallory = seeded_key("mallory")
    stolen = victim.validator.to_plain() | {"node_id": "mallory", "address": "m.example:1"}
    body = {**bank(5, account=mallory).body(), "validator": stolen}
    msg = canonical(body)
    with pytest.raises(CeremonyError, match="node_sig is not the validator key's signature"):
        MembershipRequest.from_plain(resign({"body": body}, mallory, mallory))


def test_a_signature_for_another_purpose_does_not_pass() -> None:
    k = seeded_key("account-0")
    req = bank(0).to_plain()
    msg = canonical(req["body"])
    with pytest.raises(CeremonyError, match="sig"):
        MembershipRequest.from_plain({**req, "sig": k.sign(Domain.TX, msg)})


@pytest.mark.parametrize(
    "roles",
    [
        [{"role": "member"}, {"role": "member"}],
        [{"role": "regulator"}, {"role": "member"}],  # not sorted: a request has one byte form
        [{"role": "issuer", "classes": ["b_class", "a_class"]}],
        [{"role": "king"}],
        [{"role": "issuer"}],
    ],
)
def test_roles_not_in_canonical_form_are_refused(roles: list[dict[str, Any]]) -> None:
    account = seeded_key("account-0")
    body = {"chain_id": CHAIN, "name": "Bank 0", "account": account.public, "roles": roles, "validator": None}
    with pytest.raises(CeremonyError, match="roles"):
        MembershipRequest.from_plain(resign({"body": body}, account, None))


def test_the_node_key_may_not_be_the_account_key() -> None:
    k = seeded_key("account-0")
    with pytest.raises(CeremonyError, match="must not be the account key"):
        bank(0, node=k)


# -- verifying ------------------------------------------------------------------------------------


def ceremony() -> tuple[dict[str, Any], dict[str, Any], list[MembershipRequest]]:
    reqs = [*four(), issuer()]
    m = assemble(reqs, PARAMS)
    return copy.deepcopy(m.genesis.doc), m.to_plain(), reqs


def test_every_institution_verifies_the_same_genesis() -> None:
    doc, manifest, reqs = ceremony()
    m = load_manifest(manifest)
    for r in reqs:
        verify_genesis(Genesis.from_plain(doc), m, r)


def test_a_tampered_manifest_entry_is_refused() -> None:
    doc, manifest, _ = ceremony()
    # the coordinator moves Bank 0's validator to an address it controls
    i = next(i for i, r in enumerate(manifest["requests"]) if r["body"]["name"] == "Bank 0")
    manifest["requests"][i]["body"]["validator"]["address"] = "evil.example:26600"
    with pytest.raises(CeremonyError, match=r"requests\[\d\]: request of 'Bank 0': sig is not"):
        load_manifest(manifest)


def test_a_manifest_whose_names_table_lies_is_refused() -> None:
    _, manifest, _ = ceremony()
    manifest["institutions"][0]["name"] = "Someone Else"
    with pytest.raises(CeremonyError, match="institutions"):
        load_manifest(manifest)


def test_a_manifest_whose_hash_is_not_its_genesis_is_refused() -> None:
    _, manifest, _ = ceremony()
    manifest["time"] += 1  # the stated parameters changed: another genesis
    with pytest.raises(CeremonyError, match="genesis_hash"):
        load_manifest(manifest)


def test_a_genesis_that_does_not_match_the_manifest_is_refused() -> None:
    doc, manifest, reqs = ceremony()
    m = load_manifest(manifest)
    # the coordinator hands out a genesis that gives an account of its own a regulator role
    doc["roles"][seeded_key("mallory").public] = [{"role": "regulator"}]
    with pytest.raises(CeremonyError, match="is not the one the manifest"):
        verify_genesis(Genesis.from_plain(doc), m, reqs[0])


def test_a_request_left_out_or_altered_is_found_by_its_owner() -> None:
    reqs = [*four(), issuer()]
    # the coordinator leaves the issuer out but hands out a consistent genesis and manifest
    m = assemble(reqs[:4], PARAMS)
    with pytest.raises(CeremonyError, match="not in the manifest as you signed it"):
        verify_genesis(m.genesis, load_manifest(m.to_plain()), reqs[4])
    # Bank 0 re-signed a changed request; its first one is no longer what the genesis holds
    changed = bank(0, address="bank0.example:26700")
    m = assemble([changed, *reqs[1:]], PARAMS)
    with pytest.raises(CeremonyError, match="not in the manifest as you signed it"):
        verify_genesis(m.genesis, load_manifest(m.to_plain()), reqs[0])


def test_a_manifest_of_another_version_is_refused_naming_both() -> None:
    _, manifest, _ = ceremony()
    manifest["version"] = 2
    with pytest.raises(CeremonyError, match="version 2.*version 1"):
        load_manifest(manifest)
    manifest["version"] = True  # equal to 1 in Python, but not the integer 1
    with pytest.raises(CeremonyError, match="version True"):
        load_manifest(manifest)


def _entry_of(doc: dict[str, Any], own: MembershipRequest) -> dict[str, Any]:
    return next(v for v in doc["validators"] if v["public"] == own.validator.public)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda doc, own: doc["members"].remove(own.account), "lacks your member role"),
        (lambda doc, own: doc["roles"].__setitem__(own.account, [{"role": "auditor"}]), "other roles"),
        (lambda doc, own: _entry_of(doc, own).__setitem__("address", "x.example:1"), "validator entry"),
    ],
)
def test_own_entries_are_checked_even_against_a_manifest_that_agrees_with_the_genesis(edit: Any, match: str) -> None:
    # defence in depth: were assemble ever to place a request wrongly, its owner would still see it
    reqs = four()
    m = assemble(reqs, PARAMS)
    doc = copy.deepcopy(m.genesis.doc)
    edit(doc, reqs[0])
    wrong = Genesis.from_plain(doc)
    with pytest.raises(CeremonyError, match=match):
        verify_genesis(wrong, Manifest(m.params, m.requests, wrong), reqs[0])
