import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import INT_MAX, INT_MIN, EncodingError, canonical, decode, hash_value, is_hex

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
plain = st.recursive(
    st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)


@given(plain)
@settings(max_examples=300)
def test_round_trip(v):
    assert decode(canonical(v)) == v


@given(st.dictionaries(text, st.integers(0, 10), min_size=2, max_size=8))
def test_key_order_does_not_matter(d):
    reversed_d = dict(reversed(list(d.items())))
    assert canonical(d) == canonical(reversed_d)


def test_keys_sorted_by_utf8_bytes():
    # 'é' (U+00E9, C3 A9) sorts after 'z' (7A) and before '中' (E4 B8 AD) in UTF-8 byte order
    enc = canonical({"中": 1, "é": 2, "z": 3, "A": 4})
    assert list(decode(enc)) == ["A", "z", "é", "中"]


@pytest.mark.parametrize(
    "bad",
    [1.5, b"bytes", (1, 2), {1: "x"}, {"a": {2: 3}}, INT_MAX + 1, INT_MIN - 1, "\ud800", {"k": set()}, object()],
)
def test_refuses_non_plain_values(bad):
    with pytest.raises(EncodingError):
        canonical(bad)


def test_refuses_deep_nesting():
    v: list = []
    for _ in range(100):
        v = [v]
    with pytest.raises(EncodingError, match="nested"):
        canonical(v)


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb({"b": 1, "a": 2}),  # keys out of order
        b"\xcd\x00\x05",  # uint16 for a value that fits a positive fixint
        b"\xd9\x01a",  # str8 for a 1-char string that fits fixstr
        b"\xc4\x01a",  # bin
        b"\xcb" + b"\x00" * 8,  # float64
        msgpack.packb(1) + msgpack.packb(2),  # trailing bytes
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate key
        b"\xc1",  # never used
        b"\x92\x01",  # truncated
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xd4\x01\x00",  # ext type
        b"",
    ],
)
def test_decode_refuses_non_canonical(raw):
    with pytest.raises(EncodingError):
        decode(raw)


@given(plain, st.binary(min_size=1, max_size=4))
def test_appended_bytes_refused(v, extra):
    with pytest.raises(EncodingError):
        decode(canonical(v) + extra)


def test_smallest_integer_forms():
    assert canonical(0) == b"\x00"
    assert canonical(-1) == b"\xff"
    assert canonical(255) == b"\xcc\xff"
    assert canonical(2**64 - 1) == b"\xcf" + b"\xff" * 8
    assert canonical(-(2**63)) == b"\xd3\x80" + b"\x00" * 7
    assert canonical(True) == b"\xc3" and canonical(None) == b"\xc0"


def test_hash_value_is_sha256_of_canonical():
    import hashlib

    assert hash_value({"a": [1]}) == hashlib.sha256(canonical({"a": [1]})).hexdigest()
    assert is_hex(hash_value([1]), 32)
    assert not is_hex("AB" * 32, 32)
    assert not is_hex("ab" * 31, 32)
