"""chain/bytecache.py: the held bytes never pass the cap and, once full, stay near it (the oldest
entries dropped as insertions need room, not half the cache at once); an entry used while old
survives; and the byte estimate is close to what Python really holds."""

from __future__ import annotations

import tracemalloc

import pytest

from chain.bytecache import ROOM_SHARE, ByteCache, bytes_size


def _key(i: int) -> bytes:
    return b"n/" + b"%08d" % i + i.to_bytes(32, "big")  # the shape of a tree node's key


def test_held_bytes_never_pass_the_cap_and_a_full_cache_stays_full() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(20_000)
    entry = bytes_size(_key(0), b"v" * 70)
    full = False
    for i in range(2_000):
        cache.put(_key(i), b"v" * 70)
        assert cache.held_bytes <= 20_000
        assert cache.held_bytes == sum(bytes_size(k, v) for k, v in [*cache._young.items(), *cache._old.items()])
        full = full or cache.held_bytes + entry > 20_000
        if full:  # from the first time it was full on: never less than the cap less what making room frees
            assert cache.held_bytes >= 20_000 * (1 - ROOM_SHARE) - 2 * entry
    assert 0 < len(cache) < 2_000 and cache.stats().cap_bytes == 20_000
    assert cache.get(_key(0)) is None and cache.get(_key(1_999)) == b"v" * 70  # the oldest went first


def test_an_entry_used_while_old_is_kept_and_the_oldest_unused_go_first() -> None:
    cache: ByteCache[bytes, bytes] = ByteCache(10_000)
    hot = _key(-1 % 2**32)
    for i in range(10):
        cache.put(_key(i), b"v" * 70)
    cache.put(hot, b"root")
    i = 10
    while hot not in cache._old and i < 1_000:  # the young generation, full, becomes the old one
        cache.put(_key(i), b"v" * 70)
        i += 1
    assert hot in cache._old and cache.get(_key(0)) is None  # room made: the oldest went first
    assert cache.get(hot) == b"root" and hot in cache._young  # used while old: young again
    for j in range(i, i + 20):
        cache.put(_key(j), b"v" * 70)  # room made from the old generation's oldest entries
    assert cache.get(hot) == b"root" and cache.get(_key(9)) is None and cache.get(_key(i - 1)) == b"v" * 70


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
    for first in range(0, 1_200, 25):
        # each batch overlaps the last two: keys held in either generation, put again
        batch = {_key(i): bytes(10 + i % 40) for i in range(max(0, first - 30), first + 25)}
        cache.put_many(batch)
        held = [*cache._young.items(), *cache._old.items()]
        assert len(held) == len(dict(held))  # no entry in both generations
        assert cache.held_bytes == sum(measure(k, v) for k, v in held) <= 60_000
        assert all(dict(held).get(k) == v for k, v in batch.items())  # a batch that fits is held whole
    assert cache.get(_key(0)) is None  # long since dropped, the oldest first
    cache.put_many({b"big": bytes(70_000)})  # larger than the cache: never held
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
    n = 100
    while not cache._old:  # the first batch and more become the old generation
        cache.put_many({_key(n): b"v" * 60})
        n += 1
    cache.put_many({_key(i): b"v" * 60 for i in range(n, n + 5)})
    assert cache._young and _key(63) in cache._old and _key(64) in cache._old
    before = {**cache._old, **cache._young}
    doomed = [_key(i) for i in range(0, n + 5, 3)] + [_key(10_000), _key(0)]  # one never held, one twice
    cache.discard_many(doomed)
    held = dict([*cache._young.items(), *cache._old.items()])
    assert held.keys() == before.keys() - set(doomed)
    assert cache.held_bytes == sum(measure(k, v) for k, v in held.items())
    assert cache._young_bytes == sum(measure(k, v) for k, v in cache._young.items())
    assert cache.get(_key(63)) is None and cache.get(_key(64)) == bytes(64 % 7)
