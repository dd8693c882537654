"""validate_args: the static gate. Each bad arg is refused with invalid_args naming it."""

from __future__ import annotations

from typing import Any

import pytest
from contracts_fixtures import World
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.tx import TxError
from contracts import OPS, execute, validate_args
from contracts.args import MAX_META_BYTES
from contracts.registry import OP_TABLE

ACC = "ab" * 32
HASH = "cd" * 32

GOOD: dict[str, dict[str, Any]] = {
    "asset.register": {"asset_id": "WR-1", "class": "warehouse_receipt", "owner": ACC, "doc_hash": HASH, "meta": {"k": "v"}},
    "asset.transfer": {"asset_id": "WR-1", "to": ACC},
    "asset.pledge": {"asset_id": "WR-1", "pledgee": ACC, "terms_hash": HASH},
    "asset.release": {"asset_id": "WR-1"},
    "asset.freeze": {"asset_id": "WR-1", "reason": "court order"},
    "asset.unfreeze": {"asset_id": "WR-1", "reason": "settled"},
    "asset.force_transfer": {"asset_id": "WR-1", "to": ACC, "order_hash": HASH},
    "asset.amend": {"asset_id": "WR-1", "doc_hash": HASH, "reason": "typo"},
    "asset.redeem": {"asset_id": "WR-1"},
    "gov.propose": {"action": "grant_role", "params": {"account": ACC, "role": "regulator"}},
    "gov.approve": {"proposal_id": HASH},
}


def refusal(op: str, args: Any) -> TxError:
    with pytest.raises(TxError) as e:
        validate_args(op, args)
    return e.value


def test_the_table_covers_every_op() -> None:
    assert set(GOOD) == OPS == set(OP_TABLE)
    for op, args in GOOD.items():
        validate_args(op, args)


def test_unknown_op() -> None:
    assert refusal("asset.steal", {}).code == "unknown_op"


@pytest.mark.parametrize("op", sorted(GOOD))
def test_every_missing_and_every_unknown_arg_is_named(op: str) -> None:
    for name in GOOD[op]:
        args = {k: v for k, v in GOOD[op].items() if k != name}
        e = refusal(op, args)
        assert e.code == "invalid_args" and f"args.{name}" in e.message
    e = refusal(op, {**GOOD[op], "extra": 1})
    assert e.code == "invalid_args" and "'extra'" in e.message


BAD_VALUES = [
    ("asset.register", "asset_id", ""),
    ("asset.register", "asset_id", "a/b"),
    ("asset.register", "asset_id", "-x"),
    ("asset.register", "asset_id", "x" * 129),
    ("asset.register", "asset_id", 7),
    ("asset.register", "class", "Warehouse"),
    ("asset.register", "owner", "AB" * 32),
    ("asset.register", "owner", "ab" * 31),
    ("asset.register", "doc_hash", "zz" * 32),
    ("asset.register", "meta", {"k": 1}),
    ("asset.register", "meta", ["k"]),
    ("asset.register", "meta", {"k": "v" * MAX_META_BYTES}),
    ("asset.transfer", "to", None),
    ("asset.pledge", "terms_hash", HASH[:-1]),
    ("asset.freeze", "reason", ""),
    ("asset.freeze", "reason", "r" * 513),
    ("asset.force_transfer", "order_hash", 5),
    ("gov.propose", "action", "set_threshold"),
    ("gov.propose", "params", []),
    ("gov.approve", "proposal_id", "x"),
]


@pytest.mark.parametrize(("op", "name", "value"), BAD_VALUES)
def test_bad_values_are_named(op: str, name: str, value: Any) -> None:
    e = refusal(op, {**GOOD[op], name: value})
    assert e.code == "invalid_args" and f"args.{name}" in e.message


def test_meta_at_the_limit_passes() -> None:
    from chain.encoding import canonical

    meta = {"k": "v" * (MAX_META_BYTES - 10)}
    while len(canonical(meta)) < MAX_META_BYTES:
        meta["k"] += "v"
    assert len(canonical(meta)) == MAX_META_BYTES
    validate_args("asset.register", {**GOOD["asset.register"], "meta": meta})
    meta["k"] += "v"
    assert "args.meta" in refusal("asset.register", {**GOOD["asset.register"], "meta": meta}).message


BAD_PARAMS = [
    ("grant_role", {"account": ACC, "role": "king"}, "params.role"),
    ("grant_role", {"account": ACC, "role": "issuer"}, "params.classes"),
    ("grant_role", {"account": ACC, "role": "issuer", "classes": []}, "params.classes"),
    ("grant_role", {"account": ACC, "role": "issuer", "classes": ["a", "a"]}, "params.classes"),
    ("grant_role", {"account": ACC, "role": "auditor", "classes": ["a"]}, "params.classes"),
    ("grant_role", {"role": "auditor"}, "params.account"),
    ("revoke_role", {"account": ACC, "role": "member", "classes": ["a"]}, "params.classes"),
    ("add_validator", {"node_id": "v9", "public": ACC}, "params.address"),
    ("add_validator", {"node_id": "v 9", "public": ACC, "address": "h:1"}, "params.node_id"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "nohost"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "h:0"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "h:65536"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "0.0.0.0:27009"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "[::]:27009"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "h" * 254 + ":1"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": "h/x:1"}, "params.address"),
    ("add_validator", {"node_id": "v9", "public": ACC, "address": 27009}, "params.address"),
    ("rotate_validator", {"node_id": "v1"}, "params.public"),
    ("rotate_validator", {"public": ACC}, "params.node_id"),
    ("rotate_validator", {"node_id": "v1", "public": ACC.upper()}, "params.public"),
    ("rotate_validator", {"node_id": "v1", "public": ACC, "address": "h:1"}, "params"),
    ("remove_validator", {}, "params"),
    ("remove_validator", {"node_id": "v1", "public": ACC}, "params"),
    ("remove_validator", {"node": "v1"}, "params"),
]


@pytest.mark.parametrize(("action", "params", "named"), BAD_PARAMS)
def test_bad_gov_params_are_named(action: str, params: dict, named: str) -> None:
    e = refusal("gov.propose", {"action": action, "params": params})
    assert e.code == "invalid_args" and f"args.{named}" in e.message


def test_good_gov_params() -> None:
    for action, params in [
        ("grant_role", {"account": ACC, "role": "issuer", "classes": ["ship"]}),
        ("revoke_role", {"account": ACC, "role": "issuer"}),
        ("revoke_role", {"account": ACC, "role": "issuer", "classes": ["ship"]}),
        ("add_validator", {"node_id": "v9", "public": ACC, "address": "10.0.0.9:27009"}),
        ("add_validator", {"node_id": "v9", "public": ACC, "address": "h" * 253 + ":65535"}),
        ("add_validator", {"node_id": "v9", "public": ACC, "address": "[::1]:1"}),
        ("rotate_validator", {"node_id": "v1", "public": ACC}),
        ("remove_validator", {"node_id": "v1"}),
        ("remove_validator", {"public": ACC}),
    ]:
        validate_args("gov.propose", {"action": action, "params": params})


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=12) | st.sampled_from([ACC, HASH, "WR-1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_args(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    op = draw(st.sampled_from(sorted(GOOD)))
    args = dict(GOOD[op])
    for name in draw(st.lists(st.sampled_from([*sorted(args), "params", "x"]), max_size=3)):
        if draw(st.booleans()):
            args.pop(name, None)
        else:
            args[name] = draw(values)
    return op, args


@settings(max_examples=150, deadline=None)
@given(mutated_args())
def test_whatever_passes_validation_executes_without_raising(case: tuple[str, dict[str, Any]]) -> None:
    """The contract of execute: for any tx validate_args accepts, a receipt, never an exception."""
    op, args = case
    try:
        validate_args(op, args)
    except TxError as e:
        assert e.code == "invalid_args"
        return
    w = World()
    for key in (w.c.members[0], w.c.issuer, w.c.regulator, w.c.users[0]):
        writes, receipt = execute(w.state, w.sign(key, op, args), 3, 0)
        assert receipt["status"] in ("ok", "rejected")
        assert (writes == {}) == (receipt["status"] == "rejected")


def test_execute_refuses_an_op_that_never_passed_validation() -> None:
    w = World()
    with pytest.raises(TxError) as e:
        execute(w.state, w.sign(w.c.issuer, "asset.steal", {}), 1, 0)
    assert e.value.code == "unknown_op"


def test_rejections_carry_only_documented_codes() -> None:
    from contracts import REJECTION_CODES, Rejection

    assert len(REJECTION_CODES) == 11
    with pytest.raises(ValueError):
        Rejection("nope", "not a rejection code")
