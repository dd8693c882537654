"""No consensus message grows with the block size (defect 5).

The same VIEW-CHANGE, NEW-VIEW and STATUS built for a 1 KiB block and for an 8 MiB block (the
default max_block_bytes) encode to exactly the same number of bytes: proofs name blocks by hash.
The vote record is the one thing that holds the block (on disk, so a restarted node can serve it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chain.block import Block
from chain.encoding import canonical, decode
from chain.genesis import Params
from chain.tx import MAX_TX_BYTES, sign_tx
from node.consensus.messages import (
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    Status,
    ViewChange,
    parse_signed,
)
from node.consensus.pbft import VoteRecord
from node.p2p.framing import DEFAULT_MAX_FRAME

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from factories import Consortium, make_block, make_consortium, seeded_key  # noqa: E402

EIGHT_MIB = Params().max_block_bytes
CONSENSUS_FRAME_BOUND = 16 * 1024  # n = 4: far below the frame cap, whatever the block size


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return make_consortium(4)


def block_of(c: Consortium, size: int) -> Block:
    """A block at height 1 whose txs add up to at least `size` bytes."""
    user = seeded_key("size-user")
    pad = MAX_TX_BYTES - 400  # each tx just under the tx limit
    txs, total, i = [], 0, 0
    while total < size:
        args = {"i": i, "pad": "x" * min(pad, size)}
        tx = sign_tx(user, chain_id=c.genesis.chain_id, op="asset.transfer", args=args, expires=9, nonce=f"n{i}")
        txs.append(tx)
        total += len(tx.encode())
        i += 1
    block, _ = make_block(c, 1, c.genesis.hash, txs)
    return block


def messages_for(c: Consortium, block: Block) -> dict[str, bytes]:
    """Every message kind that used to carry a block, as the wire encodes it, for view 1 at height 1."""
    keys = c.validator_keys
    primary0 = next(k for k in keys if k.public == c.genesis.validators.primary(0).public)
    primary1 = next(k for k in keys if k.public == c.genesis.validators.primary(1).public)
    others = [k for k in keys if k is not primary0]
    pp = Signed.sign(primary0, PrePrepare(0, 1, block.block_hash))
    proof = PreparedProof(pp, tuple(Signed.sign(k, Prepare(0, 1, block.block_hash)) for k in others[:2]))
    vcs = tuple(Signed.sign(k, ViewChange(1, 1, proof)) for k in others)
    reproposal = Signed.sign(primary1, PrePrepare(1, 1, block.block_hash))
    new_view = Signed.sign(primary1, NewView(1, 1, vcs, reproposal))
    _, cert = make_block(c, 1, c.genesis.hash, list(block.txs))
    status = Signed.sign(others[0], Status(1, 1, block.block_hash, cert, new_view, vcs))
    return {
        "pre_prepare": pp.encode(),
        "view_change": vcs[0].encode(),
        "new_view": new_view.encode(),
        "status": status.encode(),
    }


def test_message_sizes_are_the_same_for_a_1_kib_and_an_8_mib_block(consortium: Consortium) -> None:
    small, large = block_of(consortium, 1024), block_of(consortium, EIGHT_MIB)
    assert len(small.encode()) < 2 * 1024 and len(large.encode()) >= EIGHT_MIB
    small_msgs, large_msgs = messages_for(consortium, small), messages_for(consortium, large)
    for kind, wire in large_msgs.items():
        assert len(wire) == len(small_msgs[kind]), kind
        assert len(wire) < CONSENSUS_FRAME_BOUND, kind
        assert parse_signed(decode(wire)).encode() == wire  # and each round-trips through a frame
    assert CONSENSUS_FRAME_BOUND < DEFAULT_MAX_FRAME // 1000


def test_the_vote_record_keeps_the_prepared_block_beside_its_proof(consortium: Consortium) -> None:
    block = block_of(consortium, 4096)
    c = consortium
    pp = Signed.sign(c.validator_keys[0], PrePrepare(0, 1, block.block_hash))
    proof = PreparedProof(pp, ())
    record = VoteRecord(0, proof, None, block)
    back = VoteRecord.from_plain(decode(record.encode()))
    assert back.block == block and back.prepared == proof
    other = block_of(c, 2048)
    with pytest.raises(ValueError, match="not the one its prepared proof names"):
        VoteRecord.from_plain(decode(VoteRecord(0, proof, None, other).encode()))


def test_an_old_vote_record_is_refused_naming_both_versions() -> None:
    old = {"view": 3, "prepared": None, "view_change": None}  # version 1 had no version field
    with pytest.raises(ValueError, match="vote record version 1, this titlechain reads version 2"):
        VoteRecord.from_plain(decode(canonical(old)))


def test_the_largest_allowed_block_fits_a_frame_with_its_certificate() -> None:
    """A block at the genesis limit, in a sync answer with a certificate of 100 validators, is
    still under the frame cap; a genesis asking for more is refused."""
    from chain.genesis import MAX_BLOCK_BYTES_LIMIT, GenesisError

    header_and_envelopes = 4096
    certificate = 100 * (64 + 128 + 32)
    assert MAX_BLOCK_BYTES_LIMIT + header_and_envelopes + certificate < DEFAULT_MAX_FRAME
    assert Params.from_plain({"max_block_bytes": MAX_BLOCK_BYTES_LIMIT}).max_block_bytes == MAX_BLOCK_BYTES_LIMIT
    with pytest.raises(GenesisError, match="max_block_bytes"):
        Params.from_plain({"max_block_bytes": MAX_BLOCK_BYTES_LIMIT + 1})
