"""Defect 5: blocks near the size limit must not halt the consortium.

A NEW-VIEW used to carry q VIEW-CHANGEs whose prepared proofs each held the whole PRE-PREPARE,
whole block included. With blocks near `max_block_bytes` (8 MiB) the NEW-VIEW exceeded the
16 MiB frame cap; the driver logged and dropped it, and every later view rebuilt the same
oversized message: after one primary stopped, heights froze while views climbed, and stayed
frozen after it came back. Here the simulator's frame cap is twice a block, as 16 MiB is twice
8 MiB, so the same arithmetic holds at a size the simulator runs fast.
"""

from __future__ import annotations

from typing import Any

import pytest
from simnet import Node, World

TX_PAD = 2000  # bytes of padding per tx: 16 txs make a block of ~37 KB
TXS = 16  # one full block (simnet.MAX_BLOCK_TXS)
COMMITS_LOST_UNTIL_MS = 150  # view 0's COMMITs are lost, so the replicas stay prepared only
PRIMARY_STOPS_MS = 100
PRIMARY_RETURNS_MS = 3000
DEADLINE_MS = 20_000


def block_bytes(world: World) -> int:
    """The encoded size of a full block of this world's txs."""
    txs = world.make_txs(TXS)
    return len(world.nodes[0].app.build(1, 0, txs, world.vset.primary(0).public).encode())


def primary_stops_with_the_block_prepared(tx_pad: int, seed: int = 21) -> World:
    """View 0: the primary proposes a full block, every replica prepares it, the COMMITs are
    lost and the primary stops; it comes back later. The others must change view, carrying
    prepared proofs of that block, and commit it in a later view."""
    probe = World(seed, n=4, tx_pad=TX_PAD)
    world = World(seed, n=4, tx_pad=tx_pad, max_frame=2 * block_bytes(probe))

    def lose_commits(src: Node, dst: Node, message: dict[str, Any]) -> bool:
        return world.now < COMMITS_LOST_UNTIL_MS and message["body"]["kind"] == "commit"

    world.drop_filter = lose_commits
    primary = next(n.idx for n in world.nodes if n.key.public == world.vset.primary(0).public)
    world.at(0, lambda: world.submit_many(world.make_txs(TXS)))
    world.at(PRIMARY_STOPS_MS, lambda: world.crash(primary))
    world.at(PRIMARY_RETURNS_MS, lambda: world.restart(primary))
    world.run_until(PRIMARY_STOPS_MS)
    prepared = [n for n in world.nodes if n.idx != primary and n.replica.best_prepared is not None]
    assert len(prepared) == 3 and not any(n.app.chain for n in world.nodes), "the schedule did not set up the fault"
    world.check_liveness(DEADLINE_MS)
    return world


def test_view_change_completes_with_blocks_near_the_frame_cap() -> None:
    world = primary_stops_with_the_block_prepared(TX_PAD)
    assert all(n.replica.view >= 1 for n in world.nodes if not n.crashed)  # it took a view change
    assert all(len(n.app.chain) == 1 for n in world.nodes)  # the prepared block, on every node
    assert world.oversize == 0, f"{world.oversize} consensus messages exceeded the frame cap"
    assert world.max_consensus_frame * 8 < world.max_frame  # proofs hold hashes, not blocks


def test_consensus_message_size_does_not_depend_on_the_block_size() -> None:
    """The same schedule with tiny and with large txs: the largest consensus message is the same."""
    small = primary_stops_with_the_block_prepared(0)
    large = primary_stops_with_the_block_prepared(TX_PAD)
    assert block_bytes(large) > 5 * block_bytes(small)
    assert small.max_consensus_frame == large.max_consensus_frame


def test_the_next_primary_leaves_out_a_proof_whose_block_nobody_gives_it() -> None:
    """A Byzantine primary of view 0 gets PREPAREs for its block X from two honest replicas, and
    only it sees them: it alone holds a proof of X (nothing was committed: nobody else is
    prepared), and it will not serve X. Its VIEW-CHANGE for view 1 carries that proof.

    The primary of view 1 never got X and cannot fetch it. Re-proposing X would leave view 1
    (and every later view whose NEW-VIEW includes that VIEW-CHANGE) waiting for a block nobody
    gives; any q VIEW-CHANGEs make a safe NEW-VIEW, so it picks the q whose proofs' blocks it
    holds, here the three honest ones, and the fresh proposal commits.
    """
    from scripted import Script

    from node.consensus.messages import NewView, Prepare, PrePrepare, ViewChange

    s = Script()
    byz, p1 = s.primary_idx(0), s.primary_idx(1)
    r1, r2 = [i for i in range(4) if i not in (byz, p1)]
    s.submit(s.world.make_txs(3))
    s.deliver_all(PrePrepare, to=[r1, r2], view=0, height=1)
    s.deliver_all(Prepare, to=[byz], view=0, height=1, src=[r1, r2])
    assert s.node(byz).replica.best_prepared is not None  # the proof of X, held by the attacker only
    x_hash = s.node(byz).replica.best_prepared.block_hash
    for i in (byz, r1, r2, p1):
        s.timeout(i)
    byz_vc = s.find(ViewChange, src=byz, view=1)[0]
    assert byz_vc.msg.prepared is not None
    senders = sorted(s.key(i).public for i in range(4))
    assert senders.index(s.key(byz).public) < 3  # taken by a plain first-q-by-key choice
    s.deliver_all(ViewChange, to=[p1], view=1)
    new_views = s.find(NewView, src=p1, view=1)
    assert new_views, "the primary of view 1 sent no NEW-VIEW"
    nv = new_views[0].msg
    assert byz_vc.signed not in nv.view_changes
    assert nv.pre_prepare is None or nv.pre_prepare.msg.block_hash != x_hash
    s.deliver(new_views[0], [r1, r2])
    s.deliver_all(PrePrepare, to=[r1, r2], view=1, height=1)
    s.deliver_all(Prepare, to=[p1, r1, r2], view=1, height=1, src=[p1, r1, r2])
    from node.consensus.messages import Commit

    s.deliver_all(Commit, to=[p1, r1, r2], view=1, height=1, src=[p1, r1, r2])
    assert all(len(s.chain(i)) == 1 and s.chain(i)[0].block_hash != x_hash for i in (p1, r1, r2))


def test_a_validator_pushing_many_blocks_does_not_grow_a_replicas_memory() -> None:
    """Blocks no signed message names are kept one per sender and height (h and h+1 only); a
    block whose txs do not match its header is never kept, even under a wanted hash."""
    from chain.block import Block
    from node.consensus import pbft
    from node.consensus.messages import PrePrepare, Signed

    world = World(31, n=4)
    replica = world.nodes[1].replica
    pusher = world.nodes[0]  # the primary of view 0, a validator: it may push what it likes
    app = world.nodes[0].app
    for i in range(50):
        for height in (1, 2, 3, 9):
            block = app.build(height, 0, world.make_txs(2, start=10 * i), pusher.key.public, time_offset=i)
            replica.handle(pbft.BlockReceived(pusher.key.public, block))
    assert set(replica._loose) == {(pusher.key.public, 1), (pusher.key.public, 2)}
    assert replica.blocks == {}
    outsider_block = app.build(1, 0, world.make_txs(1), pusher.key.public)
    replica.handle(pbft.BlockReceived(world.consortium.users[0].public, outsider_block))  # not a validator
    assert len(replica._loose) == 2
    # a wanted hash, but txs that are not the header's: refused; the real block is then fetched
    good = app.build(1, 0, world.make_txs(3, start=900), pusher.key.public)
    forged = Block(good.header, good.txs[:2])
    replica.handle(pbft.BlockReceived(pusher.key.public, forged))  # before its pre-prepare: not even kept loose
    pp = Signed.sign(pusher.key, PrePrepare(0, 1, good.block_hash))
    for tx in good.txs:
        world.arrived[1].append(tx)
    actions = replica.handle(pbft.Received(pp.to_plain()))
    assert pbft.FetchBlock(good.block_hash, 1) in actions and good.block_hash not in replica.blocks
    replica.handle(pbft.BlockReceived(pusher.key.public, forged))
    assert good.block_hash not in replica.blocks
    actions = replica.handle(pbft.BlockReceived(world.nodes[2].key.public, good))
    assert replica.blocks == {good.block_hash: good}
    assert any(isinstance(a, pbft.Broadcast) and a.message["body"]["kind"] == "prepare" for a in actions)


@pytest.mark.parametrize("limit", ["max_block_txs", "max_block_bytes"])
def test_a_proposal_over_the_genesis_limits_is_refused(limit: str) -> None:
    """A Byzantine primary's block over max_block_txs or max_block_bytes is never prepared: the
    replicas leave the view, and the next primary's block commits."""
    from chain.genesis import Params
    from node.consensus import pbft
    from node.consensus.messages import Prepare, PrePrepare, Signed, parse_signed

    small = {"max_block_txs": 4, "max_block_bytes": 1000}[limit]  # 5 txs of ~280 bytes exceed either
    params = Params(view_timeout_ms=200, max_view_timeout_ms=3200, **{limit: small})
    world = World(32, n=4, params=params)
    primary = world.nodes[0]
    replica = world.nodes[1].replica
    txs = world.make_txs(5)
    world.arrived[1].extend(txs)
    over = primary.app.build(1, 0, txs, primary.key.public)
    assert len(over.txs) > params.max_block_txs or sum(len(t.encode()) for t in over.txs) > params.max_block_bytes
    replica.handle(pbft.BlockReceived(primary.key.public, over))
    actions = replica.handle(pbft.Received(Signed.sign(primary.key, PrePrepare(0, 1, over.block_hash)).to_plain()))
    sent = [parse_signed(a.message).msg for a in actions if isinstance(a, pbft.Broadcast)]
    assert not any(isinstance(m, Prepare) for m in sent)
    assert replica.view == 1 and replica.in_view_change  # the primary misbehaved
