"""The encoding fast paths give exactly what the reference paths give, errors included.

`normalize`/`canonical` try `_fast_normalize` and fall back to `_normalize`; `decode` checks what
it unpacked with `_is_normal` instead of re-normalising it; consensus messages and the vote record
are encoded from their parts. Each is compared here with the plain definition it replaces.
"""

import sys
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    EncodingError,
    _is_normal,
    _normalize,
    canonical,
    decode,
    decode_all,
    is_hex,
    normalize,
)
from chain.tx import sign_tx
from node.consensus.messages import (
    Commit,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    ViewChange,
    encode_body,
    parse_signed,
)
from node.consensus.pbft import VoteRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from factories import make_block, make_consortium, seeded_key

any_text = st.text(max_size=12)  # lone surrogates included: they must fail the same way
key = any_text | st.integers(-3, 3)
value = st.recursive(
    st.none() | st.booleans() | st.integers(INT_MIN - 2, INT_MAX + 2) | any_text | st.floats(allow_nan=False) | st.binary(max_size=3),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(key, children, max_size=4),
    max_leaves=25,
)


def reference(fn, v):
    try:
        return ("ok", fn(v))
    except EncodingError as e:
        return ("error", str(e))


def reference_decode(data: bytes):
    """decode() as it was before the fast path."""
    try:
        v = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # noqa: BLE001 - unpacking is not what changed: only that it fails is compared
        return ("unpack_error", type(e).__name__)
    try:
        if msgpack.packb(_normalize(v, 0, "$"), use_bin_type=True) != data:
            return ("error", "not canonical: re-encoding differs (key order, integer or string form)")
    except EncodingError as e:
        return ("error", str(e))
    return ("ok", v)


@settings(max_examples=400, deadline=None)
@given(value)
def test_normalize_and_canonical_equal_the_reference(v):
    assert reference(normalize, v) == reference(lambda x: _normalize(x, 0, "$"), v)
    got = reference(canonical, v)
    want = reference(lambda x: msgpack.packb(_normalize(x, 0, "$"), use_bin_type=True), v)
    assert got == want


def test_deep_nesting_fails_the_same_way():
    v: list = []
    for _ in range(40):
        v = [v]
    assert reference(normalize, v) == reference(lambda x: _normalize(x, 0, "$"), v)


def _unsorted_pack(v):
    """msgpack of v with dict keys in insertion order (often not canonical)."""
    return msgpack.packb(v, use_bin_type=True)


@settings(max_examples=400, deadline=None)
@given(value)
def test_decode_accepts_and_refuses_as_the_reference(v):
    try:
        data = _unsorted_pack(v)
    except (TypeError, ValueError, OverflowError):
        return
    got = reference(decode, data)
    want = reference_decode(data)
    if want[0] == "unpack_error":
        assert got[0] == "error"
    else:
        assert got == want


@settings(max_examples=300, deadline=None)
@given(st.lists(value, max_size=6), st.data())
def test_decode_all_gives_what_decode_gives_each(vs, data):
    # some values packed canonically, others in their own key order (often not canonical): the
    # batch gives decode's values when every one decodes, and refuses when any one does not
    datas = []
    for v in vs:
        try:
            datas.append(canonical(v) if data.draw(st.booleans()) else _unsorted_pack(v))
        except (EncodingError, TypeError, ValueError, OverflowError):
            continue
    each = [reference(decode, d) for d in datas]
    if all(kind == "ok" for kind, _ in each):
        assert decode_all(datas) == [v for _, v in each]
    else:
        with pytest.raises(EncodingError):
            decode_all(datas)


@pytest.mark.parametrize("raw", [msgpack.packb({"b": 1, "a": 2}), b"\x82\xa1a\x01\xa1a\x02", msgpack.packb({"a": 1.5})])
def test_decode_error_messages_unchanged(raw):
    with pytest.raises(EncodingError) as got:
        decode(raw)
    assert ("error", str(got.value)) == reference_decode(raw)


# -- consensus messages ---------------------------------------------------------------------------


def _block(n_txs: int, args: dict):
    c = make_consortium(4)
    user = seeded_key("fast-user")
    txs = [sign_tx(user, chain_id="test-chain", op="asset.transfer", args={**args, "i": i}, expires=9, nonce=f"n{i}") for i in range(n_txs)]
    block, _ = make_block(c, 3, c.genesis.hash, txs)
    return c, block


@settings(max_examples=40, deadline=None)
@given(
    n_txs=st.integers(0, 12),
    args=st.dictionaries(st.text(max_size=6), st.text(max_size=10) | st.integers(0, 2**40), max_size=3),
    view=st.integers(0, 2**40),
)
def test_messages_and_vote_record_encode_as_canonical(n_txs, args, view):
    c, block = _block(n_txs, args)
    k0, k1 = c.validator_keys[:2]
    pp = Signed.sign(k0, PrePrepare(view, block.height, block.block_hash))
    prep = Signed.sign(k1, Prepare(view, block.height, block.block_hash))
    commit = Signed.sign(k1, Commit(view, block.height, block.block_hash, "ab" * 64))
    proof = PreparedProof(pp, (prep,))
    vc = Signed.sign(k1, ViewChange(view + 1, block.height, proof))
    nv = Signed.sign(k0, NewView(view + 1, block.height, (vc,), pp))
    for s in (pp, prep, commit, vc, nv):
        assert encode_body(s.msg) == canonical(s.msg.to_plain())
        assert s.body_bytes == canonical(s.msg.to_plain())
        assert s.encode() == canonical(s.to_plain())
        assert parse_signed(decode(s.encode())) == s
    for record in (VoteRecord(view, None, None), VoteRecord(view, proof, None, block), VoteRecord(view + 1, proof, vc, block)):
        assert record.encode() == canonical(record.to_plain())
        back = VoteRecord.from_plain(decode(record.encode()))
        assert back == record and back.block == record.block


@settings(max_examples=40, deadline=None)
@given(
    n_txs=st.integers(0, 12),
    args=st.dictionaries(st.text(max_size=6), st.text(max_size=10) | st.integers(0, 2**40), max_size=3),
)
def test_gossip_encodes_as_canonical_and_parses_as_from_scratch(n_txs, args):
    # the gossip frame is built from each tx's own bytes, and a decoded frame's txs are packed
    # without normalising them again: both must give exactly what the plain definitions give
    from chain import tx as txmod
    from node.p2p.messages import TxGossip, parse_wire

    user = seeded_key("gossip-user")
    txs = tuple(
        sign_tx(user, chain_id="test-chain", op="asset.transfer", args={**args, "i": i}, expires=9, nonce=f"g{i}")
        for i in range(n_txs)
    )
    frame = TxGossip(txs, 0).encode()
    assert frame == canonical(TxGossip(txs, 0).to_plain())
    txmod._recent.clear()  # parsed from scratch, not taken from the memo
    parsed = parse_wire(decode(frame))
    assert isinstance(parsed, TxGossip) and parsed.refused == 0
    for got, want in zip(parsed.txs, txs, strict=True):
        assert (got.body_bytes, got.tx_id, got.sig, list(got.body)) == (want.body_bytes, want.tx_id, want.sig, list(want.body))
        assert got.signature_valid()


# -- decode's canonical check, level by level -------------------------------------------------------


def reference_is_normal(v, depth=0) -> bool:
    """`_is_normal` as it was before the level-by-level check: one recursive call per value."""
    t = type(v)
    if t is str:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if t is int:
        return INT_MIN <= v <= INT_MAX
    if t is dict:
        if depth >= MAX_DEPTH:
            return False
        keys = list(v)
        for k in keys:
            if type(k) is not str:
                return False
            try:
                k.encode("utf-8")
            except UnicodeEncodeError:
                return False
        return keys == sorted(keys) and all(reference_is_normal(x, depth + 1) for x in v.values())
    if t is list:
        return depth < MAX_DEPTH and all(reference_is_normal(x, depth + 1) for x in v)
    return t is bool or v is None


# what a peer can put on the wire: every msgpack type the unpacker turns into a Python value
wire_scalar = (
    st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX) | st.text(max_size=6)
    | st.floats(allow_nan=False) | st.binary(max_size=3)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=3))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999))
)
wire_key = st.sampled_from(["a", "b", "body", "sig", "é", "z", "A", ""]) | st.text(max_size=4) | st.binary(max_size=2)
wire_value = st.recursive(
    wire_scalar,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(wire_key, children, max_size=4),
    max_leaves=30,
)


def _unpacked(v):
    """v as the decoder sees it: packed in its own key order, unpacked as `decode` unpacks."""
    try:
        data = msgpack.packb(v, use_bin_type=True)
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (TypeError, ValueError, OverflowError, msgpack.StackError):
        return None


@settings(max_examples=1500, deadline=None)
@given(wire_value)
def test_is_normal_agrees_with_the_recursive_check(v):
    got = _unpacked(v)
    assert _is_normal(got) == reference_is_normal(got)


@settings(max_examples=300, deadline=None)
@given(wire_value)
def test_is_normal_agrees_on_canonical_values(v):
    # a value in canonical key order is the case that must pass: sort every dict, then compare
    try:
        got = _unpacked(normalize(v))
    except EncodingError:
        return
    assert _is_normal(got) == reference_is_normal(got)
    assert _is_normal(got)


def _nest(depth: int, inner, as_dict: bool):
    v = inner
    for _ in range(depth):
        v = {"k": v} if as_dict else [v]
    return v


@pytest.mark.parametrize("as_dict", [False, True])
@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
@pytest.mark.parametrize("inner", [1, [], {}, [1], {"a": 1}, 1.5, b"x"])
def test_is_normal_agrees_at_the_depth_limit(depth, inner, as_dict):
    v = _nest(depth, inner, as_dict)
    assert _is_normal(v) == reference_is_normal(v)
    data = msgpack.packb(v, use_bin_type=True)
    got, want = reference(decode, data), reference_decode(data)
    assert got == want


@pytest.mark.parametrize(
    "v",
    [
        {"b": 1, "a": 2},  # out of order
        {b"a": 1},  # a bin key
        [{"a": 1}, {"b": 1, "a": 1}],  # the second dict of a level out of order
        [{"a": 1, "b": 2}, {"a": 1, "b": 2.5}],  # a float among many same-shaped dicts
        [{"a": [msgpack.ExtType(1, b"")]}],  # an ext deep down
        [{"a": msgpack.Timestamp(1, 0)}],
        {"a": {"b": b""}},
        [[1, 2], [3, [4, 1.0]]],
    ],
)
def test_is_normal_refuses_what_a_byzantine_peer_can_send(v):
    # well-formed msgpack from an authenticated peer, not canonical: refused by both checks
    assert not _is_normal(v)
    assert not reference_is_normal(v)
    with pytest.raises(EncodingError):
        decode(msgpack.packb(v, use_bin_type=True))


def test_decoded_strings_need_no_utf8_check():
    # the check leaves strings to the unpacker: an encoded lone surrogate never becomes a str
    surrogate = b"\xa3\xed\xa0\x80"  # fixstr of 3 bytes: U+D800 in (invalid) UTF-8
    with pytest.raises(EncodingError):
        decode(surrogate)
    assert _is_normal(msgpack.unpackb(msgpack.packb("é€😀")))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFgx \\n\u0660\u00e9", max_size=10) | st.sampled_from(["", "ab", "0f" * 4, "AB"]), st.integers(0, 4))
def test_is_hex_agrees_with_its_definition(s, nbytes):
    # lowercase hex digits only (no uppercase, no Arabic-Indic or other Unicode digits), exact length
    want = len(s) == 2 * nbytes and all(ch in "0123456789abcdef" for ch in s)
    assert is_hex(s, nbytes) == want


@pytest.mark.parametrize("s", [None, 12, b"ab", ["ab"]])
def test_is_hex_refuses_what_is_not_a_str(s):
    assert not is_hex(s, 1)
