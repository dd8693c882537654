"""Mempool admission, ordering, expiry and removal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from factories import seeded_key

import chain.tx
from chain.crypto import KeyPair
from chain.tx import Tx, TxError, parse_tx, sign_tx
from node.runtime.mempool import Mempool

CHAIN = "test-chain"
KNOWN_OPS = {"asset.transfer": {"asset_id", "to"}}


def fake_validate_args(op: str, args: dict[str, Any]) -> None:
    if op not in KNOWN_OPS:
        raise TxError("unknown_op", f"no op {op}")
    if set(args) != KNOWN_OPS[op]:
        raise TxError("invalid_args", "wrong fields")


ALICE = seeded_key("alice")
BOB = seeded_key("bob")


def tx(n: int, *, key: KeyPair = ALICE, expires: int = 100, chain_id: str = CHAIN, op: str = "asset.transfer",
       args: dict[str, Any] | None = None, pad: int = 0) -> Tx:
    return sign_tx(
        key,
        chain_id=chain_id,
        op=op,
        args=args if args is not None else {"asset_id": f"a{n}" + "x" * pad, "to": BOB.public},
        expires=expires,
        nonce=f"n{n}",
    )


class Pool:
    """A mempool with recorded gossip and a settable committed set."""

    def __init__(self, **kw: Any) -> None:
        self.committed: set[str] = set()
        self.known = {ALICE.public, BOB.public}  # the signers with standing
        self.gossiped: list[Tx] = []
        self.pool = Mempool(
            CHAIN,
            arg_validator=fake_validate_args,
            is_committed=self.committed.__contains__,
            has_standing=self.known.__contains__,
            on_admitted=self._gossip,
            **kw,
        )

    def _gossip(self, txs: Sequence[Tx]) -> None:
        self.gossiped.extend(txs)


def refusal(pool: Mempool, t: Tx, next_height: int = 1) -> str:
    with pytest.raises(TxError) as e:
        pool.add(t, next_height)
    assert t.tx_id not in pool or e.value.code == "duplicate"  # a refusal never admits
    return e.value.code


def test_admits_and_gossips_once() -> None:
    p = Pool()
    t = tx(1)
    p.pool.add(t, 1)
    assert len(p.pool) == 1 and t.tx_id in p.pool
    assert p.pool.get(t.tx_id) == t
    assert p.gossiped == [t]


def test_gossiped_txs_are_checked_but_not_regossiped() -> None:
    p = Pool()
    p.pool.add(tx(1), 1, gossip=False)
    assert len(p.pool) == 1 and p.gossiped == []
    assert refusal(p.pool, tx(2, chain_id="other")) == "wrong_chain"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: tx(1, chain_id="other-chain"), "wrong_chain"),
        (lambda: tx(1, expires=4), "expired"),
        (lambda: tx(1, expires=5 + chain.tx.EXPIRY_WINDOW + 1), "expires_too_far"),
        (lambda: tx(1, op="asset.melt"), "unknown_op"),
        (lambda: tx(1, args={"asset_id": "a"}), "invalid_args"),
    ],
)
def test_refusals(make: Any, code: str) -> None:
    p = Pool()
    assert refusal(p.pool, make(), next_height=5) == code
    assert len(p.pool) == 0 and p.gossiped == []


def test_bad_signature_refused() -> None:
    good = tx(1)
    forged = parse_tx({"body": good.body, "sig": tx(2).sig})
    p = Pool()
    assert refusal(p.pool, forged) == "bad_signature"
    assert len(p.pool) == 0


def test_duplicate_pending_and_committed() -> None:
    p = Pool()
    t = tx(1)
    p.pool.add(t, 1)
    assert refusal(p.pool, t) == "duplicate"
    c = tx(2)
    p.committed.add(c.tx_id)
    assert refusal(p.pool, c) == "duplicate"
    assert len(p.pool) == 1 and p.gossiped == [t]


def test_full_by_count_and_by_bytes() -> None:
    p = Pool(max_txs=2)
    p.pool.add(tx(1), 1)
    p.pool.add(tx(2), 1)
    assert refusal(p.pool, tx(3)) == "mempool_full"
    p.pool.remove_committed([tx(1).tx_id])
    p.pool.add(tx(3), 1)

    one = len(tx(1, pad=1000).encode())
    q = Pool(max_bytes=2 * one)
    q.pool.add(tx(1, pad=1000), 1)
    q.pool.add(tx(2, pad=1000), 1)
    assert q.pool.size_bytes == 2 * one
    assert refusal(q.pool, tx(3, pad=1000)) == "mempool_full"


def test_batch_results_in_order_with_duplicates_inside_the_batch() -> None:
    p = Pool(max_txs=3)
    a, b, c, d = tx(1), tx(2), tx(3), tx(4)
    bad = parse_tx({"body": tx(5).body, "sig": a.sig})
    codes = [None if e is None else e.code for e in p.pool.add_many([a, a, bad, b, tx(6, expires=0), c, d], 1)]
    assert codes == [None, "duplicate", "bad_signature", None, "expired", "mempool_full", "mempool_full"]
    assert p.gossiped == [a, b]
    assert len(p.pool) == 2


def test_take_batch_is_fifo_bounded_and_removes_nothing() -> None:
    p = Pool()
    txs = [tx(i, key=[ALICE, BOB][i % 2]) for i in range(10)]
    for t in txs:
        p.pool.add(t, 1)
    assert p.pool.take_batch(4, 10**9, 1) == txs[:4]
    assert p.pool.take_batch(4, 10**9, 1) == txs[:4]
    assert p.pool.take_batch(100, 10**9, 1) == txs
    assert p.pool.take_batch(3, 10**9, 1, exclude={t.tx_id for t in txs[:4]}) == txs[4:7]
    sizes = [len(t.encode()) for t in txs]
    assert p.pool.take_batch(100, sum(sizes[:3]) + sizes[3] - 1, 1) == txs[:3]
    assert len(p.pool) == 10


def test_take_batch_skips_expired_and_evict_drops_them() -> None:
    p = Pool()
    keep1, old, keep2 = tx(1, expires=50), tx(2, expires=5), tx(3, expires=50)
    for t in (keep1, old, keep2):
        p.pool.add(t, 1)
    assert p.pool.take_batch(10, 10**9, 6) == [keep1, keep2]
    assert p.pool.take_batch(10, 10**9, 5) == [keep1, old, keep2]
    before = p.pool.size_bytes
    assert p.pool.evict_expired(6) == [old.tx_id]
    assert len(p.pool) == 2 and old.tx_id not in p.pool
    assert p.pool.size_bytes == before - len(old.encode())
    assert p.pool.evict_expired(6) == []


def test_remove_committed() -> None:
    p = Pool()
    txs = [tx(i) for i in range(5)]
    p.pool.add_many(txs, 1)
    assert p.pool.remove_committed([txs[1].tx_id, txs[3].tx_id, "f" * 64]) == 2
    assert p.pool.take_batch(10, 10**9, 1) == [txs[0], txs[2], txs[4]]
    assert p.pool.get(txs[1].tx_id) is None
    assert p.pool.remove_committed(t.tx_id for t in txs) == 3
    assert len(p.pool) == 0 and p.pool.size_bytes == 0


def test_signature_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = chain.tx.verify

    def counting(public: str, domain: Any, message: bytes, sig: str) -> bool:
        calls.append(sig)
        return real(public, domain, message, sig)

    monkeypatch.setattr(chain.tx, "verify", counting)
    p = Pool()
    txs = [tx(i) for i in range(20)]
    p.pool.add_many(txs[:10], 1)
    for t in txs[10:]:
        p.pool.add(t, 1)
    assert len(calls) == 20
    # the consensus path and repeated arrivals never verify again
    assert all(p.pool.verified(t) for t in txs)
    assert refusal(p.pool, txs[0]) == "duplicate"
    p.pool.add_many(txs, 1, gossip=False)
    assert len(calls) == 20
    # cheap refusals cost no verification either
    refusal(p.pool, tx(99, chain_id="other"))
    assert len(calls) == 20


def test_verified_requires_the_same_signature() -> None:
    p = Pool()
    t = tx(1)
    p.pool.add(t, 1)
    forged = parse_tx({"body": t.body, "sig": tx(2).sig})
    assert forged.tx_id == t.tx_id
    assert p.pool.verified(t) and not p.pool.verified(forged)
    assert not p.pool.verified(tx(3))


def test_with_the_real_contract_arg_validator() -> None:
    import contracts

    pool = Mempool(
        CHAIN, arg_validator=contracts.validate_args, is_committed=lambda tx_id: False, has_standing=lambda a: True
    )
    pool.add(tx(1, args={"asset_id": "wr-1", "to": BOB.public}), 1)
    assert refusal(pool, tx(2, op="asset.melt")) == "unknown_op"
    assert refusal(pool, tx(3, args={"asset_id": "wr-3", "to": "not-an-account"})) == "invalid_args"
    assert len(pool) == 1


# -- admission: standing and the per-signer quota ---------------------------------------------

MALLORY = seeded_key("mallory")  # a fresh key the ledger does not know


def test_an_outsider_is_refused_from_clients_and_from_gossip() -> None:
    p = Pool()
    assert refusal(p.pool, tx(1, key=MALLORY)) == "not_permitted"
    results = p.pool.add_many([tx(2, key=MALLORY), tx(3)], 1, gossip=False)  # a peer relays both
    assert [r.code if r else None for r in results] == ["not_permitted", None]
    assert len(p.pool) == 1 and p.pool.pending_of(MALLORY.public) == 0 and p.gossiped == []


def test_standing_is_checked_before_the_signature_and_does_not_excuse_one() -> None:
    p = Pool()
    checked: list[Tx] = []
    real_verify = chain.tx.Tx.signature_valid

    def spy(self: Tx) -> bool:
        checked.append(self)
        return real_verify(self)

    outsider = tx(1, key=MALLORY)
    impostor = parse_tx({"body": {**tx(2).body}, "sig": outsider.sig})  # names Alice, signed by nobody
    try:
        chain.tx.Tx.signature_valid = spy  # type: ignore[method-assign]
        assert refusal(p.pool, outsider) == "not_permitted"
        assert checked == []  # an outsider's flood costs no signature verification
        assert refusal(p.pool, impostor) == "bad_signature"
    finally:
        chain.tx.Tx.signature_valid = real_verify  # type: ignore[method-assign]


def test_a_signer_gets_standing_while_its_tx_waits() -> None:
    p = Pool()
    t = tx(1, key=MALLORY)
    assert refusal(p.pool, t) == "not_permitted"
    p.known.add(MALLORY.public)  # e.g. an asset registered to it was committed
    p.pool.add(t, 1)
    assert t.tx_id in p.pool


def test_per_signer_quota_counts_pending_and_batch_and_frees_on_commit_and_expiry() -> None:
    p = Pool(max_per_signer=3)
    short_lived = tx(1, expires=5)
    p.pool.add(short_lived, 1)
    results = p.pool.add_many([tx(2), tx(3), tx(4), tx(5, key=BOB)], 1)
    assert [r.code if r else None for r in results] == [None, None, "quota_exceeded", None]
    assert p.pool.pending_of(ALICE.public) == 3 and p.pool.pending_of(BOB.public) == 1
    assert refusal(p.pool, tx(6)) == "quota_exceeded"
    p.pool.remove_committed([tx(2).tx_id])
    p.pool.add(tx(6), 1)
    assert refusal(p.pool, tx(7)) == "quota_exceeded"
    assert p.pool.evict_expired(6) == [short_lived.tx_id]
    p.pool.add(tx(7), 6)
    assert p.pool.pending_of(ALICE.public) == 3


def test_a_refused_tx_takes_no_place_in_the_quota() -> None:
    p = Pool(max_per_signer=2)
    bad = parse_tx({"body": tx(1).body, "sig": tx(9).sig})
    results = p.pool.add_many([bad, tx(2), tx(3)], 1)
    # room is claimed before signatures are checked, like the pool's own bound (see add_many)
    assert [r.code if r else None for r in results] == ["bad_signature", None, "quota_exceeded"]
    assert p.pool.pending_of(ALICE.public) == 1
    p.pool.add(tx(3), 1)
    assert p.pool.pending_of(ALICE.public) == 2
