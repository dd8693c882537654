"""Argument schemas: the static shape of each op's args, checked before a tx enters a block.

A schema lists its args, each with a check that returns what is wrong with a value (or None).
The same schema objects sit in the op table (contracts/registry.py) and in the governance
action table, so every arg is described exactly once. Failures are `TxError("invalid_args")`
naming the arg; unknown args are refused too, so a typo never passes as a silently ignored field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain.crypto import is_account
from chain.encoding import EncodingError, canonical, is_hex
from chain.genesis import CLASS_PATTERN, ROLES
from chain.limits import MAX_CLASSES
from chain.patterns import WholePattern
from chain.tx import TxError
from chain.validators import NODE_ID_PATTERN, dial_address_problem

Check = Callable[[Any], str | None]  # what is wrong with a value, or None if nothing

# Deliberately equal to the RPC's pattern (node/rpc/models.py), which must accept every id
# the contracts do. No '/', so an id can never reach into another state key.
ASSET_ID_PATTERN = WholePattern(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
MAX_META_BYTES = 4096
MAX_REASON_CHARS = 512


def account(v: Any) -> str | None:
    return None if is_account(v) else "must be an account (64 lowercase hex characters)"


def hash_hex(v: Any) -> str | None:
    return None if is_hex(v, 32) else "must be a hash: 64 lowercase hex characters"


def asset_id(v: Any) -> str | None:
    if ASSET_ID_PATTERN.matches(v):
        return None
    return "must be 1-128 of letters, digits, '_', '.', ':', '-', starting with a letter or digit"


def class_name(v: Any) -> str | None:
    if CLASS_PATTERN.matches(v):
        return None
    return "must be a class name like 'warehouse_receipt' (lowercase, digits, '_', at most 32)"


def meta(v: Any) -> str | None:
    if type(v) is not dict:
        return "must be an object of str -> str"
    if any(type(k) is not str for k in v):
        return "keys must be str"
    for k in sorted(v):
        if type(v[k]) is not str:
            return f"value of {k!r} must be a str"
    try:
        size = len(canonical(v))
    except EncodingError as e:
        return f"is not a plain value: {e}"
    if size > MAX_META_BYTES:
        return f"is {size} bytes encoded; the limit is {MAX_META_BYTES}"
    return None


def reason(v: Any) -> str | None:
    if type(v) is str and 0 < len(v) <= MAX_REASON_CHARS:
        return None
    return f"must be a non-empty str of at most {MAX_REASON_CHARS} characters"


def role(v: Any) -> str | None:
    return None if type(v) is str and v in ROLES else f"must be one of {', '.join(sorted(ROLES))}"


def classes(v: Any) -> str | None:
    if type(v) is not list or not 0 < len(v) <= MAX_CLASSES:
        return f"must be a non-empty list of at most {MAX_CLASSES} class names"
    for c in v:
        if class_name(c) is not None:
            return f"{c!r} is not a class name like 'warehouse_receipt'"
    if len(set(v)) != len(v):
        return "lists a class twice"
    return None


def node_id(v: Any) -> str | None:
    if NODE_ID_PATTERN.matches(v):
        return None
    return "must be 1-64 of letters, digits, '_', '.', '-'"


def address(v: Any) -> str | None:
    """A peer address every validator will dial (the same rule as the genesis ceremony's)."""
    return dial_address_problem(v)


def one_of(allowed: frozenset[str]) -> Check:
    def check(v: Any) -> str | None:
        return None if type(v) is str and v in allowed else f"must be one of {', '.join(sorted(allowed))}"

    return check


def obj(v: Any) -> str | None:
    return None if type(v) is dict else "must be an object"


@dataclass(frozen=True)
class Arg:
    name: str
    check: Check
    required: bool = True


@dataclass(frozen=True)
class Schema:
    args: tuple[Arg, ...]
    # Rules across args (e.g. "classes only for issuers"); runs once each arg has passed.
    extra: Callable[[dict[str, Any], str], None] | None = None
    _known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # every tx's args are validated at admission and again in its block, on every node
        object.__setattr__(self, "_known", frozenset(a.name for a in self.args))

    def validate(self, values: Any, where: str = "args") -> None:
        if type(values) is not dict:
            raise invalid(where, "must be an object")
        known = self._known
        if not known.issuperset(values):
            unknown = sorted(k for k in values if k not in known)
            raise invalid(where, f"unknown arg {unknown[0]!r}; expected {', '.join(sorted(known))}")
        for a in self.args:
            if a.name not in values:
                if a.required:
                    raise invalid(f"{where}.{a.name}", "is missing")
                continue
            problem = a.check(values[a.name])
            if problem is not None:
                raise invalid(f"{where}.{a.name}", problem)
        if self.extra is not None:
            self.extra(values, where)


def invalid(where: str, problem: str) -> TxError:
    return TxError("invalid_args", f"{where} {problem}")
