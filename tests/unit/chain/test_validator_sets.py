"""Validator sets: a rotated seat keeps its place, id and address; peer addresses others can dial."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chain.crypto import KeyPair
from chain.validators import Validator, ValidatorSet, ValidatorSetError, dial_address_problem

KEYS = [KeyPair.from_seed(bytes([i]) * 32).public for i in range(12)]


@st.composite
def sets_and_a_rotation(draw: st.DrawFn) -> tuple[ValidatorSet, int, str]:
    n = draw(st.integers(1, 8))
    keys = draw(st.permutations(KEYS))
    vset = ValidatorSet(tuple(Validator(f"v{i}", keys[i], f"10.0.0.{i}:2660{i % 10}") for i in range(n)))
    return vset, draw(st.integers(0, n - 1)), draw(st.sampled_from(KEYS))


@given(sets_and_a_rotation())
def test_a_rotation_changes_one_seats_key_and_nothing_else(case: tuple[ValidatorSet, int, str]) -> None:
    vset, seat, key = case
    node_id = vset.validators[seat].node_id
    if key in vset.publics:  # its own current key or another validator's
        with pytest.raises(ValidatorSetError, match="already a validator's key"):
            vset.rotated(node_id, key)
        return
    after = vset.rotated(node_id, key)
    assert [v.node_id for v in after.validators] == [v.node_id for v in vset.validators]
    assert [v.address for v in after.validators] == [v.address for v in vset.validators]
    assert [v.public for v in after.validators] == [key if i == seat else v.public for i, v in enumerate(vset.validators)]
    assert (after.n, after.quorum) == (vset.n, vset.quorum)
    assert all(after.primary(view).node_id == vset.primary(view).node_id for view in range(2 * vset.n))
    assert after.hash != vset.hash


def test_rotating_a_seat_the_set_lacks_is_refused() -> None:
    vset = ValidatorSet((Validator("v0", KEYS[0], "h:1"),))
    with pytest.raises(ValidatorSetError, match="names no validator"):
        vset.rotated("v9", KEYS[1])


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("10.0.0.1:26600", None),
        ("[::1]:1", None),
        ("node-1.example:65535", None),
        ("h" * 253 + ":1", None),
        ("h" * 254 + ":1", "must be host:port"),
        ("host", "must be host:port"),
        ("host:", "must be host:port"),
        ("host:123456", "must be host:port"),
        ("host:0", "port must be 1-65535"),
        ("host:65536", "port must be 1-65535"),
        ("0.0.0.0:26600", "cannot be dialled"),
        ("[::]:26600", "cannot be dialled"),
        ("::26600", "in brackets"),
        ("2001:db8::1:26600", "in brackets"),
        ("[2001:db8::1]:26600", None),
        ("a b:1", "must be host:port"),
        (26600, "must be host:port"),
        (None, "must be host:port"),
    ],
)
def test_dial_addresses(address: object, problem: str | None) -> None:
    found = dial_address_problem(address)
    assert found is None if problem is None else (found is not None and problem in found)
