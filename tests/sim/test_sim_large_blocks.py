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
