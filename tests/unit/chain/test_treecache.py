"""chain/treecache.py: the tree-node cache holds what the last blocks wrote, by generations of
heights, within its cap and, once full, above (generations - 1) / generations of it; a lookup and a
retirement find a node by its height."""

from __future__ import annotations

import sys

import pytest

from chain import smt
from chain.bytecache import bytes_size
from chain.treecache import TreeNodeCache


def _block(height: int, count: int, first: int = 0) -> dict[bytes, bytes]:
    """`count` nodes as a block of `height` writes them (n/<version><hash>, an 81-byte record)."""
    return {smt.node_key(i.to_bytes(32, "big"), smt.version_bytes(height)): bytes([height % 256]) * 81
            for i in range(first, first + count)}


def _held(cache: TreeNodeCache) -> dict[bytes, bytes]:
    return {k: v for gen in cache._gens for k, v in gen.items()}


def test_held_bytes_stay_under_the_cap_and_once_full_above_all_but_a_generation() -> None:
    cache = TreeNodeCache(80_000, generations=8)
    block_bytes = sum(bytes_size(k, v) for k, v in _block(1, 10).items())
    for height in range(1, 200):
        cache.add_block(_block(height, 10))
        held = _held(cache)
        assert cache.held_bytes == sum(bytes_size(k, v) for k, v in held.items()) <= 80_000
        if height > 80_000 // block_bytes:  # full: a dropped generation leaves at least 7/8 of the cap
            assert cache.held_bytes >= 80_000 * 7 // 8 - block_bytes
    assert len(cache._starts) == 8 and cache.stats().cap_bytes == 80_000


def test_a_node_is_found_by_its_height_until_its_generation_is_dropped() -> None:
    cache = TreeNodeCache(8 * 3 * 1_500, generations=8)  # a generation: about three blocks of ten
    blocks = {height: _block(height, 10) for height in range(1, 60)}
    for nodes in blocks.values():
        cache.add_block(nodes)
    kept = [h for h, nodes in blocks.items() if all(cache.get(k) == v for k, v in nodes.items())]
    gone = [h for h, nodes in blocks.items() if all(cache.get(k) is None for k in nodes)]
    assert sorted(kept + gone) == list(blocks)  # a block is held whole or not at all
    assert gone == list(range(1, gone[-1] + 1)) and kept[-1] == 59  # the oldest go first
    assert len(cache) == sum(len(blocks[h]) for h in kept)
    # a key of a held height that no block wrote is not there
    assert cache.get(smt.node_key(b"\xee" * 32, smt.version_bytes(59))) is None
    assert cache.get(smt.node_key(bytes(32), smt.version_bytes(10**6))) is None


def test_discard_many_drops_each_retired_node_from_its_generation() -> None:
    cache = TreeNodeCache(1 << 20, generations=4)
    for height in range(1, 30):
        cache.add_block(_block(height, 20))
    retired = [k for height in (3, 17, 29) for k in list(_block(height, 20))[::3]]
    unknown = [smt.node_key(b"\x07" * 32, smt.version_bytes(h)) for h in (0, 5, 10**9)]
    cache.discard_many(retired + unknown)
    held = _held(cache)
    assert not any(k in held for k in retired) and all(cache.get(k) is None for k in retired)
    assert cache.held_bytes == sum(bytes_size(k, v) for k, v in held.items())
    assert len(held) == 29 * 20 - len(retired)
    cache.discard_many(retired)  # again: nothing held any more, nothing counted twice
    assert cache.held_bytes == sum(bytes_size(k, v) for k, v in _held(cache).items())


def test_the_same_height_again_counts_once_and_a_lower_one_begins_again() -> None:
    cache = TreeNodeCache(1 << 20)
    cache.add_block(_block(5, 10))
    cache.add_block(_block(5, 10))  # committed again (a replay): immutable, held once
    cache.add_block(_block(5, 4, first=10))  # more of that height: added
    assert len(cache) == 14 and cache.held_bytes == sum(bytes_size(k, v) for k, v in _held(cache).items())
    cache.add_block(_block(6, 3))
    cache.add_block(_block(2, 3))  # a store reopened lower: what was held belongs to another branch of time
    assert len(cache) == 3 and all(cache.get(k) is not None for k in _block(2, 3))
    assert cache.get(next(iter(_block(6, 3)))) is None


def test_what_cannot_be_held_is_not() -> None:
    empty = TreeNodeCache(0)
    empty.add_block(_block(1, 5))
    assert len(empty) == 0 and empty.held_bytes == 0
    small = TreeNodeCache(8 * 500)
    small.add_block(_block(1, 10))  # larger than a generation
    assert len(small) == 0 and small.held_bytes == 0
    small.add_block({})
    assert small.held_bytes == 0
    with pytest.raises(ValueError):
        TreeNodeCache(-1)
    with pytest.raises(ValueError):
        TreeNodeCache(1 << 20, generations=1)


def test_the_cache_fills_to_its_cap_though_each_block_retires_most_of_the_last() -> None:
    # a generation ends when what it still holds reaches its share, not what it took: blocks
    # replace the tree's upper nodes every time, and a cache that counted them would hold a fifth
    # of its cap here (each block keeps 2 of its 10 nodes)
    cache = TreeNodeCache(400_000, generations=8)  # a block is a twentieth of a generation, as on a node
    for height in range(1, 1_500):
        if height > 1:
            cache.discard_many(list(_block(height - 1, 8)))  # the last block's first eight, replaced
        cache.add_block(_block(height, 10))
        assert cache.held_bytes == sum(bytes_size(k, v) for k, v in _held(cache).items()) <= 400_000
    assert cache.held_bytes >= 0.75 * 400_000 and len(cache._starts) == 8


def test_generations_that_shrink_are_kept_until_the_cap_is_full_and_copied_small() -> None:
    # later blocks replace nodes older blocks wrote: the older generations shrink, and the cache
    # keeps more of them instead of falling far below its cap as the state grows (a cache that
    # kept a fixed number held ~60 % of its cap on the 1,000,000-tx run, rising as the state grew)
    cap, block_bytes = 100_000, sum(bytes_size(k, v) for k, v in _block(1, 10).items())
    cache = TreeNodeCache(cap, generations=4)
    retired: set[bytes] = set()
    for height in range(1, 400):
        if height > 20:
            old = list(_block(height - 20, 10))[1:]  # most of what a block 20 heights back wrote
            cache.discard_many(old)
            retired.update(old)
        cache.add_block(_block(height, 10))
        held = _held(cache)
        assert cache.held_bytes == sum(bytes_size(k, v) for k, v in held.items()) <= cap
        if height > 2 * cap // block_bytes:
            assert cache.held_bytes >= cap - 2 * (cap // 4) - block_bytes
    assert len(cache._starts) > 4
    assert not retired & held.keys() and all(cache.get(k) == v for k, v in held.items())
    # the shrunken generations' dicts were copied: their tables are not those of their largest size
    older = cache._gens[1:-1]
    assert sum(map(sys.getsizeof, older)) <= 2 * sum(sys.getsizeof(dict(gen)) for gen in older)
