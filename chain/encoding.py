"""Canonical encoding and hashing (docs/protocol.md, Canonical encoding).

Every signed or hashed object is a *plain value*: str, int in [-2^63, 2^64-1], bool, None,
list, and dict with str keys. `canonical(v)` is msgpack of v with dict keys sorted by their
UTF-8 bytes and integers in their smallest form; msgpack-python already chooses the smallest
integer and str formats, so the only work here is checking types and ordering keys.

Sorting str keys by code point equals sorting them by their UTF-8 bytes (UTF-8 preserves code
point order), so `sorted()` on the str keys is exact, provided every string is encodable, which
`_normalize` checks (lone surrogates are not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, TypeGuard

import msgpack

from chain.errors import ChainError

Value: TypeAlias = Any  # a plain value as described above; checked at run time, not by types

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
MAX_DEPTH = 32


class EncodingError(ChainError, ValueError):
    """A value is not a plain value, or bytes are not the canonical encoding of one."""


def _normalize(v: Value, depth: int, path: str) -> Value:
    t = type(v)
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodingError(f"{path}: string is not valid UTF-8 ({e.reason})") from None
        return v
    if t is int:
        if not INT_MIN <= v <= INT_MAX:
            raise EncodingError(f"{path}: integer {v} outside [-2^63, 2^64-1]")
        return v
    if t is bool or v is None:
        return v
    if depth >= MAX_DEPTH:
        raise EncodingError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if t is dict:
        out = {}
        for k in sorted(v, key=_key_order(path)):
            _normalize(k, depth + 1, f"{path}.<key>")
            out[k] = _normalize(v[k], depth + 1, f"{path}.{k}")
        return out
    if t is list:
        return [_normalize(x, depth + 1, f"{path}[{i}]") for i, x in enumerate(v)]
    raise EncodingError(f"{path}: {t.__name__} is not a plain value (str, int, bool, None, list, dict)")


def _key_order(path: str) -> Callable[[object], str]:
    def key(k: object) -> str:
        if type(k) is not str:
            raise EncodingError(f"{path}: dict key {k!r} is not a str")
        return k

    return key


class _NotPlain(Exception):
    """Raised inside the fast paths; the caller reruns `_normalize` for the exact error."""


def _utf8(s: str) -> bool:
    s.encode("utf-8")  # UnicodeEncodeError for a lone surrogate
    return True


def _fast_normalize(v: Value, depth: int) -> Value:
    """`_normalize` for the common case, without building a path for every value.

    Every node and client normalises each tx and block several times (docs/performance.md,
    consortium benchmark); the path strings were half the cost. Anything unusual raises, and
    `normalize`/`canonical` then run `_normalize`, so errors and their messages are unchanged.
    """
    t = type(v)
    if t is str:
        if not v.isascii():
            _utf8(v)
        return v
    if t is int:
        if INT_MIN <= v <= INT_MAX:
            return v
        raise _NotPlain
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _NotPlain
        keys = sorted(v)  # TypeError for keys that do not compare
        for k in keys:
            if type(k) is not str or not (k.isascii() or _utf8(k)):
                raise _NotPlain
        return {k: _fast_normalize(v[k], depth + 1) for k in keys}
    if t is list:
        if depth >= MAX_DEPTH:
            raise _NotPlain
        return [_fast_normalize(x, depth + 1) for x in v]
    if t is bool or v is None:
        return v
    raise _NotPlain


def _is_normal(v: Value, depth: int) -> bool:
    """True iff v is a plain value already in canonical key order, so `_normalize(v) == v`
    with the same order; checked without copying (decode's test of what it unpacked). A call
    per dict or list only: a block's strings and ints (most of its members) are checked inline,
    and a call for each was most of a block frame's decode."""
    t = type(v)
    if t is dict:
        if depth >= MAX_DEPTH:
            return False
        keys = list(v)
        for k in keys:
            if type(k) is not str or not (k.isascii() or _utf8(k)):
                return False
        if keys != sorted(keys):
            return False
        members: Iterable[Value] = v.values()
    elif t is list:
        if depth >= MAX_DEPTH:
            return False
        members = v
    else:
        members = (v,)  # a lone scalar: the loop below checks it
    for x in members:
        tx = type(x)
        if tx is str:
            if not (x.isascii() or _utf8(x)):
                return False
        elif tx is int:
            if not INT_MIN <= x <= INT_MAX:
                return False
        elif tx is dict or tx is list:
            if not _is_normal(x, depth + 1):
                return False
        elif not (tx is bool or x is None):
            return False
    return True


def normalize(v: Value) -> Value:
    """Check that v is a plain value and return a copy whose dicts have canonical key order."""
    try:
        return _fast_normalize(v, 0)
    except (_NotPlain, TypeError, UnicodeEncodeError):
        return _normalize(v, 0, "$")


def canonical(v: Value) -> bytes:
    """The canonical msgpack bytes of a plain value."""
    out: bytes = msgpack.packb(normalize(v), use_bin_type=True)  # msgpack is untyped
    return out


def pack_normalized(v: Value) -> bytes:
    """canonical(v) for a v that `normalize` returned: skips normalising it a second time."""
    out: bytes = msgpack.packb(v, use_bin_type=True)
    return out


def canonical_map(fields: dict[str, bytes]) -> bytes:
    """canonical({k: v, ...}) where each v is given already as canonical bytes.

    Lets a block or tx reuse the encodings it holds instead of normalising every nested value
    again (a 1,000-tx block: ~17 ms saved per encode). Keys sort as in `canonical`.
    """
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(fields))]
    for key in sorted(fields, key=_key_order("$")):
        parts.append(packer.pack(key))
        parts.append(fields[key])
    return b"".join(parts)


def canonical_array(items: list[bytes]) -> bytes:
    """canonical([v, ...]) where each v is given already as canonical bytes."""
    header: bytes = msgpack.Packer(use_bin_type=True).pack_array_header(len(items))
    return header + b"".join(items)


def decode(data: bytes) -> Value:
    """Decode canonical bytes; anything that is not exactly canonical(v) for some v is refused."""
    try:
        v = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise EncodingError(f"not a single msgpack value: {e}") from None
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise EncodingError(f"not decodable msgpack: {e}") from None
    try:
        normal = _is_normal(v, 0)
    except UnicodeEncodeError:
        normal = False
    # v in canonical order re-encodes to canonical(v); if it is not, _normalize says why (or
    # the re-encoding differs in key order): the same errors as before this fast path
    if not normal:
        _normalize(v, 0, "$")
    if not normal or msgpack.packb(v, use_bin_type=True) != data:
        raise EncodingError("not canonical: re-encoding differs (key order, integer or string form)")
    return v


def H(data: bytes) -> bytes:
    """SHA-256."""
    return hashlib.sha256(data).digest()


def hash_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_value(v: Value) -> str:
    """hex(H(canonical(v))): the id of a tx body, block header or genesis."""
    return hashlib.sha256(canonical(v)).hexdigest()


_HEX = frozenset("0123456789abcdef")


def is_hex(s: object, nbytes: int) -> TypeGuard[str]:
    """True if s is lowercase hex of exactly nbytes bytes."""
    return type(s) is str and len(s) == 2 * nbytes and _HEX.issuperset(s)
