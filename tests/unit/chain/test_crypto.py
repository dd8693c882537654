import json
import os

import pytest
from factories import seeded_key
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.crypto import Domain, KeyFileError, KeyPair, load_key_file, verify, write_key_file


def test_sign_verify_and_domain_separation():
    k = seeded_key("a")
    sig = k.sign(Domain.TX, b"msg")
    assert verify(k.public, Domain.TX, b"msg", sig)
    assert not verify(k.public, Domain.COMMIT, b"msg", sig)
    assert not verify(seeded_key("b").public, Domain.TX, b"msg", sig)


@given(st.binary(min_size=1, max_size=64), st.data())
@settings(max_examples=100)
def test_any_flipped_byte_fails(msg, data):
    k = seeded_key("flip")
    sig = bytes.fromhex(k.sign(Domain.TX, msg))
    i = data.draw(st.integers(0, len(msg) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped_msg = bytearray(msg)
    flipped_msg[i] ^= 1 << bit
    assert not verify(k.public, Domain.TX, bytes(flipped_msg), sig.hex())
    j = data.draw(st.integers(0, 63))
    flipped_sig = bytearray(sig)
    flipped_sig[j] ^= 1 << bit
    assert not verify(k.public, Domain.TX, msg, bytes(flipped_sig).hex())


@pytest.mark.parametrize("public,sig", [("zz" * 32, "00" * 64), ("00" * 32, "00" * 64), ("ab" * 32, "AB" * 64), (5, "00" * 64)])
def test_malformed_inputs_are_false_not_errors(public, sig):
    assert verify(public, Domain.TX, b"x", sig) is False


def test_key_file_round_trip_and_mode(tmp_path):
    k = KeyPair.generate()
    p = tmp_path / "k.json"
    write_key_file(p, k)
    assert os.stat(p).st_mode & 0o777 == 0o600
    assert load_key_file(p) == k
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(p, KeyPair.generate())


def _write(tmp_path, obj, mode=0o600):
    p = tmp_path / "k.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    p.chmod(mode)
    return p


def test_key_file_refusals(tmp_path):
    k = seeded_key("x")
    good = {"public": k.public, "private": k.seed.hex()}
    with pytest.raises(KeyFileError, match="group or others"):
        load_key_file(_write(tmp_path, good, 0o644))
    with pytest.raises(KeyFileError, match="not JSON"):
        load_key_file(_write(tmp_path, "{"))
    with pytest.raises(KeyFileError, match="does not match"):
        load_key_file(_write(tmp_path, {**good, "public": seeded_key("y").public}))
    with pytest.raises(KeyFileError, match="private"):
        load_key_file(_write(tmp_path, {**good, "private": "00"}))
    with pytest.raises(KeyFileError, match="key file is"):
        load_key_file(_write(tmp_path, {"public": k.public}))
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "missing.json")
