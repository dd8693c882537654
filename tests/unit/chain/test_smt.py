"""The compact sparse Merkle tree: order independence, collapse, proofs that fail when tampered."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chain import smt

KEYS = st.binary(min_size=1, max_size=12)
VALUES = st.binary(min_size=0, max_size=16)


class Nodes(dict):
    """A store's records of the tree, each update one height above the last."""

    height = 0
    at: dict[str, int]

    def read(self, key: bytes) -> bytes | None:
        return self.get(key)

    def ref(self, root: str) -> smt.RootRef:
        """Where the tree of `root` is stored: the root record of the height that made it."""
        if root == smt.EMPTY_ROOT:
            return smt.EMPTY_REF_ROOT
        return smt.root_at(self.read, self.at[root])


def apply(nodes: Nodes, root: str, changes: Mapping[bytes, bytes | None]) -> str:
    if not hasattr(nodes, "at"):
        nodes.at = {}
    ref = nodes.ref(root)
    nodes.height += 1
    root, writes = smt.update(ref, changes, nodes.read, nodes.height)
    nodes.update(writes)
    nodes.at[root] = nodes.height
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


def _keys_under_root_children(children: list[int]) -> dict[bytes, bytes]:
    """One key whose path starts with each of these nibbles (the root's children)."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < len(children):
        k = b"key-%d" % i
        nib = smt.nibble(smt._sha(k), 0)
        if nib in children and nib not in found:
            found[nib] = k
        i += 1
    return {found[n]: b"v%d" % n for n in children}


def test_an_inner_node_hashes_and_stores_its_non_empty_children_only() -> None:
    """The root of keys under children 3, 9 and 14 is H(0x02 || bitmap || their three leaves'
    hashes), written down here from the rule, not from the code; its record is that preimage and
    the three versions: 3 + 40 * 3 bytes."""
    mapping = _keys_under_root_children([14, 3, 9])
    leaves = {smt.nibble(smt._sha(k), 0): smt.leaf_hash(smt._sha(k), smt._sha(v)) for k, v in mapping.items()}
    bitmap = (1 << 3 | 1 << 9 | 1 << 14).to_bytes(2, "big")
    expected = hashlib.sha256(b"\x02" + bitmap + leaves[3] + leaves[9] + leaves[14]).hexdigest()
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, mapping)
    assert root == expected
    record = nodes[smt.node_key(bytes.fromhex(root), smt.version_bytes(1))]
    assert record == b"\x02" + bitmap + leaves[3] + leaves[9] + leaves[14] + smt.version_bytes(1) * 3
    assert [smt.child(record, i) for i in (3, 9, 14, 0)] == [
        (leaves[3], smt.version_bytes(1)), (leaves[9], smt.version_bytes(1)), (leaves[14], smt.version_bytes(1)),
        (smt.EMPTY, smt.NO_VERSION)]
    # a fourth child inserted in its place, one replaced, the others kept
    more = _keys_under_root_children([0, 9])
    root2 = apply(nodes, root, more)
    record2 = nodes[smt.node_key(bytes.fromhex(root2), smt.version_bytes(2))]
    assert record2[1:3] == (1 << 0 | 1 << 3 | 1 << 9 | 1 << 14).to_bytes(2, "big") and len(record2) == 3 + 40 * 4
    assert smt.child(record2, 3) == (leaves[3], smt.version_bytes(1)) and smt.child(record2, 9)[1] == smt.version_bytes(2)
    assert root2 == root_of({**mapping, **more})


@pytest.mark.parametrize("record", [
    b"\x02" + (0b111).to_bytes(2, "big") + bytes(40 * 2),  # the bitmap names three children, two follow
    b"\x02" + (0b11).to_bytes(2, "big") + bytes(40 * 3),  # more than it names
    b"\x02" + bytes(2),  # no child at all
    b"\x02" + bytes(1),  # no room for a bitmap
    b"\x03" + (0b11).to_bytes(2, "big") + bytes(40 * 2),  # neither tag
    b"\x00" + bytes(63),  # a leaf one byte short
])
def test_a_malformed_node_record_is_refused_as_it_is_read(record: bytes) -> None:
    assert not smt.is_node_record(record)
    with pytest.raises(smt.SmtError, match="missing or malformed"):
        smt.load_node(lambda key: record, bytes(32), smt.version_bytes(1))


def test_tree_depth_is_logarithmic() -> None:
    mapping = {b"key-%d" % i: b"v" for i in range(2000)}
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, mapping)
    depths = [len(smt.prove(nodes.ref(root), k, nodes.read).levels) for k in list(mapping)[:200]]
    assert max(depths) < 8  # ~log16(2000) = 2.7 levels of sixteen children, not 64


def test_old_roots_stay_provable() -> None:
    nodes = Nodes()
    r1 = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1", b"b": b"2"})
    r2 = apply(nodes, r1, {b"a": b"changed"})
    assert smt.verify_proof(r1, b"a", b"1", smt.prove(nodes.ref(r1), b"a", nodes.read))
    assert smt.verify_proof(r2, b"a", b"changed", smt.prove(nodes.ref(r2), b"a", nodes.read))
    assert not smt.verify_proof(r2, b"a", b"1", smt.prove(nodes.ref(r2), b"a", nodes.read))


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
    proof = smt.prove(nodes.ref(root), key, nodes.read)
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
    if proof.levels:
        # any byte of any of a level's fifteen hashes, an empty one's zeros included
        i = pos % len(proof.levels)
        j = (pos // 7) % (smt.ARITY - 1)
        levels = [list(level) for level in proof.levels]
        levels[i][j] = _flip(levels[i][j], pos // 3, bit)
        assert not smt.verify_proof(root, key, value, smt.Proof(tuple(map(tuple, levels)), proof.leaf))
        # a level dropped, or one hash short or too many
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.levels[:-1], proof.leaf))
        short = proof.levels[:i] + (proof.levels[i][:-1],) + proof.levels[i + 1 :]
        assert not smt.verify_proof(root, key, value, smt.Proof(short, proof.leaf))
        long = proof.levels[:i] + (proof.levels[i] + (smt.EMPTY,),) + proof.levels[i + 1 :]
        assert not smt.verify_proof(root, key, value, smt.Proof(long, proof.leaf))
        # the fifteen in another order put the path's hash among other children
        if len(set(proof.levels[i])) > 1:
            turned = proof.levels[:i] + (proof.levels[i][1:] + proof.levels[i][:1],) + proof.levels[i + 1 :]
            assert not smt.verify_proof(root, key, value, smt.Proof(turned, proof.leaf))
    if proof.leaf is not None:
        kh, vh = proof.leaf
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.levels, (_flip(kh, pos, bit), vh)))
        assert not smt.verify_proof(root, key, value, smt.Proof(proof.levels, (kh, _flip(vh, pos, bit))))


def test_a_proof_of_malformed_levels_is_refused_as_it_is_read() -> None:
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, {b"k%d" % i: b"v" for i in range(300)})
    plain = smt.prove(nodes.ref(root), b"k7", nodes.read).to_plain()
    assert plain["levels"] and all(len(level) == smt.ARITY - 1 for level in plain["levels"])
    assert any("" in level for level in plain["levels"])  # an empty child is written as "" (a sparse tree has many)
    bad_levels: list[object] = [
        [plain["levels"][0][:-1]],  # fourteen hashes
        [plain["levels"][0] + [""]],  # sixteen
        [[None] * (smt.ARITY - 1)],
        [["AB" * 32] * (smt.ARITY - 1)],  # upper case
        [[""] * (smt.ARITY - 1)] * (smt.MAX_DEPTH + 1),  # deeper than a path
        "levels",
    ]
    for levels in bad_levels:
        with pytest.raises(ValueError):
            smt.Proof.from_plain({**plain, "levels": levels})
    with pytest.raises(ValueError):
        smt.Proof.from_plain({"siblings": [], "leaf": None})  # version 3's binary proof


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=30), KEYS)
def test_non_inclusion(mapping: dict[bytes, bytes], absent: bytes) -> None:
    mapping.pop(absent, None)
    assume(mapping)
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, dict(mapping))
    proof = smt.prove(nodes.ref(root), absent, nodes.read)
    assert smt.verify_proof(root, absent, None, proof)
    assert smt.get(nodes.ref(root), absent, nodes.read) is None
    # a present key's proof cannot be passed off as the absence of that key
    some = min(mapping)
    assert not smt.verify_proof(root, some, None, smt.prove(nodes.ref(root), some, nodes.read))
    assert smt.get(nodes.ref(root), some, nodes.read) == smt._sha(mapping[some])


def test_missing_node_is_an_error() -> None:
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1", b"b": b"2", b"c": b"3"})
    try:
        smt.update(nodes.ref(root), {b"d": b"4"}, lambda key: None, 2)
    except smt.SmtError:
        return
    raise AssertionError("a missing node went unnoticed")


def _prune(nodes: Nodes, state_from: int) -> None:
    """What a pruning store does (chain/store.py): delete the nodes retired at or below
    state_from, their marks, and the roots below it."""
    for key in [k for k in nodes if k.startswith(smt.STALE_PREFIX) and smt.stale_height(k) <= state_from]:
        for node in smt.retired_keys(nodes.pop(key)):
            nodes.pop(node, None)
    for height in range(state_from):
        nodes.pop(smt.root_key(height), None)


BATCHES = st.lists(st.dictionaries(st.sampled_from([b"k%d" % i for i in range(24)]), st.none() | VALUES, max_size=8),
                   min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(BATCHES, st.data())
def test_pruning_keeps_every_state_from_the_horizon_and_nothing_else(batches: list, data: st.DataObject) -> None:
    nodes = Nodes()
    root = smt.EMPTY_ROOT
    states: list[dict[bytes, bytes]] = [{}]
    nodes.update({smt.root_key(0): smt.root_record(smt.EMPTY_REF_ROOT)})
    for batch in batches:
        root = apply(nodes, root, batch)
        states.append({k: v for k, v in {**states[-1], **batch}.items() if v is not None})
    head = len(batches)
    state_from = data.draw(st.integers(0, head))
    _prune(nodes, state_from)
    # every state kept answers for every key it holds, and for the absence of the others
    for height in range(state_from, head + 1):
        ref = smt.root_at(nodes.read, height)
        for i in range(24):
            key = b"k%d" % i
            value = states[height].get(key)
            assert smt.get(ref, key, nodes.read) == (None if value is None else smt._sha(value))
    # and the store holds exactly the nodes of the states kept: no node a kept state needs was
    # retired, and every node replaced was marked (pruning to the head leaves only the head's tree)
    kept = set().union(*(smt.node_keys(nodes.read, smt.root_at(nodes.read, h)) for h in range(state_from, head + 1)))
    assert {k for k in nodes if k.startswith(smt.NODE_PREFIX)} == kept
    # and the leaves' data of exactly the leaves kept: a retired leaf's l/ record went with it
    leaves = {smt.LEAF_DATA_PREFIX + k[2:] for k in kept if nodes[k][:1] == smt.LEAF}
    assert {k for k in nodes if k.startswith(smt.LEAF_DATA_PREFIX)} == leaves
    if state_from > 0:
        with pytest.raises(smt.SmtError):
            smt.root_at(nodes.read, state_from - 1)


def test_a_retired_node_record_names_the_leaf_data_of_its_leaves_only() -> None:
    leaf, inner = bytes(8) + b"L" * 32, bytes(8) + b"I" * 32
    record = smt.retired_record([leaf], [inner])
    assert smt.retired_keys(record) == [smt.NODE_PREFIX + leaf, smt.NODE_PREFIX + inner, smt.LEAF_DATA_PREFIX + leaf]
    assert smt.retired_keys(smt.retired_record([], [inner])) == [smt.NODE_PREFIX + inner]
    for damaged in (b"", record[:3], record[:-1], (2).to_bytes(4, "big") + leaf):  # the last counts a leaf it lacks
        with pytest.raises(smt.SmtError):
            smt.retired_keys(damaged)


def test_new_nodes_are_stored_under_their_height() -> None:
    # the layout's point: a block's nodes sort together, after every older one
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, {b"k%d" % i: b"v" for i in range(100)})
    before = {k for k in nodes if k.startswith(smt.NODE_PREFIX)}
    apply(nodes, root, {b"k7": b"w"})
    new = {k for k in nodes if k.startswith(smt.NODE_PREFIX)} - before
    assert new and min(new) > max(before)
    assert all(k[2:10] == smt.version_bytes(2) for k in new)


def test_a_leaf_joined_by_a_new_sibling_stays_where_it_is_stored() -> None:
    # a leaf an update only moves down keeps its hash: it is neither written again (n/, l/) nor
    # retired (z/), and the new tree points at it where an earlier height stored it
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, {b"a": b"1"})
    (leaf,) = [k for k in nodes if k.startswith(smt.NODE_PREFIX)]
    ref = nodes.ref(root)
    nodes.height += 1
    root2, writes = smt.update(ref, {b"b": b"2"}, nodes.read, nodes.height)
    assert leaf in set(smt.node_keys({**nodes, **writes}.get, smt.root_at({**nodes, **writes}.get, 2)))
    assert not [k for k in writes if k.startswith(smt.STALE_PREFIX)]
    assert len([k for k in writes if k.startswith(smt.LEAF_DATA_PREFIX)]) == 1  # b's alone
    assert root2 == root_of({b"a": b"1", b"b": b"2"})


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=60), st.lists(st.tuples(KEYS, st.none() | VALUES), min_size=1, max_size=12))
def test_an_update_writes_exactly_the_nodes_that_enter_and_retires_exactly_those_that_leave(
    mapping: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]]
) -> None:
    # block by block, one change at a time (the update's loop down a single path) and then some
    # at once (its recursion): the new tree's nodes are the old tree's less the z/ record's plus
    # the new n/ records, and the root is that of a tree built from scratch
    nodes = Nodes()
    root = apply(nodes, smt.EMPTY_ROOT, dict(mapping))
    state: dict[bytes, bytes | None] = dict(mapping)
    for batch in [[c] for c in changes] + [changes]:
        before = set(smt.node_keys(nodes.read, nodes.ref(root)))
        height = nodes.height + 1
        root = apply(nodes, root, dict(batch))
        record = nodes.get(smt.stale_key(height))
        doomed = smt.retired_keys(record) if record is not None else []
        retired = {k for k in doomed if k.startswith(smt.NODE_PREFIX)}
        # the record's leaves are leaves, its other nodes inner ones: an l/ key for each leaf only
        leaf_data = {smt.NODE_PREFIX + k[2:] for k in doomed if k.startswith(smt.LEAF_DATA_PREFIX)}
        assert leaf_data == {k for k in retired if nodes[k][:1] == smt.LEAF}
        written = {k for k in nodes if k.startswith(smt.NODE_PREFIX + smt.version_bytes(height))}
        assert retired <= before
        assert set(smt.node_keys(nodes.read, nodes.ref(root))) == (before - retired) | written
        state.update(batch)
        assert root == root_of({k: v for k, v in state.items() if v is not None})
