"""Catch-up while the validator set changes under it: a peer listed as linked may be gone by the
time it is asked (the blocks just synced changed the set, and a joining node drops its guests)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from node.p2p.catchup import CatchUp, SyncHost
from node.p2p.messages import SyncResponse, parse_wire
from node.p2p.peers import PeerStatus


class _Links:
    """Two linked peers; "gone" was dropped from the set after `peer_status` listed it."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.catch_up: CatchUp | None = None

    def peer_status(self) -> list[PeerStatus]:
        return [PeerStatus(n, n, True, 0, 0, 0) for n in ("gone", "kept")]

    def send(self, peer: str, msg: Any) -> int:
        if peer == "gone":
            raise KeyError(peer)
        self.asked.append(peer)
        reply = parse_wire(SyncResponse.plain(0, []))
        assert isinstance(reply, SyncResponse) and self.catch_up is not None
        asyncio.get_running_loop().call_soon(self.catch_up.answered, peer, reply)
        return 0


async def test_a_peer_dropped_from_the_set_is_skipped_not_fatal() -> None:
    links = _Links()
    host = SyncHost(
        transport=links,  # type: ignore[arg-type]
        store=lambda: None,  # type: ignore[arg-type,return-value]
        height=lambda: 0,
        halted=lambda: False,
        cached_block=lambda h: None,
        wants_block=lambda h: False,
        on_block=lambda p, b: None,
        on_synced=lambda b, c: None,
    )
    catch_up = links.catch_up = CatchUp(host, random.Random(1))
    catch_up.want(5)
    await asyncio.wait_for(catch_up._catch_up(), 5)  # raised KeyError, ending the node's catch-up for good
    assert links.asked == ["kept"]
