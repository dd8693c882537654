"""The compact sparse Merkle tree: order independence, collapse, proofs that fail when tampered."""

from __future__ import annotations

import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chain import smt

KEYS = st.binary(min_size=1, max_size=12)
VALUES = st.binary(min_size=0, max_size=16)


class Nodes(dict):
    def read(self, h: bytes) -> bytes | None:
        return self.get(smt.node_key(h))


def apply(nodes: Nodes, root: str, changes: dict[bytes, bytes | None]) -> str:
    root, writes = smt.update(root, changes, nodes.read)
    nodes.update(writes)
    return root


def root_of(mapping: dict[bytes, bytes]) -> str:
    return apply(Nodes(), smt.EMPTY_ROOT, dict(mapping))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=40), st.randoms(use_true_random=False))
def test_root_independent_of_order_and_batching(mapping: dict[bytes, bytes], rnd: random.Random) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    nodes, root = Nodes(), smt.EMPTY_ROOT
    i = 0
    while i < len(items):
        n = rnd.randint(1, 5)
        root = apply(nodes, root, dict(items[i : i + n]))
        i += n
    assert root == root_of(mapping)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=40), st.data())
def test_deletes_restore_the_root_of_what_remains(mapping: dict[bytes, bytes], data: st.DataObject) -> None:
    doomed = data.draw(st.sets(st.sampled_from(sorted(mapping))))
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, dict(mapping))
    root = apply(nodes, root, {k: None for k in doomed} | {b"never-there": None})
    assert root == root_of({k: v for k, v in mapping.items() if k not in doomed})


def test_empty_and_single_leaf_roots() -> None:
    assert root_of({}) == smt.EMPTY_ROOT
    # a lone leaf is the root itself: collapsed, not hung 256 levels down
    assert root_of({b"k": b"v"}) == smt.leaf_hash(smt._sha(b"k"), smt._sha(b"v")).hex()
    nodes = Nodes()
    r = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1", b"b": b"2"})
    assert apply(nodes, r, {b"a": None, b"b": None}) == smt.EMPTY_ROOT


def test_tree_depth_is_logarithmic() -> None:
    mapping = {b"key-%d" % i: b"v" for i in range(2000)}
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, mapping)
    depths = [len(smt.prove(root, k, nodes.read).siblings) for k in list(mapping)[:200]]
    assert max(depths) < 40


def test_old_roots_stay_provable() -> None:
    nodes = Nodes()
    r1 = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1", b"b": b"2"})
    r2 = apply(nodes, r1, {b"a": b"changed"})
    assert smt.verify_proof(r1, b"a", b"1", smt.prove(r1, b"a", nodes.read))
    assert smt.verify_proof(r2, b"a", b"changed", smt.prove(r2, b"a", nodes.read))
    assert not smt.verify_proof(r2, b"a", b"1", smt.prove(r2, b"a", nodes.read))


def _flip(b: bytes, i: int, bit: int) -> bytes:
    i %= len(b)
    return b[:i] + bytes([b[i] ^ (1 << bit)]) + b[i + 1 :]


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(KEYS, VALUES, min_size=1, max_size=30),
    st.data(),
    st.integers(0, 10_000),
    st.integers(0, 7),
)
def test_proof_verifies_iff_untampered(mapping: dict[bytes, bytes], data: st.DataObject, pos: int, bit: int) -> None:
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, dict(mapping))
    key = data.draw(st.one_of(st.sampled_from(sorted(mapping)), KEYS))
    value = mapping.get(key)
    proof = smt.prove(root, key, nodes.read)
    assert smt.verify_proof(root, key, value, proof)
    assert smt.verify_proof(root, key, value, smt.Proof.from_plain(proof.to_plain()))
    # the root, the key, the value and every byte of the proof matter
    assert not smt.verify_proof(_flip(bytes.fromhex(root), pos, bit).hex(), key, value, proof)
    if value is None:
        assert not smt.verify_proof(root, key, b"anything", proof)
    else:
        assert not smt.verify_proof(root, key, value + b"x", proof)
        assert not smt.verify_proof(root, key, None, proof)
        # an inclusion proof names its key (an absence proof may cover a whole empty subtree)
        assert not smt.verify_proof(root, key + b"x", value, proof)
    if proof.siblings:
        i = pos % len(proof.siblings)
        sibs = list(proof.siblings)
        sibs[i] = _flip(sibs[i], pos // 7, bit)
        assert not smt.verify_proof(root, key, value, smt.Proof(tuple(sibs), proof.leaf))
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.siblings[:-1], proof.leaf))
    if proof.leaf is not None:
        kh, vh = proof.leaf
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.siblings, (_flip(kh, pos, bit), vh)))
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.siblings, (kh, _flip(vh, pos, bit))))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=30), KEYS)
def test_non_inclusion(mapping: dict[bytes, bytes], absent: bytes) -> None:
    mapping.pop(absent, None)
    assume(mapping)
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, dict(mapping))
    proof = smt.prove(root, absent, nodes.read)
    assert smt.verify_proof(root, absent, None, proof)
    assert smt.get(root, absent, nodes.read) is None
    # a present key's proof cannot be passed off as the absence of that key
    some = sorted(mapping)[0]
    assert not smt.verify_proof(root, some, None, smt.prove(root, some, nodes.read))
    assert smt.get(root, some, nodes.read) == smt._sha(mapping[some])


def test_missing_node_is_an_error() -> None:
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1", b"b": b"2", b"c": b"3"})
    try:
        smt.update(root, {b"d": b"4"}, lambda h: None)
    except smt.SmtError:
        return
    raise AssertionError("a missing node went unnoticed")
