"""chain/bytecache.py: the held bytes never pass the cap, recently used entries survive a
generation, and the byte estimate is close to what Python really holds."""

from __future__ import annotations

import tracemalloc

import pytest

from chain.bytecache import ByteCache, bytes_size


def _key(i: int) -> bytes:
    return b"n/" + b"%08d" % i + i.to_bytes(32, "big")  # the shape of a tree node's key


def test_held_bytes_never_pass_the_cap() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(20_000)
    for i in range(2_000):
        cache.put(_key(i), b"v" * 70)
        assert cache.held_bytes <= 20_000
        assert cache.held_bytes == sum(bytes_size(k, v) for k, v in [*cache._young.items(), *cache._old.items()])
    assert 0 < len(cache) < 2_000 and cache.stats().cap_bytes == 20_000


def test_an_entry_used_in_each_generation_is_kept() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(10_000)
    hot = _key(-1 % 2**32)
    cache.put(hot, b"root")
    for i in range(1_000):
        cache.put(_key(i), b"v" * 70)
        assert cache.get(hot) == b"root"  # read by every block, as the tree's top levels are
    assert cache.get(_key(0)) is None  # long since dropped with its generation


def test_a_zero_cap_holds_nothing_and_a_negative_one_is_refused() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(0)
    cache.put(b"k", b"v")
    assert cache.get(b"k") is None and len(cache) == 0
    with pytest.raises(ValueError):
        ByteCache(-1)


def test_the_estimate_is_close_to_what_python_holds() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(1 << 30)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            cache.put(_key(i), bytes(70) + i.to_bytes(4, "big"))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # the estimate errs high (a dict slot counted at a full table's worst), so a cap is kept
    assert 0.7 * cache.held_bytes <= held <= 1.05 * cache.held_bytes


def test_the_default_estimate_is_getsizeof_plus_the_slot() -> None:
    import sys

    for key, value in [(b"", b""), (_key(7), bytes(81)), (b"k" * 300, b"v" * 5)]:
        assert bytes_size(key, value) == sys.getsizeof(key) + sys.getsizeof(value) + 56

