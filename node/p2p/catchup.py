"""Blocks between validators outside consensus: fetching one block by hash, and catching up.

Both sides of each exchange live here, over the transport's authenticated links:
- `BlockFetcher`: a block the consensus core knows only by hash (its PRE-PREPARE arrived before
  the block's push, or the push was lost) is asked of the connected peers one after another until
  the core has it. A peer answers from the core's block cache or the store, at a bounded rate, so a
  faulty peer cannot make this node read and send blocks without limit.
- `CatchUp`: the core asks for it when it learns it is behind (`RequestSync`), and the node also
  probes one peer whenever it has committed nothing for a while (a restarted node on an idle chain
  hears no consensus traffic). Fetched blocks go to the core with their certificates; the core
  accepts one only with a certificate that verifies against the validator set of its height, and
  the ledger re-executes it to the same roots before it is written. So a peer can waste this
  node's time, never make it store a wrong block.

Neither knows the consensus core: the runtime hands in small callbacks (`SyncHost`). An observer
(node/runtime/observer.py) follows the chain with the same `CatchUp`, its `on_synced` committing
each certified block itself, and no grace (it has no commit path of its own to wait for); a
validator answers an observer's requests with `CatchUp.answer`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chain.block import Block, Certificate
from chain.encoding import decode
from chain.store import Store
from node.p2p.messages import (
    MAX_SYNC_BLOCKS,
    SYNC_RESPONSE_BYTES,
    BlockRequest,
    BlockResponse,
    SyncRequest,
    SyncResponse,
)
from node.p2p.peers import PerPeerRate
from node.p2p.transport import Transport

log = logging.getLogger("titlechain.node")

SYNC_REPLY_TIMEOUT_S = 5.0
SYNC_GRACE_S = 0.5  # how long a RequestSync waits for the normal commit path before fetching
IDLE_PROBE_S = 3.0  # with no commit for this long, ask a peer whether we are behind
BLOCK_FETCH_GRACE_S = 0.1  # a missing block is usually a push still on its way: wait this first
BLOCK_REPLY_TIMEOUT_S = 5.0  # per peer asked; a block is at most max_block_bytes
BLOCK_SERVE_PER_S = 8  # block answers per peer per second; more requests are ignored


@dataclass(frozen=True)
class SyncHost:
    """What the runtime lends the block exchanges: its store, its head and its consensus core."""

    transport: Transport
    store: Callable[[], Store]
    height: Callable[[], int]
    halted: Callable[[], bool]  # the node is stopping on a fatal error: fetch nothing more
    cached_block: Callable[[str], Block | None]  # the core's block cache, by hash
    wants_block: Callable[[str], bool]  # the core still lacks this block
    on_block: Callable[[str, Block], None]  # a block from `peer`, for the core to check by hash
    on_synced: Callable[[Block, Certificate], None]  # a certified block, for the core to verify


def connected_peers(transport: Transport, rng: random.Random) -> list[str]:
    peers = [p.public for p in transport.peer_status() if p.connected]
    rng.shuffle(peers)
    return peers


class BlockFetcher:
    def __init__(self, host: SyncHost, rng: random.Random) -> None:
        self.host = host
        self._rng = rng
        self._replies: dict[tuple[str, str], asyncio.Future[BlockResponse]] = {}
        self._fetching: set[str] = set()  # block hashes being fetched
        self._served = PerPeerRate(BLOCK_SERVE_PER_S)  # loop times of recent block answers, per peer

    def fetch(self, block_hash: str, height: int) -> asyncio.Task[None] | None:
        """Start fetching a block the core lacks, unless that fetch is already under way."""
        if block_hash in self._fetching:
            return None
        self._fetching.add(block_hash)
        return asyncio.get_running_loop().create_task(self._fetch(block_hash, height))

    def serve(self, peer: str, req: BlockRequest) -> None:
        """Answer a peer's block request from the core's cache or the store, at a bounded rate."""
        if not self._served.allow(peer, asyncio.get_running_loop().time()):
            log.warning("validator %s… asks for blocks faster than %d/s; ignoring", peer[:12], BLOCK_SERVE_PER_S)
            return
        block = self.host.cached_block(req.block_hash)
        raw = block.encode() if block is not None else None
        if raw is None:
            store = self.host.store()
            height = store.height_of(req.block_hash)
            raw = None if height is None else store.get_block_bytes(height)
        try:
            self.host.transport.send_encoded(peer, BlockResponse.encode_raw(req.block_hash, raw))
        except ValueError as e:
            log.error("could not answer a block request: %s", e)

    def answered(self, peer: str, reply: BlockResponse) -> None:
        waiting = self._replies.pop((peer, reply.block_hash), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    async def _fetch(self, block_hash: str, height: int) -> None:
        """Ask connected peers, one after another, for a block the core lacks, until it has it."""
        try:
            await asyncio.sleep(BLOCK_FETCH_GRACE_S)
            for peer in connected_peers(self.host.transport, self._rng):
                if not self.host.wants_block(block_hash) or self.host.halted():
                    return
                reply = await self._ask(peer, block_hash, height)
                if reply is not None and reply.block is not None and reply.block.block_hash == block_hash:
                    self.host.on_block(peer, reply.block)
            if self.host.wants_block(block_hash):
                log.info("no peer could give block %s… of height %d", block_hash[:12], height)
        finally:
            self._fetching.discard(block_hash)

    async def _ask(self, peer: str, block_hash: str, height: int) -> BlockResponse | None:
        fut: asyncio.Future[BlockResponse] = asyncio.get_running_loop().create_future()
        self._replies[(peer, block_hash)] = fut
        try:
            self.host.transport.send(peer, BlockRequest(block_hash, height).to_plain())
            return await asyncio.wait_for(fut, BLOCK_REPLY_TIMEOUT_S)
        except KeyError:  # no longer linked: the validator set changed since the peers were listed
            return None
        except TimeoutError:
            log.info("validator %s… did not answer a block request", peer[:12])
            return None
        finally:
            self._replies.pop((peer, block_hash), None)


class CatchUp:
    def __init__(self, host: SyncHost, rng: random.Random, grace_s: float = SYNC_GRACE_S) -> None:
        self.host = host
        self._rng = rng
        self._grace_s = grace_s
        self.target = 0  # the highest height a peer or the core said exists
        self._wanted = asyncio.Event()
        self._head_moved = asyncio.Event()
        self._replies: dict[str, asyncio.Future[SyncResponse]] = {}
        self._last_commit = 0.0

    def want(self, to_height: int) -> None:
        self.target = max(self.target, to_height)
        self._wanted.set()

    def committed(self) -> None:
        """The ledger moved: restarts the idle clock and wakes a wait for a height."""
        self._last_commit = asyncio.get_running_loop().time()
        self._head_moved.set()

    def serve(self, peer: str, req: SyncRequest) -> None:
        self.host.transport.send(peer, self.answer(req))

    def answer(self, req: SyncRequest) -> dict[str, Any]:
        """The `sync_resp` for a request: certified blocks from `req.start`, bounded in count and bytes."""
        store = self.host.store()
        blocks: list[dict[str, Any]] = []
        size = 0
        for height in range(req.start, min(store.height, req.start + req.limit - 1) + 1):
            raw, cert = store.get_block_bytes(height), store.get_certificate(height)
            if raw is None or cert is None:
                break
            blocks.append({"block": decode(raw), "certificate": cert.to_plain()})
            size += len(raw)
            if size >= SYNC_RESPONSE_BYTES:
                break
        return SyncResponse.plain(store.height, blocks)

    def answered(self, peer: str, reply: SyncResponse) -> None:
        fut = self._replies.pop(peer, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    async def run(self) -> None:
        """Fetch blocks from peers whenever we are, or may be, behind, until the node halts."""
        loop = asyncio.get_running_loop()
        self._last_commit = loop.time()
        while not self.host.halted():
            try:
                await asyncio.wait_for(self._wanted.wait(), IDLE_PROBE_S)
            except TimeoutError:
                if loop.time() - self._last_commit < IDLE_PROBE_S:
                    continue
            else:
                self._wanted.clear()
                # The core asks as soon as f+1 peers work above our height. Under load that is
                # mostly a node one block behind whose commit is already on its way: give the
                # normal path a moment before fetching blocks that would only duplicate it.
                if await self._reaches(self.target, self._grace_s):
                    continue
            await self._catch_up()

    async def _reaches(self, height: int, within_s: float) -> bool:
        """Whether the ledger reaches `height` by its own commits within `within_s` seconds."""
        try:
            async with asyncio.timeout(within_s):
                while self.host.height() < height:
                    self._head_moved.clear()
                    await self._head_moved.wait()
        except TimeoutError:
            return False
        return True

    async def _catch_up(self) -> None:
        for peer in connected_peers(self.host.transport, self._rng):
            while not self.host.halted():
                before = self.host.height()
                reply = await self._ask(peer, before + 1)
                if reply is None:
                    break  # this peer did not answer in time: try the next
                for block, certificate in reply.blocks:
                    self.host.on_synced(block, certificate)
                if self.host.height() == before or reply.head <= self.host.height():
                    break  # nothing usable, or we have all this peer has
            if self.host.height() >= self.target:
                return

    async def _ask(self, peer: str, start: int) -> SyncResponse | None:
        fut: asyncio.Future[SyncResponse] = asyncio.get_running_loop().create_future()
        self._replies[peer] = fut
        try:
            self.host.transport.send(peer, SyncRequest(start, MAX_SYNC_BLOCKS).to_plain())
            return await asyncio.wait_for(fut, SYNC_REPLY_TIMEOUT_S)
        except KeyError:  # no longer linked: the blocks just synced changed the validator set
            return None
        except TimeoutError:
            log.info("validator %s… did not answer a sync request", peer[:12])
            return None
        finally:
            self._replies.pop(peer, None)
