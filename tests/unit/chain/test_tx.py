import pytest
from factories import seeded_key
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.crypto import Domain
from chain.encoding import canonical
from chain.tx import (
    EXPIRY_WINDOW,
    MAX_TX_BYTES,
    TxError,
    check_for_chain,
    check_signature,
    decode_tx,
    parse_tx,
    sign_tx,
)
from contracts import validate_args

KEY = seeded_key("signer")


def make(**over):
    fields = dict(chain_id="c1", op="asset.transfer", args={"asset_id": "a", "to": "b" * 64}, expires=100, nonce="n1")
    fields.update(over)
    return sign_tx(KEY, **fields)


def test_sign_parse_round_trip():
    tx = make()
    assert tx.signature_valid()
    again = decode_tx(tx.encode())
    assert again.tx_id == tx.tx_id and again.sig == tx.sig
    assert parse_tx(tx.to_plain()).tx_id == tx.tx_id


def test_tx_id_is_hash_of_canonical_body():
    import hashlib

    tx = make()
    assert tx.tx_id == hashlib.sha256(canonical(tx.body)).hexdigest()


def code_of(fn, *a):
    with pytest.raises(TxError) as e:
        fn(*a)
    return e.value.code


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: {"body": t["body"]},
        lambda t: {**t, "extra": 1},
        lambda t: {**t, "sig": "00"},
        lambda t: {**t, "body": {**t["body"], "x": 1}},
        lambda t: {**t, "body": {k: v for k, v in t["body"].items() if k != "nonce"}},
        lambda t: {**t, "body": {**t["body"], "signer": "XY"}},
        lambda t: {**t, "body": {**t["body"], "op": "Transfer!"}},
        lambda t: {**t, "body": {**t["body"], "args": []}},
        lambda t: {**t, "body": {**t["body"], "nonce": ""}},
        lambda t: {**t, "body": {**t["body"], "expires": -1}},
        lambda t: {**t, "body": {**t["body"], "expires": True}},
        lambda t: {**t, "body": {**t["body"], "chain_id": ""}},
        lambda t: {**t, "body": {**t["body"], "args": {"x": 1.5}}},
        lambda t: [],
    ],
)
def test_malformed(mutate):
    assert code_of(parse_tx, mutate(make().to_plain())) == "malformed"


def test_too_large():
    with pytest.raises(TxError) as e:
        make(args={"meta": "x" * MAX_TX_BYTES})
    assert e.value.code == "too_large"


def test_bad_signature_on_any_flipped_body_field():
    plain = make().to_plain()
    for field, value in [("nonce", "n2"), ("expires", 101), ("args", {"asset_id": "b", "to": "b" * 64})]:
        forged = parse_tx({"body": {**plain["body"], field: value}, "sig": plain["sig"]})
        assert code_of(check_signature, forged) == "bad_signature"
    other = seeded_key("other").sign(Domain.TX, make().body_bytes)  # right body, wrong signer
    assert code_of(check_signature, parse_tx({**plain, "sig": other})) == "bad_signature"


def test_chain_and_expiry_window():
    tx = make(expires=100)
    check_for_chain(tx, "c1", 100)
    check_for_chain(tx, "c1", 100 - EXPIRY_WINDOW)
    assert code_of(check_for_chain, tx, "c2", 1) == "wrong_chain"
    assert code_of(check_for_chain, tx, "c1", 101) == "expired"
    assert code_of(check_for_chain, tx, "c1", 100 - EXPIRY_WINDOW - 1) == "expires_too_far"


def test_non_canonical_bytes_refused():
    import msgpack

    plain = make().to_plain()
    raw = msgpack.packb({"sig": plain["sig"], "body": plain["body"]})  # keys not sorted
    assert code_of(decode_tx, raw) == "malformed"


def test_a_reparsed_tx_is_the_remembered_one_only_when_its_body_is_byte_identical() -> None:
    from chain.encoding import decode

    key = seeded_key("memo")
    tx = sign_tx(key, chain_id="c", op="asset.transfer", args={"asset_id": "A-1", "to": key.public, "n": 1}, expires=5)
    first = parse_tx(decode(tx.encode()))
    again = parse_tx(decode(tx.encode()))
    assert again is first and again == tx
    # same signature, a body that compares equal in Python (True == 1) but is another tx
    forged = decode(tx.encode())
    forged["body"]["args"]["n"] = True
    other = parse_tx(forged)
    assert other is not first and other.tx_id != tx.tx_id and not other.signature_valid()
    # a hand-built body in another key order is parsed in full, to the same tx
    reordered = {"sig": tx.sig, "body": dict(reversed(list(tx.body.items())))}
    assert parse_tx(reordered).tx_id == tx.tx_id


# Every shape a client can send: each field (and the envelope) replaced by any JSON value.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(where=st.sampled_from(["tx", "body", "sig", "chain_id", "signer", "op", "args", "nonce", "expires", "args.*"]),
       value=_json, op=st.sampled_from(["asset.register", "asset.transfer", "asset.pledge", "asset.amend", "gov.propose"]))
def test_any_tx_shape_is_a_tx_or_a_tx_error(where: str, value: object, op: str) -> None:
    """The whole class behind `"sig": {}` answering 503: bad input must end in a TxError, never another exception."""
    obj = make(op=op).to_plain()
    obj["body"] = dict(obj["body"])
    if where == "tx":
        obj = value
    elif where in ("body", "sig"):
        obj[where] = value
    elif where == "args.*":
        obj["body"]["args"] = {k: value for k in ("asset_id", "to", "class", "doc_hash", "meta", "pledgee", "kind", "account")}
    else:
        obj["body"][where] = value
    try:
        tx = parse_tx(obj)
        validate_args(tx.op, tx.args)
    except TxError:
        pass
