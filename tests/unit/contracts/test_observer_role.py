"""Who may run an observer node: an account holding the auditor or the regulator role, as the
state says at the time of asking (so a revocation by governance takes the right away)."""

from __future__ import annotations

from contracts_fixtures import World

from contracts import OBSERVER_ROLES, observer_role_at
from contracts.roles import observer_role


def test_the_genesis_auditor_and_regulator_may_observe_others_may_not() -> None:
    w = World()
    assert observer_role_at(w.state, w.c.auditor.public) == "auditor"
    assert observer_role_at(w.state, w.c.regulator.public) == "regulator"
    assert observer_role_at(w.state, w.c.issuer.public) is None  # an issuer reads only its own
    assert observer_role_at(w.state, w.c.members[0].public) is None  # a member votes, it does not audit
    assert observer_role_at(w.state, w.c.users[0].public) is None  # no role at all


def test_a_role_granted_then_revoked_by_governance_gives_then_takes_the_right() -> None:
    w = World()  # 4 members, gov_threshold 3
    user = w.c.users[0].public

    def decide(action: str) -> None:
        pid = w.ok(w.c.members[0], "gov.propose", {"action": action, "params": {"account": user, "role": "regulator"}})["tx_id"]
        for by in (1, 2):
            w.ok(w.c.members[by], "gov.approve", {"proposal_id": pid})

    decide("grant_role")
    assert observer_role_at(w.state, user) == "regulator"
    decide("revoke_role")
    assert observer_role_at(w.state, user) is None


def test_either_role_suffices_and_other_grants_do_not_matter() -> None:
    assert OBSERVER_ROLES == ("auditor", "regulator")
    assert observer_role([{"role": "auditor"}, {"role": "member"}]) == "auditor"
    assert observer_role([{"role": "issuer", "classes": ["ship"]}, {"role": "regulator"}]) == "regulator"
    assert observer_role([{"role": "issuer", "classes": ["ship"]}, {"role": "member"}]) is None
    assert observer_role([]) is None
