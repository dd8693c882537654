"""State snapshot chunks (chain/snapshot.py): each checkable alone, together the whole tree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import smt, snapshot
from chain.snapshot import Coverage, KeyReader, SnapshotError, StateChunk, export_chunk, iter_chunks, verify_chunk

KEYS = st.binary(min_size=1, max_size=12)
VALUES = st.binary(min_size=0, max_size=24)


HEIGHT = 5  # the state version the test trees are stored at


def tree(mapping: dict[bytes, bytes]) -> tuple[str, dict[bytes, bytes]]:
    root, writes = smt.update(smt.EMPTY_REF_ROOT, dict(mapping), lambda key: None, HEIGHT)
    return root, writes


def chunks_of(mapping: dict[bytes, bytes], monkeypatch: pytest.MonkeyPatch, per_chunk: int) -> tuple[str, dict[bytes, bytes], list[StateChunk]]:
    monkeypatch.setattr(snapshot, "MAX_CHUNK_LEAVES", per_chunk)
    root, store = tree(mapping)
    return root, store, list(iter_chunks(KeyReader(store.get), smt.root_at(store.get, HEIGHT)))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=60), st.integers(1, 9))
def test_chunks_tile_the_space_and_rebuild_every_node(mapping: dict[bytes, bytes], per_chunk: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        root, store, chunks = chunks_of(mapping, mp, per_chunk)
    coverage = Coverage()
    rebuilt: dict[bytes, bytes] = {}
    leaves: dict[bytes, bytes] = {}
    for chunk in chunks:
        again = StateChunk.decode(chunk.encode())  # the wire form round-trips
        assert again == chunk
        verified = verify_chunk(again, root, HEIGHT)
        assert len(verified.leaves) <= per_chunk
        coverage.add(verified.lo, verified.hi, len(verified.leaves))
        rebuilt.update(verified.nodes)
        leaves.update(verified.leaves)
    assert coverage.complete and leaves == mapping
    tree_nodes = {k: v for k, v in store.items() if k.startswith(smt.NODE_PREFIX)}
    assert rebuilt == tree_nodes  # the import holds exactly the tree, nothing more or less, at its version


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=40), st.integers(1, 6), st.data())
def test_any_byte_altered_in_any_chunk_fails(mapping: dict[bytes, bytes], per_chunk: int, data: st.DataObject) -> None:
    with pytest.MonkeyPatch.context() as mp:
        root, _, chunks = chunks_of(mapping, mp, per_chunk)
    chunk = data.draw(st.sampled_from(chunks))
    raw = bytearray(chunk.encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    try:
        altered = verify_chunk(StateChunk.decode(bytes(raw)), root, HEIGHT)
    except SnapshotError:
        return
    # A byte of `hi` can turn the chunk into another true one: e.g. hi 3fff… -> 5fff… when no
    # leaf lies in [4000…, 5fff…] and the one outside subtree beyond was a lone leaf above 6000…
    # (hypothesis found it). What the sync rests on is that nothing false verifies: the chunk
    # then holds exactly the state's leaves in the range it claims, and the client refuses a
    # range it did not ask for (node/p2p/state_sync.py).
    assert altered.hi != chunk.hi or altered.lo != chunk.lo
    in_range = {k: v for k, v in mapping.items() if altered.lo <= int.from_bytes(smt._sha(k), "big") <= altered.hi}
    assert dict(altered.leaves) == in_range


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=2, max_size=40), st.data())
def test_a_dropped_or_added_leaf_fails(mapping: dict[bytes, bytes], data: st.DataObject) -> None:
    with pytest.MonkeyPatch.context() as mp:
        root, _, chunks = chunks_of(mapping, mp, 64)
    chunk = chunks[0]  # the whole state in one chunk
    leaves = list(chunk.leaves)
    drop = data.draw(st.integers(0, len(leaves) - 1))
    short = StateChunk(chunk.state_root, chunk.lo, chunk.hi, tuple(leaves[:drop] + leaves[drop + 1 :]), chunk.outside)
    with pytest.raises(SnapshotError):
        verify_chunk(short, root, HEIGHT)


def test_a_chunk_of_another_root_or_an_inner_node_posing_as_a_leaf_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = {b"k%d" % i: b"v%d" % i for i in range(50)}
    root, _, chunks = chunks_of(mapping, monkeypatch, 5)
    other, _ = tree({**mapping, b"k0": b"changed"})
    with pytest.raises(SnapshotError, match="another state root"):
        verify_chunk(chunks[1], other, HEIGHT)
    # an outside inner hash presented as a lone leaf (or any other reading) rebuilds another root
    chunk = next(c for c in chunks if any(len(o) == 64 for o in c.outside))
    i = next(i for i, o in enumerate(chunk.outside) if len(o) == 64)
    posing = chunk.outside[:i] + (chunk.outside[i] + "00" * 32,) + chunk.outside[i + 1 :]
    with pytest.raises(SnapshotError):
        verify_chunk(StateChunk(chunk.state_root, chunk.lo, chunk.hi, chunk.leaves, posing), root, HEIGHT)


def test_export_cuts_ranges_a_few_levels_down_and_bounds_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = {b"key-%05d" % i: b"x" * 100 for i in range(3000)}
    monkeypatch.setattr(snapshot, "CHUNK_TARGET_BYTES", 20_000)
    _, store = tree(mapping)
    chunks = list(iter_chunks(KeyReader(store.get), smt.root_at(store.get, HEIGHT)))
    assert 10 < len(chunks) < 30
    for c in chunks:
        # edges at aligned cuts a few levels down (at most 15 outside subtrees a level an edge), not 64
        assert len(c.outside) <= 2 * (smt.ARITY - 1) * 4
        assert sum(len(k) + len(v) for k, v in c.leaves) <= 20_000 + 110
        assert len(c.encode()) <= snapshot.MAX_CHUNK_BYTES


def test_an_empty_state_is_one_chunk() -> None:
    chunk = export_chunk(KeyReader({}.get), smt.EMPTY_REF_ROOT, 0, snapshot.TOP)
    assert chunk.leaves == () and chunk.hi == snapshot.TOP
    assert verify_chunk(chunk, smt.EMPTY_ROOT, HEIGHT).nodes == {}


def test_coverage_refuses_overlap_and_knows_when_whole() -> None:
    parts = snapshot.split_space(4)
    cov = Coverage()
    for lo, hi in parts[::-1][:3]:
        cov.add(lo, hi)
    assert not cov.complete
    with pytest.raises(SnapshotError, match="overlaps"):
        cov.add(parts[1][0], parts[1][0] + 5)
    cov.add(*parts[0])
    assert cov.complete


def test_oversized_or_malformed_chunks_are_refused() -> None:
    with pytest.raises(SnapshotError, match="at most"):
        StateChunk.decode(b"\x00" * (snapshot.MAX_CHUNK_BYTES + 1))
    with pytest.raises(SnapshotError, match="version"):
        StateChunk.from_plain({"v": 1, "state_root": "", "lo": "", "hi": "", "leaves": [], "outside": []})
    good = export_chunk(KeyReader({}.get), smt.EMPTY_REF_ROOT, 0, snapshot.TOP).to_plain()
    with pytest.raises(SnapshotError, match="outside"):
        StateChunk.from_plain({**good, "outside": ["AB" * 32]})
