"""Role grants: pure functions over an account's list of grants.

A list holds at most one grant per role, sorted by role name; an issuer grant carries its
classes, sorted. Granting issuer for more classes widens the one issuer grant; revoking some
classes narrows it, and revoking the last class (or the role without classes) removes it.
"""

from __future__ import annotations

from collections.abc import Iterable

from chain.genesis import Grant
from contracts.state import StateView, read_roles

# The roles whose holder may run an observer node: follow the chain from the validators and keep
# its own verified copy (an auditor or a regulator reads everything; no other role needs to).
OBSERVER_ROLES = ("auditor", "regulator")


def holds(grants: Iterable[Grant], role: str) -> bool:
    return any(g["role"] == role for g in grants)


def observer_role(grants: Iterable[Grant]) -> str | None:
    """The role that entitles an account with these grants to run an observer (the first of
    OBSERVER_ROLES it holds), or None: validators refuse its observer links."""
    held = {g["role"] for g in grants}
    return next((r for r in OBSERVER_ROLES if r in held), None)


def observer_role_at(view: StateView, account: str) -> str | None:
    """`observer_role` of the account's grants in a state (a validator asks of its head's state)."""
    return observer_role(read_roles(view, account))


def issuer_classes(grants: Iterable[Grant]) -> frozenset[str]:
    for g in grants:
        if g["role"] == "issuer":
            return frozenset(g["classes"])
    return frozenset()


def can_issue(grants: Iterable[Grant], asset_class: str) -> bool:
    return asset_class in issuer_classes(grants)


def _grant(role: str, classes: Iterable[str]) -> Grant:
    return {"role": "issuer", "classes": sorted(classes)} if role == "issuer" else {"role": role}


def with_grant(grants: Iterable[Grant], role: str, classes: Iterable[str] = ()) -> list[Grant]:
    """The grants plus `role` (for an issuer: plus `classes`), normalised."""
    by_role = {g["role"]: g for g in grants}
    if role == "issuer":
        by_role["issuer"] = _grant("issuer", issuer_classes(by_role.values()) | set(classes))
    else:
        by_role[role] = _grant(role, ())
    return [by_role[r] for r in sorted(by_role)]


def without_grant(grants: Iterable[Grant], role: str, classes: Iterable[str] | None = None) -> list[Grant]:
    """The grants minus `role`; for an issuer with `classes`, minus those classes only."""
    by_role = {g["role"]: g for g in grants}
    if role == "issuer" and classes is not None:
        left = issuer_classes(by_role.values()) - set(classes)
        if left:
            by_role["issuer"] = _grant("issuer", left)
        else:
            by_role.pop("issuer", None)
    else:
        by_role.pop(role, None)
    return [by_role[r] for r in sorted(by_role)]


def merge_grants(grants: Iterable[Grant]) -> list[Grant]:
    """One normalised list from grants that may repeat a role (e.g. two issuer grants in a genesis)."""
    out: list[Grant] = []
    for g in grants:
        out = with_grant(out, g["role"], g.get("classes", ()))
    return out
