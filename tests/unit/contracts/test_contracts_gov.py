"""Governance: genesis state, proposals, approvals, thresholds, the four actions, expiry."""

from __future__ import annotations

from typing import Any

import pytest
from contracts_fixtures import World
from factories import make_consortium, seeded_key

from chain.validators import ValidatorSet
from contracts import (
    GOV_KEY,
    read_gov,
    read_proposal,
    read_roles,
    read_validator_set,
    roles_key,
)
from contracts.governance import PROPOSAL_TTL


@pytest.fixture
def w() -> World:
    return World()  # 4 members, gov_threshold 3


def propose(w: World, action: str, params: dict[str, Any], by: int = 0) -> str:
    receipt = w.ok(w.c.members[by], "gov.propose", {"action": action, "params": params})
    return receipt["tx_id"]


def approve(w: World, pid: str, by: int) -> dict[str, Any]:
    return w.run(w.c.members[by], "gov.approve", {"proposal_id": pid})


def test_genesis_state(w: World) -> None:
    for m in w.c.members:
        assert read_roles(w.state, m.public) == [{"role": "member"}]
    assert read_roles(w.state, w.c.issuer.public) == [
        {"role": "issuer", "classes": ["property_deed", "receivable", "warehouse_receipt"]}
    ]
    assert read_roles(w.state, w.c.regulator.public) == [{"role": "regulator"}]
    assert read_roles(w.state, w.c.users[0].public) == []
    assert read_validator_set(w.state) == w.c.genesis.validators
    gov = read_gov(w.state)
    assert (gov.threshold, gov.member_count, gov.effective_threshold) == (3, 4, 3)


def test_genesis_without_threshold_means_a_majority_of_current_members() -> None:
    c = make_consortium()
    doc = {k: v for k, v in c.genesis.doc.items() if k != "gov_threshold"}
    doc["roles"] = {**doc["roles"], c.users[0].public: [{"role": "member"}, {"role": "auditor"}]}
    from factories import Consortium

    from chain.genesis import Genesis

    w = World(Consortium(Genesis.from_plain(doc), c.validator_keys, c.members, c.issuer, c.regulator, c.auditor, c.users))
    gov = read_gov(w.state)
    assert gov.threshold is None and gov.member_count == 5 and gov.effective_threshold == 3
    assert read_roles(w.state, c.users[0].public) == [{"role": "auditor"}, {"role": "member"}]


def test_grant_role_executes_when_approvals_reach_the_threshold(w: World) -> None:
    user = w.c.users[0]
    params = {"account": user.public, "role": "regulator"}
    pid = propose(w, "grant_role", params)
    p = read_proposal(w.state, pid)
    assert p["status"] == "open" and p["approvals"] == [w.c.members[0].public] and p["proposal_id"] == pid
    assert p["expires_at"] == p["created_at"] + PROPOSAL_TTL
    r = approve(w, pid, 1)
    assert r["status"] == "ok" and [e["type"] for e in r["events"]] == ["gov.approved"]
    assert read_roles(w.state, user.public) == []
    r = approve(w, pid, 2)
    assert [e["type"] for e in r["events"]] == ["gov.approved", "gov.executed", "role.granted"]
    assert r["events"][1]["proposal_id"] == pid and r["events"][1]["action"] == "grant_role"
    assert read_roles(w.state, user.public) == [{"role": "regulator"}]
    p = read_proposal(w.state, pid)
    assert p["status"] == "executed" and p["executed_at"] == r["height"] and len(p["approvals"]) == 3
    # executed once: a late approval changes nothing
    assert w.rejected(w.c.members[3], "gov.approve", {"proposal_id": pid}) == "invalid_args"


def test_issuer_grants_widen_and_revocations_narrow(w: World) -> None:
    user = w.c.users[0]
    for classes in (["ship"], ["barge", "ship"]):
        pid = propose(w, "grant_role", {"account": user.public, "role": "issuer", "classes": classes})
        approve(w, pid, 1)
        approve(w, pid, 2)
    assert read_roles(w.state, user.public) == [{"role": "issuer", "classes": ["barge", "ship"]}]
    code = w.rejected(
        w.c.members[0], "gov.propose", {"action": "grant_role", "params": {"account": user.public, "role": "issuer", "classes": ["ship"]}}
    )
    assert code == "invalid_args"
    pid = propose(w, "revoke_role", {"account": user.public, "role": "issuer", "classes": ["ship"]})
    approve(w, pid, 1)
    approve(w, pid, 2)
    assert read_roles(w.state, user.public) == [{"role": "issuer", "classes": ["barge"]}]
    pid = propose(w, "revoke_role", {"account": user.public, "role": "issuer"})
    approve(w, pid, 1)
    r = approve(w, pid, 2)
    assert r["events"][-1] == {"type": "role.revoked", "account": user.public, "role": "issuer"}
    assert read_roles(w.state, user.public) == [] and w.state.get(roles_key(user.public)) is None


def test_member_count_follows_grants_and_revocations(w: World) -> None:
    newcomer = w.c.users[0]
    pid = propose(w, "grant_role", {"account": newcomer.public, "role": "member"})
    approve(w, pid, 1)
    approve(w, pid, 2)
    assert read_gov(w.state).member_count == 5
    w.ok(newcomer, "gov.propose", {"action": "grant_role", "params": {"account": w.c.users[1].public, "role": "auditor"}})
    pid = propose(w, "revoke_role", {"account": w.c.members[3].public, "role": "member"})
    approve(w, pid, 1)
    approve(w, pid, 2)
    assert read_gov(w.state).member_count == 4
    assert w.rejected(w.c.members[3], "gov.propose", {"action": "grant_role", "params": {"account": w.c.users[1].public, "role": "auditor"}}) == "not_authorized"


def test_threshold_is_capped_by_the_member_count_and_the_last_member_stays() -> None:
    c = make_consortium(n=1)  # one member, threshold 1: every proposal executes at once
    w = World(c)
    member = c.members[0]
    r = w.ok(member, "gov.propose", {"action": "grant_role", "params": {"account": c.users[0].public, "role": "auditor"}})
    assert [e["type"] for e in r["events"]] == ["gov.proposed", "gov.executed", "role.granted"]
    code = w.rejected(member, "gov.propose", {"action": "revoke_role", "params": {"account": member.public, "role": "member"}})
    assert code == "invalid_args"
    w.state.apply({GOV_KEY: {"threshold": 3, "member_count": 1}})
    assert read_gov(w.state).effective_threshold == 1


def test_revoked_members_approvals_no_longer_count(w: World) -> None:
    target = w.c.users[0].public
    pid = propose(w, "grant_role", {"account": target, "role": "auditor"}, by=3)  # member 3 approves
    revoke = propose(w, "revoke_role", {"account": w.c.members[3].public, "role": "member"})
    approve(w, revoke, 1)
    approve(w, revoke, 2)
    r = approve(w, pid, 0)  # approvals: 3 (revoked), 0 -> one that counts; threshold 3 of 3 members
    assert r["status"] == "ok" and read_roles(w.state, target) == []
    r = approve(w, pid, 1)
    assert read_roles(w.state, target) == []
    r = approve(w, pid, 2)
    assert read_roles(w.state, target) == [{"role": "auditor"}]


def test_gov_rejections(w: World) -> None:
    outsider = w.c.users[0]
    grant = {"action": "grant_role", "params": {"account": outsider.public, "role": "auditor"}}
    assert w.rejected(outsider, "gov.propose", grant) == "not_authorized"
    assert w.rejected(w.c.issuer, "gov.propose", grant) == "not_authorized"
    assert w.rejected(w.c.members[0], "gov.approve", {"proposal_id": "ab" * 32}) == "proposal_not_found"
    pid = propose(w, "grant_role", grant["params"])
    assert w.rejected(w.c.members[0], "gov.approve", {"proposal_id": pid}) == "already_approved"
    assert approve(w, pid, 1)["status"] == "ok"
    assert w.rejected(w.c.members[1], "gov.approve", {"proposal_id": pid}) == "already_approved"
    assert w.rejected(outsider, "gov.approve", {"proposal_id": pid}) == "not_authorized"
    # actions that do not apply to the state are refused when proposed
    bad = [
        ("grant_role", {"account": w.c.regulator.public, "role": "regulator"}),
        ("revoke_role", {"account": outsider.public, "role": "auditor"}),
        ("revoke_role", {"account": w.c.issuer.public, "role": "issuer", "classes": ["ship"]}),
        ("add_validator", {"node_id": "v9", "public": w.c.validator_keys[0].public, "address": "h:1"}),
        ("add_validator", {"node_id": "v0", "public": seeded_key("x").public, "address": "h:1"}),
        ("add_validator", {"node_id": "v9", "public": seeded_key("x").public, "address": "127.0.0.1:27001"}),
        ("remove_validator", {"node_id": "v9"}),
        ("remove_validator", {"public": seeded_key("x").public}),
        ("rotate_validator", {"node_id": "v9", "public": seeded_key("x").public}),
        ("rotate_validator", {"node_id": "v1", "public": w.c.validator_keys[1].public}),
        ("rotate_validator", {"node_id": "v1", "public": w.c.validator_keys[2].public}),
    ]
    for action, params in bad:
        assert w.rejected(w.c.members[0], "gov.propose", {"action": action, "params": params}) == "invalid_args", action


def test_proposal_expires(w: World) -> None:
    pid = propose(w, "grant_role", {"account": w.c.users[0].public, "role": "auditor"})
    expires_at = read_proposal(w.state, pid)["expires_at"]
    w.height = expires_at + 1
    assert w.rejected(w.c.members[1], "gov.approve", {"proposal_id": pid}) == "invalid_args"
    w.height = expires_at
    assert approve(w, pid, 1)["status"] == "ok"


def test_an_action_that_no_longer_applies_rejects_the_approval_and_changes_nothing(w: World) -> None:
    account = w.c.users[0].public
    first = propose(w, "grant_role", {"account": account, "role": "auditor"})
    second = propose(w, "grant_role", {"account": account, "role": "auditor"}, by=1)
    approve(w, first, 1)
    approve(w, first, 2)
    approve(w, second, 0)
    assert w.rejected(w.c.members[2], "gov.approve", {"proposal_id": second}) == "invalid_args"
    assert read_proposal(w.state, second)["status"] == "open"


def test_add_and_remove_validators(w: World) -> None:
    new = seeded_key("validator-new")
    pid = propose(w, "add_validator", {"node_id": "v4", "public": new.public, "address": "10.0.0.5:27004"})
    approve(w, pid, 1)
    r = approve(w, pid, 2)
    assert r["events"][-1] == {"type": "validator.added", "node_id": "v4", "public": new.public, "address": "10.0.0.5:27004"}
    vset = read_validator_set(w.state)
    assert [v.node_id for v in vset.validators] == ["v0", "v1", "v2", "v3", "v4"] and vset.quorum == 4
    pid = propose(w, "remove_validator", {"node_id": "v1"})
    approve(w, pid, 1)
    approve(w, pid, 2)
    pid = propose(w, "remove_validator", {"public": w.c.validator_keys[0].public})
    approve(w, pid, 1)
    r = approve(w, pid, 2)
    assert r["events"][-1]["type"] == "validator.removed" and r["events"][-1]["node_id"] == "v0"
    vset = read_validator_set(w.state)
    assert isinstance(vset, ValidatorSet) and [v.node_id for v in vset.validators] == ["v2", "v3", "v4"]
    assert (vset.f, vset.quorum) == (0, 2)


def execute(w: World, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Propose and approve to the threshold (3 of 4); the executing approval's receipt."""
    pid = propose(w, action, params)
    approve(w, pid, 1)
    return approve(w, pid, 2)


def test_rotate_keeps_the_seat_its_place_id_and_address(w: World) -> None:
    before = read_validator_set(w.state)
    new = seeded_key("v2-rotated")
    r = execute(w, "rotate_validator", {"node_id": "v2", "public": new.public})
    old = w.c.validator_keys[2].public
    assert r["events"][-1] == {"type": "validator.rotated", "node_id": "v2", "old_public": old, "public": new.public}
    after = read_validator_set(w.state)
    assert [v.node_id for v in after.validators] == [v.node_id for v in before.validators]
    assert [v.address for v in after.validators] == [v.address for v in before.validators]
    assert after.validators[2].public == new.public and old not in after.publics
    assert (after.n, after.quorum) == (before.n, before.quorum)
    assert after.hash != before.hash  # the header's next_validators_hash changes with the key
    # the retired key is no validator now: it can neither be removed nor rotated to by its old id
    code = w.rejected(w.c.members[0], "gov.propose", {"action": "remove_validator", "params": {"public": old}})
    assert code == "invalid_args"
    # and nothing stops governance from giving the seat back its old key later
    r = execute(w, "rotate_validator", {"node_id": "v2", "public": old})
    assert read_validator_set(w.state) == before


def test_two_rotations_to_one_key_execute_once(w: World) -> None:
    """Checked again at execution: a key another proposal has since put in the set is refused."""
    key = seeded_key("contested").public
    first = propose(w, "rotate_validator", {"node_id": "v1", "public": key})
    second = propose(w, "rotate_validator", {"node_id": "v3", "public": key}, by=1)
    approve(w, first, 1)
    approve(w, first, 2)
    approve(w, second, 0)
    assert w.rejected(w.c.members[2], "gov.approve", {"proposal_id": second}) == "invalid_args"
    vset = read_validator_set(w.state)
    assert vset.by_node_id["v1"].public == key and vset.by_node_id["v3"].public == w.c.validator_keys[3].public


def test_add_refuses_an_address_already_in_the_set_whatever_its_case(w: World) -> None:
    taken = read_validator_set(w.state).validators[1].address
    params = {"node_id": "v9", "public": seeded_key("x").public, "address": taken.upper()}
    assert w.rejected(w.c.members[0], "gov.propose", {"action": "add_validator", "params": params}) == "invalid_args"


def test_the_last_validator_cannot_be_removed() -> None:
    w = World(make_consortium(n=1))
    code = w.rejected(w.c.members[0], "gov.propose", {"action": "remove_validator", "params": {"node_id": "v0"}})
    assert code == "invalid_args"
    assert read_validator_set(w.state).n == 1


def test_genesis_writes_are_plain_values_with_one_canonical_form(w: World) -> None:
    from chain.encoding import canonical, decode
    from contracts import genesis_writes

    writes = genesis_writes(w.c.genesis)
    assert writes == genesis_writes(w.c.genesis)
    for key, value in writes.items():
        assert decode(canonical(value)) == value, key


def test_memory_view_layers_and_deletes() -> None:
    from contracts import MemoryView

    base = MemoryView({"a": 1, "b": 2})
    top = MemoryView(base=base)
    top.apply({"a": None, "c": 3})
    assert (top.get("a"), top.get("b"), top.get("c")) == (None, 2, 3)
    assert base.get("a") == 1 and top.items() == {"c": 3}
