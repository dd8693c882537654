"""The event stream (`GET /v1/events`, server-sent events).

It subscribes to the node BEFORE replaying past blocks from the store, then skips the heights it has
already sent, so there is neither a gap nor a duplicate at the switch from replay to live. The
node's subscriber queue is bounded: a client that falls so far behind that its queue fills is
disconnected (it resumes with `Last-Event-ID`); while replaying, the queue is renewed instead,
since then the delay is the stream's own."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from chain.limits import MAX_HEIGHT
from node.errors import BeforeBase
from node.rpc.api import CommittedBlockEvent, NodeApi
from node.rpc.base import CONFIG, DIGITS, INTERNAL_ERRORS, STREAMS, ApiError, api_of, query_int

log = logging.getLogger("titlechain.rpc")



def _sse_block(ev: CommittedBlockEvent) -> bytes:
    data = json.dumps(ev.to_plain(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {ev.height}\nevent: block\ndata: {data}\n\n".encode()


def _events_start(request: web.Request, api: NodeApi) -> int:
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None and last_id.strip() != "":
        if not DIGITS.matches(last_id.strip()) or int(last_id) >= MAX_HEIGHT:
            raise ApiError(400, "malformed", "Last-Event-ID must be the height of the last block received")
        return int(last_id) + 1  # a reconnect resumes after what it has; it wins over ?from
    start = query_int(request, "from", None, 0, MAX_HEIGHT)
    return api.height + 1 if start is None else max(start, 1)


class _SlowClient(Exception):
    pass


class _Stream:
    """One client's event stream: replay from the store, then live blocks from the node's queue."""

    def __init__(self, api: NodeApi, resp: web.StreamResponse, write_timeout_s: float) -> None:
        self.api = api
        self.resp = resp
        self.write_timeout_s = write_timeout_s
        self.queue = api.subscribe()  # before replaying, so that nothing committed meanwhile is missed

    async def send(self, data: bytes) -> None:
        try:
            await asyncio.wait_for(self.resp.write(data), self.write_timeout_s)
        except TimeoutError:
            raise _SlowClient(f"a write did not complete within {self.write_timeout_s:g} s") from None

    async def replay(self, next_height: int) -> int:
        """Send stored blocks from next_height up to the head (which may move meanwhile)."""
        while next_height <= self.api.height:
            ev = self.api.block_event(next_height)
            if ev is None:
                break
            await self.send(_sse_block(ev))
            next_height += 1
            if self.queue.maxsize and self.queue.full():
                # Our own replay kept us from the queue: renew it; what it missed comes from the store.
                self.api.unsubscribe(self.queue)
                self.queue = self.api.subscribe()
        return next_height

    async def follow(self, start: int, heartbeat_s: float) -> None:
        next_height = await self.replay(start)
        while True:
            try:
                ev = await asyncio.wait_for(self.queue.get(), heartbeat_s)
            except TimeoutError:
                await self.send(b": keep-alive\n\n")
                next_height = await self.replay(next_height)  # in case the node dropped our queue
                continue
            if self.queue.maxsize > 1 and self.queue.qsize() + 1 >= self.queue.maxsize:  # it was full: we fell behind
                raise _SlowClient("the subscriber queue filled up")
            if ev.height < next_height:
                continue  # already sent during the replay
            while next_height < ev.height:  # the node skipped us (dropped events): fill from the store
                missing = self.api.block_event(next_height)
                if missing is None:
                    raise _SlowClient(f"block {next_height} not available to fill a gap")
                await self.send(_sse_block(missing))
                next_height += 1
            await self.send(_sse_block(ev))
            next_height = ev.height + 1


async def events(request: web.Request) -> web.StreamResponse:
    api = api_of(request)
    cfg = request.app[CONFIG]
    streams = request.app[STREAMS]
    start = _events_start(request, api)
    if start <= api.base_height:  # the base block's receipts and all below it are not held
        raise BeforeBase(f"block {start} (the stream's first event)", api.base_height)
    if len(streams) >= cfg.max_streams:
        raise ApiError(429, "too_many_streams", f"this node serves at most {cfg.max_streams} event streams")
    task = asyncio.current_task()
    assert task is not None
    streams.add(task)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    stream = _Stream(api, resp, cfg.write_timeout_s)
    try:
        await resp.prepare(request)
        await stream.follow(start, cfg.heartbeat_s)
    except _SlowClient as e:
        log.info("event stream to %s closed: %s; the client resumes with Last-Event-ID", request.remote, e)
        resp.force_close()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away, or the server is shutting down
    except Exception:
        # The headers are sent: no error answer is possible any more, only closing the stream.
        log.exception("event stream to %s failed", request.remote)
        request.app[INTERNAL_ERRORS].append("events")
        resp.force_close()
    finally:
        api.unsubscribe(stream.queue)
        streams.discard(task)
    return resp
