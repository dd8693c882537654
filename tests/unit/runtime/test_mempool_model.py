"""The mempool against a plain list model, under random sequences of operations."""

from __future__ import annotations

from functools import cache

from factories import seeded_key
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.tx import Tx, sign_tx
from node.runtime.mempool import Mempool

CHAIN = "test-chain"
KEYS = [seeded_key(f"model-{i}") for i in range(3)]


@cache
def make_tx(n: int, expires: int) -> Tx:
    return sign_tx(
        KEYS[n % 3],
        chain_id=CHAIN,
        op="asset.transfer",
        args={"asset_id": f"a{n}" + "x" * (n * 37 % 200), "to": KEYS[0].public},
        expires=expires,
        nonce=f"n{n}",
    )


tx_ref = st.tuples(st.integers(0, 30), st.integers(5, 25))
op = st.one_of(
    st.tuples(st.just("add"), st.lists(tx_ref, min_size=1, max_size=4)),
    st.tuples(st.just("commit"), st.lists(tx_ref, max_size=3)),
    st.tuples(st.just("advance"), st.integers(0, 6)),
    st.tuples(st.just("take"), st.tuples(st.integers(0, 8), st.integers(0, 3000))),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=25), st.integers(1, 12))
def test_matches_model(ops: list[tuple[str, object]], max_txs: int) -> None:
    committed: set[str] = set()
    pool = Mempool(
        CHAIN, arg_validator=lambda op, args: None, is_committed=committed.__contains__,
        has_standing=lambda account: True, max_txs=max_txs,
    )
    model: list[Tx] = []  # pending, in arrival order
    height = 1
    for kind, arg in ops:
        if kind == "add":
            txs = [make_tx(n, e) for n, e in arg]  # type: ignore[union-attr]
            results = pool.add_many(txs, height)
            for t, err in zip(txs, results, strict=True):
                known = t.tx_id in {m.tx_id for m in model} or t.tx_id in committed
                if t.expires < height:
                    assert err is not None and err.code == "expired"
                elif known:
                    assert err is not None and err.code == "duplicate"
                elif len(model) >= max_txs:
                    assert err is not None and err.code == "mempool_full"
                else:
                    assert err is None
                    model.append(t)
        elif kind == "commit":
            ids = [make_tx(n, e).tx_id for n, e in arg]  # type: ignore[union-attr]
            committed.update(ids)
            pool.remove_committed(ids)
            model = [t for t in model if t.tx_id not in committed]
        elif kind == "advance":
            height += arg  # type: ignore[operator]
            gone = pool.evict_expired(height)
            assert gone == [t.tx_id for t in model if t.expires < height]
            model = [t for t in model if t.expires >= height]
        else:
            max_n, max_b = arg  # type: ignore[misc]
            batch = pool.take_batch(max_n, max_b, height)
            expect: list[Tx] = []
            used = 0
            for t in model:
                if len(expect) >= max_n:
                    break
                size = len(t.encode())
                if used + size > max_b:
                    break
                expect.append(t)
                used += size
            assert batch == expect
        assert len(pool) == len(model) <= max_txs
        assert pool.size_bytes == sum(len(t.encode()) for t in model)
        assert all(pool.verified(t) and pool.get(t.tx_id) == t for t in model)
