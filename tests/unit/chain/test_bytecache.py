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


@pytest.mark.parametrize("size", [None, lambda k, v: 3 * len(v) + 10])
def test_put_many_holds_each_batch_whole_within_the_cap(size: object) -> None:
    kwargs = {} if size is None else {"size": size}
    cache: ByteCache[bytes, bytes] = ByteCache(60_000, **kwargs)  # type: ignore[arg-type]
    measure = cache._size
    for first in range(0, 600, 25):
        # each batch overlaps the last two: keys held in either generation, put again
        batch = {_key(i): bytes(10 + i % 40) for i in range(max(0, first - 30), first + 25)}
        cache.put_many(batch)
        held = [*cache._young.items(), *cache._old.items()]
        assert len(held) == len(dict(held))  # no entry in both generations
        assert cache.held_bytes == sum(measure(k, v) for k, v in held) <= 60_000
        assert all(dict(held).get(k) == v for k, v in batch.items())  # a batch that fits is held whole
    assert cache.get(_key(0)) is None  # long since dropped with its generation
    cache.put_many({b"big": bytes(40_000)})  # larger than a generation: never held
    assert b"big" not in cache and cache.held_bytes <= 60_000


def test_the_default_estimate_is_getsizeof_plus_the_slot() -> None:
    import sys

    for key, value in [(b"", b""), (_key(7), bytes(81)), (b"k" * 300, b"v" * 5)]:
        assert bytes_size(key, value) == sys.getsizeof(key) + sys.getsizeof(value) + 56


@pytest.mark.parametrize("size", [None, lambda k, v: 3 * len(v) + 10])
def test_discard_many_drops_held_keys_from_either_generation_and_their_bytes(size: object) -> None:
    kwargs = {} if size is None else {"size": size}
    cache: ByteCache[bytes, bytes] = ByteCache(40_000, **kwargs)  # type: ignore[arg-type]
    measure = cache._size
    cache.put_many({_key(i): bytes(i % 7) for i in range(100)})  # empty values too: held all the same
    cache.put_many({_key(i): b"v" * 60 for i in range(100, 200)})  # the first batch is now the old generation
    assert cache._old and cache._young
    doomed = [_key(i) for i in range(0, 200, 3)] + [_key(10_000), _key(0)]  # one never held, one twice
    cache.discard_many(doomed)
    held = dict([*cache._young.items(), *cache._old.items()])
    assert set(held) == {_key(i) for i in range(200) if i % 3}
    assert cache.held_bytes == sum(measure(k, v) for k, v in held.items())
    assert cache._young_bytes == sum(measure(k, v) for k, v in cache._young.items())
    assert cache.get(_key(3)) is None and cache.get(_key(4)) == bytes(4)
