"""Governance: proposals and approvals by consortium members, and the five actions they execute.

A member opens a proposal (gov.propose); its id is the tx_id, and the proposer's approval counts.
Each member approves at most once (gov.approve). When the approvals of accounts that are members
*at that moment* reach the threshold, the action executes inside the tx that reached it, once.

Decisions the protocol leaves open (docs/contracts.md):
- Threshold: the genesis `gov_threshold`, or, when the genesis leaves it out, a majority of the
  current members. Either way it is capped at the current member count (so revocations can
  never lock governance out), and the last member cannot be revoked.
- An action is checked against the state when proposed and again when it would execute. If it
  no longer applies then (another proposal got there first), the approving tx is rejected with
  invalid_args and changes nothing; the proposal stays open until it expires.
- A proposal is open for PROPOSAL_TTL heights after the one that opened it. Approving an
  expired or an executed proposal is invalid_args (nothing is recorded); approving twice is
  already_approved.
- add_validator refuses a key, node_id or address (compared without case) already in the set,
  an address nobody can dial, and a set beyond MAX_VALIDATORS; remove_validator refuses to leave
  no validator; rotate_validator gives a seat a new key in the same place (same node_id and
  address) and refuses a key already in the set (its own current one included). Shrinking 4 -> 3 is allowed but drops f from 1
  to 0 (quorum 3 of 4 becomes 2 of 3): replace a validator by adding first, then removing.
  A changed set certifies blocks from the next height on (the header's next_validators_hash).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.tx import Tx
from chain.validators import Validator
from contracts import args as a
from contracts.result import Effects, Rejection
from contracts.roles import holds, issuer_classes, with_grant, without_grant
from contracts.state import (
    GOV_KEY,
    VALIDATORS_KEY,
    GovConfig,
    StateView,
    proposal_key,
    read_gov,
    read_proposal,
    read_roles,
    read_validator_set,
    roles_key,
)

PROPOSAL_TTL = 10_000
MAX_VALIDATORS = 64


def _role_rules(params: dict[str, Any], where: str, *, classes_required: bool) -> None:
    if params["role"] == "issuer":
        if classes_required and "classes" not in params:
            raise a.invalid(f"{where}.classes", "is required for the issuer role")
    elif "classes" in params:
        raise a.invalid(f"{where}.classes", "only the issuer role has classes")


def _grant_rules(params: dict[str, Any], where: str) -> None:
    _role_rules(params, where, classes_required=True)


def _revoke_rules(params: dict[str, Any], where: str) -> None:
    _role_rules(params, where, classes_required=False)


def _one_validator_ref(params: dict[str, Any], where: str) -> None:
    if len(params) != 1:
        raise a.invalid(where, "names the validator by exactly one of public, node_id")


ROLE_PARAMS = (a.Arg("account", a.account), a.Arg("role", a.role), a.Arg("classes", a.classes, required=False))


# -- the actions: each checks it applies to the state, then applies --------------------------------


def _check_grant(view: StateView, p: dict[str, Any]) -> None:
    grants = read_roles(view, p["account"])
    if p["role"] == "issuer":
        if set(p["classes"]) <= issuer_classes(grants):
            raise Rejection("invalid_args", "params: the account is already an issuer of all these classes")
    elif holds(grants, p["role"]):
        raise Rejection("invalid_args", f"params: the account already holds the {p['role']} role")


def _apply_grant(view: StateView, p: dict[str, Any]) -> Effects:
    grants = with_grant(read_roles(view, p["account"]), p["role"], p.get("classes", ()))
    writes: dict[str, Any] = {roles_key(p["account"]): grants}
    if p["role"] == "member":
        gov = read_gov(view)
        writes[GOV_KEY] = GovConfig(gov.threshold, gov.member_count + 1).to_plain()
    return Effects(writes, ({"type": "role.granted", **p},))


def _check_revoke(view: StateView, p: dict[str, Any]) -> None:
    grants = read_roles(view, p["account"])
    if not holds(grants, p["role"]):
        raise Rejection("invalid_args", f"params: the account does not hold the {p['role']} role")
    if "classes" in p and not set(p["classes"]) <= issuer_classes(grants):
        raise Rejection("invalid_args", "params: the account is not an issuer of all these classes")
    if p["role"] == "member" and read_gov(view).member_count <= 1:
        raise Rejection("invalid_args", "params: the last member cannot be revoked")


def _apply_revoke(view: StateView, p: dict[str, Any]) -> Effects:
    grants = without_grant(read_roles(view, p["account"]), p["role"], p.get("classes"))
    writes: dict[str, Any] = {roles_key(p["account"]): grants or None}
    if p["role"] == "member":
        gov = read_gov(view)
        writes[GOV_KEY] = GovConfig(gov.threshold, gov.member_count - 1).to_plain()
    return Effects(writes, ({"type": "role.revoked", **p},))


def _check_add_validator(view: StateView, p: dict[str, Any]) -> None:
    vset = read_validator_set(view)
    if p["public"] in vset.by_public:
        raise Rejection("invalid_args", "params.public is already a validator")
    if p["node_id"] in vset.by_node_id:
        raise Rejection("invalid_args", f"params.node_id {p['node_id']!r} is already a validator")
    if p["address"].lower() in {v.address.lower() for v in vset.validators}:
        raise Rejection("invalid_args", f"params.address {p['address']!r} is already a validator's address")
    if vset.n >= MAX_VALIDATORS:
        raise Rejection("invalid_args", f"the set already has the maximum of {MAX_VALIDATORS} validators")


def _apply_add_validator(view: StateView, p: dict[str, Any]) -> Effects:
    vset = read_validator_set(view)
    new = Validator(p["node_id"], p["public"], p["address"])
    plain = [*vset.to_plain(), new.to_plain()]
    return Effects({VALIDATORS_KEY: plain}, ({"type": "validator.added", **new.to_plain()},))


def _target(view: StateView, p: dict[str, Any]) -> Validator | None:
    vset = read_validator_set(view)
    return vset.by_public.get(p["public"]) if "public" in p else vset.by_node_id.get(p["node_id"])


def _check_remove_validator(view: StateView, p: dict[str, Any]) -> None:
    if _target(view, p) is None:
        ref = f"public {p['public']}" if "public" in p else f"node_id {p['node_id']!r}"
        raise Rejection("invalid_args", f"params: {ref} names no validator of the current set")
    if read_validator_set(view).n <= 1:
        raise Rejection("invalid_args", "the last validator cannot be removed")


def _apply_remove_validator(view: StateView, p: dict[str, Any]) -> Effects:
    gone = _target(view, p)
    assert gone is not None  # checked by _check_remove_validator just before
    plain = [v.to_plain() for v in read_validator_set(view).validators if v.public != gone.public]
    return Effects({VALIDATORS_KEY: plain}, ({"type": "validator.removed", **gone.to_plain()},))


def _check_rotate_validator(view: StateView, p: dict[str, Any]) -> None:
    vset = read_validator_set(view)
    if p["node_id"] not in vset.by_node_id:
        raise Rejection("invalid_args", f"params.node_id {p['node_id']!r} names no validator of the current set")
    if p["public"] in vset.by_public:
        raise Rejection("invalid_args", "params.public is already a validator's key")


def _apply_rotate_validator(view: StateView, p: dict[str, Any]) -> Effects:
    vset = read_validator_set(view)
    old = vset.by_node_id[p["node_id"]]
    rotated = vset.rotated(p["node_id"], p["public"])
    event = {"type": "validator.rotated", "node_id": old.node_id, "old_public": old.public, "public": p["public"]}
    return Effects({VALIDATORS_KEY: rotated.to_plain()}, (event,))


@dataclass(frozen=True)
class Action:
    params: a.Schema
    check: Callable[[StateView, dict[str, Any]], None]  # raises Rejection if it does not apply now
    apply: Callable[[StateView, dict[str, Any]], Effects]


ACTIONS: dict[str, Action] = {
    "grant_role": Action(a.Schema(ROLE_PARAMS, _grant_rules), _check_grant, _apply_grant),
    "revoke_role": Action(a.Schema(ROLE_PARAMS, _revoke_rules), _check_revoke, _apply_revoke),
    "add_validator": Action(
        a.Schema((a.Arg("node_id", a.node_id), a.Arg("public", a.account), a.Arg("address", a.address))),
        _check_add_validator,
        _apply_add_validator,
    ),
    "remove_validator": Action(
        a.Schema(
            (a.Arg("public", a.account, required=False), a.Arg("node_id", a.node_id, required=False)), _one_validator_ref
        ),
        _check_remove_validator,
        _apply_remove_validator,
    ),
    "rotate_validator": Action(
        a.Schema((a.Arg("node_id", a.node_id), a.Arg("public", a.account))),
        _check_rotate_validator,
        _apply_rotate_validator,
    ),
}


def check_propose_args(args: dict[str, Any], where: str) -> None:
    """The params schema of the chosen action (the op schema has checked `action` itself)."""
    ACTIONS[args["action"]].params.validate(args["params"], f"{where}.params")


PROPOSE_SCHEMA = a.Schema(
    (a.Arg("action", a.one_of(frozenset(ACTIONS))), a.Arg("params", a.obj)),
    check_propose_args,
)
APPROVE_SCHEMA = a.Schema((a.Arg("proposal_id", a.hash_hex),))


# -- the ops ----------------------------------------------------------------------------------------


def _require_member(view: StateView, tx: Tx) -> None:
    if not holds(read_roles(view, tx.signer), "member"):
        raise Rejection("not_authorized", "only a consortium member may take part in governance")


def _approvals_counted(view: StateView, approvals: list[str]) -> int:
    """Approvals of accounts that are still members: a revoked member's approval no longer counts."""
    return sum(1 for acct in approvals if holds(read_roles(view, acct), "member"))


def _settle(view: StateView, proposal: dict[str, Any], height: int) -> Effects:
    """Store the proposal, executing its action first if its approvals now reach the threshold."""
    counted = _approvals_counted(view, proposal["approvals"])
    threshold = read_gov(view).effective_threshold
    if counted < threshold:
        return Effects({proposal_key(proposal["proposal_id"]): proposal})
    action = ACTIONS[proposal["action"]]
    try:
        action.check(view, proposal["params"])
    except Rejection as r:
        raise Rejection(r.code, f"the proposal reached its threshold but cannot execute: {r.message}") from None
    done = {**proposal, "status": "executed", "executed_at": height}
    executed = {
        "type": "gov.executed",
        "proposal_id": proposal["proposal_id"],
        "action": proposal["action"],
        "params": proposal["params"],
        "approvals": counted,
        "threshold": threshold,
    }
    effects = action.apply(view, proposal["params"])
    return Effects({proposal_key(proposal["proposal_id"]): done}, (executed,)).then(effects)


def process_propose(view: StateView, tx: Tx, height: int) -> Effects:
    _require_member(view, tx)
    action, params = tx.args["action"], tx.args["params"]
    ACTIONS[action].check(view, params)
    proposal = {
        "proposal_id": tx.tx_id,
        "proposer": tx.signer,
        "action": action,
        "params": params,
        "approvals": [tx.signer],
        "status": "open",
        "created_at": height,
        "expires_at": height + PROPOSAL_TTL,
        "executed_at": None,
    }
    opened = {"type": "gov.proposed", "proposal_id": tx.tx_id, "proposer": tx.signer, "action": action, "params": params}
    return Effects(events=(opened,)).then(_settle(view, proposal, height))


def process_approve(view: StateView, tx: Tx, height: int) -> Effects:
    _require_member(view, tx)
    pid = tx.args["proposal_id"]
    proposal = read_proposal(view, pid)
    if proposal is None:
        raise Rejection("proposal_not_found", f"no proposal {pid}")
    if proposal["status"] == "executed":
        raise Rejection("invalid_args", f"proposal {pid} was executed at height {proposal['executed_at']}")
    if height > proposal["expires_at"]:
        raise Rejection("invalid_args", f"proposal {pid} expired at height {proposal['expires_at']}")
    if tx.signer in proposal["approvals"]:
        raise Rejection("already_approved", f"signer already approved proposal {pid}")
    updated = {**proposal, "approvals": sorted([*proposal["approvals"], tx.signer])}
    approved = {"type": "gov.approved", "proposal_id": pid, "approver": tx.signer}
    return Effects(events=(approved,)).then(_settle(view, updated, height))
