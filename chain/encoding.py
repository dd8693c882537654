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
from collections.abc import Callable
from functools import partial
from itertools import chain, compress, repeat
from operator import is_
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


_PLAIN_TYPES = frozenset({str, int, bool, type(None), dict, list})


def _is_normal(v: Value) -> bool:
    """True iff v, a value msgpack unpacked (`decode`), is a plain value already in canonical key
    order, so that `_normalize(v)` equals v with the same order; checked without copying."""
    return _all_normal([v])


def _all_normal(values: list[Value]) -> bool:
    """`_is_normal` of every value at once (each at depth 0): many small values, such as a block's
    tx records, share their key sets and their levels' C loops.

    What it checks, level by level (the top value is depth 0): every value is a str, int, bool,
    None, list or dict (no float, bin, ext or timestamp); every dict key is a str; every dict's
    keys are in sorted order; no list or dict lies at depth MAX_DEPTH or deeper. What it need not
    check, because the unpacker guarantees it: integers lie in [-2^63, 2^64-1] (the widest msgpack
    can hold) and strings are valid UTF-8 (the strict decoder refuses encoded surrogates). Repeated
    keys and non-minimal forms are `decode`'s re-encoding comparison's to catch.

    Each level is checked with C-level loops (map, compress, chain) rather than one Python call
    per value, and each distinct key set once: a frame of 440 txs has ~7,000 values, and a
    Python call each was most of its decode.
    """
    level = values
    for depth in range(MAX_DEPTH + 1):
        types = list(map(type, level))
        kinds = set(types)
        if not kinds <= _PLAIN_TYPES:
            return False
        has_dicts, has_lists = dict in kinds, list in kinds
        if not (has_dicts or has_lists):
            return True
        if depth == MAX_DEPTH:
            return False  # a list or dict nested deeper than allowed
        below: list[Value] = []
        if has_dicts:
            dicts = list(compress(level, map(is_, types, repeat(dict))))
            # the txs of a frame share a few key sets: each distinct one is checked once
            if not all(map(_keys_in_order, set(map(tuple, dicts)))):
                return False
            below.extend(chain.from_iterable(map(dict.values, dicts)))
        if has_lists:
            below.extend(chain.from_iterable(compress(level, map(is_, types, repeat(list)))))
        level = below
    raise AssertionError("unreachable: the last level returns")  # pragma: no cover


def _keys_in_order(keys: tuple[object, ...]) -> bool:
    """Whether a dict's keys (in their order) are all str and sorted."""
    return all(type(k) is str for k in keys) and list(keys) == sorted(keys)  # type: ignore[type-var]


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


# how `decode` and `decode_all` unpack: str keys only, lists (not tuples), strings as UTF-8
_unpack = partial(msgpack.unpackb, raw=False, strict_map_key=True, use_list=True)


def decode(data: bytes) -> Value:
    """Decode canonical bytes; anything that is not exactly canonical(v) for some v is refused."""
    try:
        v = _unpack(data)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise EncodingError(f"not a single msgpack value: {e}") from None
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise EncodingError(f"not decodable msgpack: {e}") from None
    normal = _is_normal(v)
    # v in canonical order re-encodes to canonical(v); if it is not, _normalize says why (or
    # the re-encoding differs in key order): the same errors as before this fast path
    if not normal:
        _normalize(v, 0, "$")
    if not normal or pack_normalized(v) != data:
        raise EncodingError("not canonical: re-encoding differs (key order, integer or string form)")
    return v


def decode_all(datas: list[bytes]) -> list[Value]:
    """`decode` of each, its checks made over all of them at once: a block's thousands of small
    records decode faster so. Raises EncodingError if any is not canonical; `decode` each alone
    to learn which and why."""
    try:
        values = list(map(_unpack, datas))
    except (ValueError, TypeError) as e:  # msgpack's errors and UnicodeDecodeError are ValueErrors
        raise EncodingError(f"not decodable msgpack: {e}") from None
    if not (_all_normal(values) and list(map(pack_normalized, values)) == datas):
        raise EncodingError("not canonical: a value is not plain, or its re-encoding differs")
    return values


def H(data: bytes) -> bytes:
    """SHA-256."""
    return hashlib.sha256(data).digest()


def hash_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_value(v: Value) -> str:
    """hex(H(canonical(v))): the id of a tx body, block header or genesis."""
    return hashlib.sha256(canonical(v)).hexdigest()


_DROP_HEX = str.maketrans("", "", "0123456789abcdef")


def is_hex(s: object, nbytes: int) -> TypeGuard[str]:
    """True if s is lowercase hex of exactly nbytes bytes.

    Deleting every hex digit leaves nothing exactly when s has no other character; str.translate
    does that in C (0.16 us for a signature's 128 characters, against 0.76 us for a set test
    character by character), and each tx's signature, signer and id are tested on every node."""
    return type(s) is str and len(s) == 2 * nbytes and not s.translate(_DROP_HEX)
