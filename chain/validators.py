"""Validator sets and quorum sizes.

With n validators, f = floor((n-1)/3) may be faulty. A quorum is the smallest number of
validators such that any two quorums share more than f of them: floor((n+f)/2) + 1. For
n = 3f+1 that is exactly 2f+1 (docs/consensus.md); for other n it is larger than 2f+1, because with
n = 5, say, two sets of 2f+1 = 3 share a single validator, which may be the faulty one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import is_account
from chain.encoding import hash_value
from chain.errors import ChainError
from chain.patterns import WholePattern

NODE_ID_PATTERN = WholePattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ADDRESS_PATTERN = WholePattern(r"^[A-Za-z0-9_.:\[\]-]{1,253}:[0-9]{1,5}$")
# hosts a node may bind but nobody can dial: an address others connect to must not be one
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


def dial_address_problem(address: Any) -> str | None:
    """What keeps `address` from being a peer address the other validators can dial (host:port,
    at most 259 characters, port 1-65535, an IPv6 host in brackets, not an unspecified host);
    None when nothing does."""
    if not ADDRESS_PATTERN.matches(address):
        return "must be host:port (letters, digits, '.', '-', ':', '[]')"
    host, port = address.rsplit(":", 1)
    if not 1 <= int(port) <= 65535:
        return "port must be 1-65535"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return "an IPv6 host goes in brackets, e.g. [2001:db8::1]:26600"
    if host in UNSPECIFIED_HOSTS:
        return f"{host or 'an empty host'} cannot be dialled; give the host the others reach"
    return None


class ValidatorSetError(ChainError, ValueError):
    pass


@dataclass(frozen=True)
class Validator:
    node_id: str
    public: str
    address: str  # host:port of its peer endpoint

    @classmethod
    def from_plain(cls, obj: Any, where: str = "validator") -> Validator:
        if type(obj) is not dict or set(obj) != {"node_id", "public", "address"}:
            raise ValidatorSetError(f'{where}: must be {{"node_id", "public", "address"}}')
        if not NODE_ID_PATTERN.matches(obj["node_id"]):
            raise ValidatorSetError(f"{where}.node_id: 1-64 of letters, digits, '_', '.', '-'")
        if not is_account(obj["public"]):
            raise ValidatorSetError(f"{where}.public: must be 64 lowercase hex characters")
        if not ADDRESS_PATTERN.matches(obj["address"]):
            raise ValidatorSetError(f"{where}.address: must be host:port")
        return cls(obj["node_id"], obj["public"], obj["address"])

    def to_plain(self) -> dict[str, str]:
        return {"node_id": self.node_id, "public": self.public, "address": self.address}


@dataclass(frozen=True)
class ValidatorSet:
    """An ordered set: validators[view mod n] is the primary of a view."""

    validators: tuple[Validator, ...]

    def __post_init__(self) -> None:
        if not self.validators:
            raise ValidatorSetError("a validator set is never empty")
        if len({v.public for v in self.validators}) != len(self.validators):
            raise ValidatorSetError("a validator's key appears twice")
        if len({v.node_id for v in self.validators}) != len(self.validators):
            raise ValidatorSetError("a node_id appears twice")

    @classmethod
    def from_plain(cls, objs: Iterable[Any]) -> ValidatorSet:
        return cls(tuple(Validator.from_plain(o, f"validators[{i}]") for i, o in enumerate(objs)))

    def to_plain(self) -> list[dict[str, str]]:
        return [v.to_plain() for v in self.validators]

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        return (self.n + self.f) // 2 + 1

    @cached_property
    def publics(self) -> frozenset[str]:
        return frozenset(v.public for v in self.validators)

    @cached_property
    def by_public(self) -> dict[str, Validator]:
        return {v.public: v for v in self.validators}

    @cached_property
    def by_node_id(self) -> dict[str, Validator]:
        return {v.node_id: v for v in self.validators}

    @cached_property
    def hash(self) -> str:
        return hash_value(self.to_plain())

    def rotated(self, node_id: str, public: str) -> ValidatorSet:
        """The set with `node_id`'s seat given the key `public`: same place, id and address."""
        seat = self.by_node_id.get(node_id)
        if seat is None:
            raise ValidatorSetError(f"node_id {node_id!r} names no validator of the set")
        if public in self.by_public:
            raise ValidatorSetError("the new key is already a validator's key")
        return ValidatorSet(tuple(Validator(v.node_id, public, v.address) if v is seat else v for v in self.validators))

    def primary(self, view: int) -> Validator:
        return self.validators[view % self.n]
