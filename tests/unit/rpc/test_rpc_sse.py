"""GET /v1/events: every committed block exactly once and in order, across replay, live switch and resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse
from rpc_fake import FakeNode, rpc_client, signed, until

from node.rpc.base import INTERNAL_ERRORS
from node.rpc.models import BlockEvent

DEADLINE_S = 10.0


async def read_events(resp: ClientResponse, n: int | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The next n events (or all until the stream ends, if n is None), and any comment lines seen."""
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    current: dict[str, Any] = {}
    while n is None or len(events) < n:
        raw = await asyncio.wait_for(resp.content.readline(), DEADLINE_S)
        if not raw:
            break
        line = raw.decode().rstrip("\n")
        if line == "":
            if current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            comments.append(line)
        else:
            name, _, value = line.partition(": ")
            current[name] = value
    return events, comments


def heights_of(node: FakeNode, events: list[dict[str, Any]]) -> list[int]:
    out = []
    for ev in events:
        assert ev["event"] == "block"
        data = json.loads(ev["data"])
        BlockEvent.model_validate(data)
        assert int(ev["id"]) == data["height"]
        stored = node.block_event(data["height"])
        assert stored is not None and data == json.loads(json.dumps(stored.to_plain()))
        out.append(data["height"])
    return out


async def test_replay_then_live_without_gap_or_duplicate() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        await client.post("/v1/txs", json=signed(node).to_plain())
        for _ in range(3):
            node.commit()
        resp = await client.get("/v1/events?from=1")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        events, _ = await read_events(resp, 3)
        assert heights_of(node, events) == [1, 2, 3]
        assert len(json.loads(events[0]["data"])["receipts"]) == 1
        for _ in range(2):
            node.commit()
        events, _ = await read_events(resp, 2)
        assert heights_of(node, events) == [4, 5]
        resp.close()
        await until(lambda: not node.subscribers)  # the stream unsubscribed when the client left
        assert client.server.app[INTERNAL_ERRORS] == []


async def test_without_from_only_new_blocks_are_sent() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        node.commit()
        resp = await client.get("/v1/events")
        await until(lambda: len(node.subscribers) == 1)
        node.commit()
        events, _ = await read_events(resp, 1)
        assert heights_of(node, events) == [2]


async def test_blocks_committed_during_the_replay_arrive_once_in_order() -> None:
    node = FakeNode(queue_size=1000)
    async with rpc_client(node) as client:
        for _ in range(30):
            node.commit()

        async def committer() -> None:
            for _ in range(70):
                node.commit()
                await asyncio.sleep(0)  # interleave with the stream's replay writes

        resp = await client.get("/v1/events?from=1")
        task = asyncio.ensure_future(committer())
        events, _ = await read_events(resp, 100)
        await task
        assert heights_of(node, events) == list(range(1, 101))


async def test_last_event_id_resumes_after_it_and_wins_over_from() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        for _ in range(5):
            node.commit()
        resp = await client.get("/v1/events?from=1", headers={"Last-Event-ID": "2"})
        events, _ = await read_events(resp, 3)
        assert heights_of(node, events) == [3, 4, 5]


async def test_a_client_whose_queue_fills_is_disconnected_and_resumes_without_loss() -> None:
    node = FakeNode(queue_size=4)
    async with rpc_client(node) as client:
        node.commit()
        resp = await client.get("/v1/events?from=1")
        first, _ = await read_events(resp, 1)
        await until(lambda: len(node.subscribers) == 1)
        for _ in range(10):  # committed without yielding: the queue overflows before the stream runs
            node.commit()
        rest, _ = await read_events(resp, None)  # ends: the server closed the stream
        got = heights_of(node, first + rest)
        assert got == list(range(1, len(got) + 1)) and len(got) < 11
        resp2 = await client.get("/v1/events", headers={"Last-Event-ID": str(got[-1])})
        more, _ = await read_events(resp2, 11 - len(got))
        assert got + heights_of(node, more) == list(range(1, 12))
        assert client.server.app[INTERNAL_ERRORS] == []


async def test_heartbeat_comments_keep_an_idle_stream_alive() -> None:
    node = FakeNode()
    async with rpc_client(node, heartbeat_s=0.05) as client:
        resp = await client.get("/v1/events")
        _, comments = await read_events_until_comment(resp)
        assert comments and comments[0].startswith(":")
        node.commit()
        events, _ = await read_events(resp, 1)
        assert heights_of(node, events) == [1]


async def read_events_until_comment(resp: ClientResponse) -> tuple[list[str], list[str]]:
    raw = await asyncio.wait_for(resp.content.readline(), DEADLINE_S)
    assert raw.startswith(b":")
    assert await asyncio.wait_for(resp.content.readline(), DEADLINE_S) == b"\n"
    return [], [raw.decode().rstrip("\n")]


async def test_bad_resume_parameters_are_400() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        for headers, query in (({"Last-Event-ID": "abc"}, ""), ({}, "?from=-3"), ({}, "?from=x")):
            r = await client.get("/v1/events" + query, headers=headers)
            assert r.status == 400 and (await r.json())["error"]["code"] == "malformed"
        assert not node.subscribers


async def test_streams_beyond_the_cap_are_refused_with_429() -> None:
    node = FakeNode()
    async with rpc_client(node, max_streams=1) as client:
        first = await client.get("/v1/events")
        await until(lambda: len(node.subscribers) == 1)
        second = await client.get("/v1/events")
        assert second.status == 429 and (await second.json())["error"]["code"] == "too_many_streams"
        first.close()
        await until(lambda: not node.subscribers)
        third = await client.get("/v1/events")
        assert third.status == 200


async def test_a_lost_event_is_filled_from_the_store() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        resp = await client.get("/v1/events")
        await until(lambda: len(node.subscribers) == 1)
        node.commit()
        node.commit(publish=False)
        node.commit()
        events, _ = await read_events(resp, 3)
        assert heights_of(node, events) == [1, 2, 3]


class CommitsDuringReplay(FakeNode):
    """Commits a burst of blocks while the stream replays height 2: more than its queue holds."""

    def block_event(self, height: int) -> Any:
        ev = super().block_event(height)
        if height == 2 and self.height < 20:
            for _ in range(10):
                self.commit()
        return ev


async def test_a_queue_overflowing_during_the_replay_is_renewed_not_fatal() -> None:
    node = CommitsDuringReplay(queue_size=4)
    async with rpc_client(node) as client:
        for _ in range(5):
            node.commit()
        resp = await client.get("/v1/events?from=1")
        events, _ = await read_events(resp, 15)
        assert heights_of(node, events) == list(range(1, 16))
        assert node.dropped_subscribers == 1 and len(node.subscribers) == 1  # renewed, still live
        node.commit()
        events, _ = await read_events(resp, 1)
        assert heights_of(node, events) == [16]
