"""Joining by state sync: fetch a certified state from several peers, verify every answer, import.

The network side of contracts/state_sync.py (docs/protocol.md, "State sync"), which the runtime
lends as a `SyncImporter` (this layer may not import the contracts). It runs before the
node opens its ledger, over a transport of its own, and ends with a data dir at base height S;
the node then starts as usual and its catch-up follows blocks from S + 1.

1. Offers: the peers are asked the height they serve as they connect, until f+1 have answered.
   S is the (f+1)-th highest offer, so at least one honest peer holds it whatever f peers claim.
   Nothing waits for the other peers: each joins the work below once it connects.
2. The anchor (S's header, certificate and the validator changes, in pages); then, at the same
   time as the state, the tx-id window (newest first), each from one peer at a time.
3. The state: the path space cut into PARTS aligned ranges, each worked through chunk by chunk
   by one peer's worker at a time, every connected peer working in parallel (a peer that connects
   during the sync gets a worker at once: a chunk is checked against S's state root, whoever
   serves it).

A peer whose answer fails verification, is malformed, or does not come in time is dropped for
the rest of the sync (logged with the reason) and its work goes back to the queue for the
others. The sync fails only when no usable peer is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chain.genesis import Genesis
from chain.proofcheck import LinkError, follow_validator_changes
from chain.snapshot import Coverage, SnapshotError, StateChunk, split_space
from chain.store import Store
from chain.sync_anchor import Anchor, SyncVerifyError, verify_anchor
from node.errors import NodeError
from node.p2p.sync_wire import SnapAnswer, WireError, parse_sync, path_hex

log = logging.getLogger("titlechain.statesync")

PARTS = 16  # aligned ranges of the path space, fetched in parallel
REQUEST_TIMEOUT_S = 15.0
CONNECT_DEADLINE_S = 30.0
POLL_S = 0.05  # how often the connected peers are looked at (the transport has no "connected" event)
PROGRESS_EVERY_S = 2.0

Send = Callable[[str, dict[str, Any]], object]  # (peer public key, plain message)


class SyncImporter(Protocol):
    """contracts.state_sync.StateSync: verifies each answer (raising SyncVerifyError or
    SnapshotError) before it writes it, and finishes the data dir once the state is whole."""

    coverage: Coverage

    @property
    def window_next(self) -> int | None: ...

    def take_anchor(self, changes: list[Any], header: Any, certificate: Any) -> Anchor: ...

    def take_window(self, summaries: Any) -> int: ...

    def take_chunk(self, chunk: StateChunk) -> int: ...

    def finish(self) -> Store: ...

    def abandon(self) -> None: ...


class StateSyncError(NodeError, RuntimeError):
    """The sync cannot complete (no usable peer left, or nothing to sync from); says why."""


class PeerFailed(Exception):
    """This peer's answer is refused (or missing); the message says why."""


@dataclass
class _Pending:
    future: asyncio.Future[SnapAnswer]
    kind: str


@dataclass
class SyncProgress:
    base: int = 0
    chunks: int = 0
    leaves: int = 0
    window_blocks: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # peer -> why it was dropped


class StateSyncClient:
    def __init__(self, send: Send, peers: Callable[[], list[str]], genesis: Genesis,
                 begin: Callable[[], SyncImporter], names: dict[str, str] | None = None) -> None:
        self._send = send
        self._peers = peers  # the peers connected now
        self.genesis = genesis
        self._begin = begin  # a fresh importer over the data dir
        self.f = genesis.validators.f
        self._names = names or {}
        self._next_id = 0
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.progress = SyncProgress()
        self._last_log = 0.0

    # -- messages ----------------------------------------------------------------------------

    def on_message(self, peer: str, obj: Any) -> None:
        """An answer from a peer (the transport's callback for state-sync frames)."""
        try:
            answer = parse_sync(obj)
        except WireError as e:
            self._fail_all(peer, f"a malformed answer: {e}")
            return
        if not isinstance(answer, SnapAnswer):
            return  # a request: a syncing node serves nothing
        pending = self._pending.pop((peer, answer.req_id), None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(answer)

    def _fail_all(self, peer: str, why: str) -> None:
        for key in [k for k in self._pending if k[0] == peer]:
            p = self._pending.pop(key)
            if not p.future.done():
                p.future.set_exception(PeerFailed(why))

    async def _ask(self, peer: str, msg: dict[str, Any], want: str) -> SnapAnswer:
        self._next_id += 1
        req_id = self._next_id
        future: asyncio.Future[SnapAnswer] = asyncio.get_running_loop().create_future()
        self._pending[(peer, req_id)] = _Pending(future, want)
        try:
            self._send(peer, {**msg, "id": req_id})
            answer = await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except TimeoutError:
            raise PeerFailed(f"no answer to {msg['t']} within {REQUEST_TIMEOUT_S:.0f} s") from None
        except (KeyError, ValueError) as e:  # not connected any more, or a frame over the cap
            raise PeerFailed(f"cannot send {msg['t']}: {e}") from None
        finally:
            self._pending.pop((peer, req_id), None)
        if answer.kind == "snap_none":
            raise PeerFailed(f"cannot serve {msg['t']}: {answer.body['why']}")
        if answer.kind != want:
            raise PeerFailed(f"answered {msg['t']} with {answer.kind}")
        return answer

    def _drop(self, peer: str, why: str) -> None:
        if peer not in self.progress.refused:
            self.progress.refused[peer] = why
            log.warning("state sync: refusing peer %s for the rest of the sync: %s", self._name(peer), why)

    def _name(self, peer: str) -> str:
        return self._names.get(peer, peer[:16] + "…")

    def _usable(self) -> list[str]:
        return [p for p in self._peers() if p not in self.progress.refused]

    # -- the sync ----------------------------------------------------------------------------

    async def run(self) -> Store:
        """Sync into the importer's data dir; returns the store at its base. Raises StateSyncError."""
        base = await self._choose_base()
        self.progress.base = base
        sync = self._begin()
        try:
            await self._anchor(sync, base)
            await self._window_and_state(sync, base)
            store = sync.finish()
        except BaseException:
            sync.abandon()
            raise
        log.info("state sync: done at base %d: %d leaves in %d chunks, %d window blocks; refused peers: %s",
                 base, self.progress.leaves, self.progress.chunks, self.progress.window_blocks,
                 {self._name(p): why for p, why in self.progress.refused.items()} or "none")
        return store

    async def _some_usable(self, what: str) -> list[str]:
        """The usable peers; with none, waits (to CONNECT_DEADLINE_S) for one to (re)connect."""
        deadline = time.monotonic() + CONNECT_DEADLINE_S
        while not (peers := self._usable()):
            if time.monotonic() > deadline:
                raise StateSyncError(f"state sync: no usable peer left for {what}; refused: {self.progress.refused}")
            await asyncio.sleep(POLL_S)
        return peers

    async def _choose_base(self) -> int:
        """S from the first f+1 offers of a height >= 1: each peer is asked once, as soon as it is
        connected (no wait for the others: those join the fetching later). A peer that fails to
        answer, or holds no block, is dropped; the sync fails if f+1 offers are not in within
        CONNECT_DEADLINE_S. At most f of the f+1 lie, so an honest one holds S."""
        deadline = time.monotonic() + CONNECT_DEADLINE_S
        asked: dict[str, asyncio.Task[SnapAnswer]] = {}
        offers: dict[str, int] = {}
        try:
            while len(offers) <= self.f:
                for peer in self._usable():
                    if peer not in asked:
                        asked[peer] = asyncio.ensure_future(self._ask(peer, {"t": "snap_offer_req"}, "snap_offer"))
                self._take_offers(asked, offers)
                if len(offers) > self.f:
                    break
                if time.monotonic() > deadline:
                    raise StateSyncError(f"state sync: {len(offers)} offers ({sorted(offers.values())}) after "
                                         f"{CONNECT_DEADLINE_S:.0f} s; need {self.f + 1} to choose a base anyone vouches for")
                pending = [t for t in asked.values() if not t.done()]
                if pending:
                    await asyncio.wait(pending, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(POLL_S)
        finally:
            for task in asked.values():
                task.cancel()  # a late offer is not needed; that peer still joins the fetching
        base = sorted(offers.values(), reverse=True)[self.f]
        log.info("state sync: base height %d chosen from the offers of %d peers", base, len(offers))
        return base

    def _take_offers(self, asked: dict[str, asyncio.Task[SnapAnswer]], offers: dict[str, int]) -> None:
        for peer, task in asked.items():
            if not task.done() or peer in offers or peer in self.progress.refused:
                continue
            error = task.exception()
            if isinstance(error, PeerFailed):
                self._drop(peer, str(error))
            elif error is not None:
                raise error  # a bug, not a peer's doing
            elif (height := task.result().body["height"]) < 1:
                self._drop(peer, "offers no snapshot: it holds no block")
            else:
                offers[peer] = height

    async def _one_peer(self, what: str, attempt: Callable[[str], Any]) -> Any:
        """Run attempt(peer) with one usable peer after another until one succeeds."""
        while True:
            peers = await self._some_usable(what)
            peer = peers[(self._next_id) % len(peers)]
            try:
                return await attempt(peer)
            except (PeerFailed, SyncVerifyError, SnapshotError) as e:
                self._drop(peer, f"{what}: {e}")

    async def _anchor(self, sync: SyncImporter, base: int) -> None:
        """The anchor from every usable peer at once, each verified on its own: a peer with a wrong
        one is dropped here, and two certified headers of S that differ mean the consortium broke
        its fault assumption (the sync stops rather than pick one)."""
        peers = await self._some_usable("the anchor")
        results = await asyncio.gather(*(self._fetch_anchor(p, base) for p in peers), return_exceptions=True)
        good: list[tuple[str, tuple[list[Any], Any, Any]]] = []
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, (PeerFailed, SyncVerifyError)):
                self._drop(peer, f"the anchor: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                good.append((peer, result))
        if not good:
            raise StateSyncError(f"state sync: no peer gave a valid anchor; refused: {self.progress.refused}")
        if len({verify_anchor(self.genesis, *r).header.block_hash for _, r in good}) > 1:
            raise StateSyncError(f"state sync: two certified blocks at height {base}: the consortium broke its fault assumption")
        peer, (changes, header, certificate) = good[0]
        anchor = sync.take_anchor(changes, header, certificate)
        log.info("state sync: block %d certified by its validators, %d validator changes from the genesis "
                 "(%d peers agree)", base, len(anchor.changes), len(good))

    async def _window_and_state(self, sync: SyncImporter, base: int) -> None:
        """Both need only the anchor: fetched together, one's verifying and writing overlaps the
        other's waits on the peers. A failure cancels the other and is raised as itself (a
        StateSyncError, not an ExceptionGroup around it)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._window(sync, base))
                group.create_task(self._state(sync, base))
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None

    async def _fetch_anchor(self, peer: str, base: int) -> tuple[list[Any], Any, Any]:
        changes: list[Any] = []
        while True:
            answer = await self._ask(peer, {"t": "snap_anchor_req", "height": base, "start": len(changes)}, "snap_anchor")
            body = answer.body
            changes += body["changes"]
            # each page checked as it comes: only certified changes can fill one, so a peer that
            # claims a huge `total` runs out of real changes at once instead of paging for ever
            try:
                follow_validator_changes(changes, self.genesis)
            except LinkError as e:
                raise PeerFailed(f"validator changes: {e}") from None
            if len(changes) >= body["total"] or not body["changes"]:
                break
        verify_anchor(self.genesis, changes, body["header"], body["certificate"])  # raises for a bad one
        return changes, body["header"], body["certificate"]

    async def _window(self, sync: SyncImporter, base: int) -> None:
        while sync.window_next is not None:
            top = sync.window_next

            async def attempt(peer: str, top: int = top) -> None:
                answer = await self._ask(peer, {"t": "snap_window_req", "base": base, "top": top}, "snap_window")
                self.progress.window_blocks += sync.take_window(answer.body["summaries"])

            await self._one_peer(f"the tx-id window at {top}", attempt)
        log.info("state sync: tx-id window of %d blocks taken", self.progress.window_blocks)

    async def _state(self, sync: SyncImporter, base: int) -> None:
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for part in split_space(PARTS):
            queue.put_nowait(part)
        workers: dict[str, asyncio.Task[None]] = {}
        try:
            while not sync.coverage.complete:
                for task in workers.values():
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]  # a bug (a peer's failure is handled inside)
                running = [t for t in workers.values() if not t.done()]
                if queue.empty() and not running:  # every range taken and none put back
                    raise StateSyncError("state sync: every range fetched but the state is not whole (a bug)")
                if not running:
                    await self._some_usable("the state")
                # a worker for each usable peer without one: peers that connected since, and peers
                # whose worker ended on an empty queue that a refused peer has refilled since
                for peer in self._usable():
                    if not queue.empty() and (peer not in workers or workers[peer].done()):
                        workers[peer] = asyncio.create_task(self._worker(sync, base, peer, queue))
                running = [t for t in workers.values() if not t.done()]
                if running:
                    await asyncio.wait(running, timeout=POLL_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in workers.values():
                task.cancel()
            await asyncio.gather(*workers.values(), return_exceptions=True)

    async def _worker(self, sync: SyncImporter, base: int, peer: str, queue: asyncio.Queue[tuple[int, int]]) -> None:
        """Ranges from the queue, each chunk by chunk from this peer. The next chunk is asked for as
        soon as one arrives, before that one is verified and written: the peer exports while this
        node verifies (each chunk is still verified before a byte of it is written)."""
        while not queue.empty() and peer not in self.progress.refused:
            lo, hi = queue.get_nowait()
            ask = self._ask_chunk(peer, base, lo, hi)
            try:
                while True:
                    chunk = await ask
                    if chunk.lo != lo or chunk.hi > hi:
                        raise PeerFailed("a chunk for another range than asked")
                    if chunk.hi < hi:
                        ask = self._ask_chunk(peer, base, chunk.hi + 1, hi)
                    self.progress.leaves += sync.take_chunk(chunk)
                    self.progress.chunks += 1
                    self._log_progress(sync)
                    if chunk.hi == hi:
                        break
                    lo = chunk.hi + 1
            except (PeerFailed, SyncVerifyError, SnapshotError) as e:
                self._drop(peer, f"state chunk from path {path_hex(lo)[:16]}…: {e}")
                queue.put_nowait((lo, hi))  # from the first chunk not taken
                return
            finally:
                if not ask.done():
                    ask.cancel()  # a prefetch past a refused chunk: its answer is not wanted
                elif not ask.cancelled():
                    ask.exception()  # retrieved, so asyncio does not log a failure already handled

    def _ask_chunk(self, peer: str, base: int, lo: int, hi: int) -> asyncio.Task[StateChunk]:
        async def ask() -> StateChunk:
            msg = {"t": "snap_chunk_req", "height": base, "lo": path_hex(lo), "limit": path_hex(hi)}
            answer = await self._ask(peer, msg, "snap_chunk")
            assert answer.chunk is not None  # parse_sync gives every snap_chunk its chunk
            return answer.chunk

        return asyncio.ensure_future(ask())

    def _log_progress(self, sync: SyncImporter) -> None:
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_EVERY_S:
            self._last_log = now
            share = 100 * sync.coverage.covered() / 2**256
            log.info("state sync: %d leaves in %d chunks, %.1f%% of the paths covered",
                     self.progress.leaves, self.progress.chunks, share)

