"""The RPC's edge: browsers (DNS rebinding, cross-site writes), slow clients (head and body
timeouts, the connection cap) and the access log, against the real server on a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient
from rpc_fake import FakeNode, rpc_client, signed

from node.rpc.models import RpcToken
from node.rpc.server import serve

TOKEN = "t" * 20 + "-secret-value"


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[TestClient]:
    async with rpc_client(node, allowed_hosts=("node.internal",)) as c:
        yield c


async def _answer(r: Any) -> tuple[int, str]:
    body = await r.json()
    return r.status, body["error"]["code"] if "error" in body else "ok"


# -- browsers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:26657", "127.0.0.1.nip.io", "localhost.evil.example"])
async def test_without_tokens_a_foreign_host_is_refused(client: TestClient, host: str) -> None:
    # DNS rebinding: the attacker's name now points at 127.0.0.1; the browser sends its own Host
    r = await client.get("/v1/status", headers={"Host": host})
    status, code = await _answer(r)
    assert (status, code) == (403, "forbidden")
    assert "rpc_allowed_hosts" in (await r.json())["error"]["message"]


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:26657", "127.0.0.1:26657", "[::1]:26657", "node.internal:80", "NODE.internal."]
)
async def test_loopback_and_configured_hosts_are_served(client: TestClient, host: str) -> None:
    assert (await client.get("/v1/status", headers={"Host": host})).status == 200


async def test_with_tokens_any_host_is_served_the_token_is_the_guard(node: FakeNode) -> None:
    async with rpc_client(node, tokens=(RpcToken(token=TOKEN, scopes=("read",)),)) as c:
        r = await c.get("/v1/status", headers={"Host": "node.example.com", "Authorization": f"Bearer {TOKEN}"})
        assert r.status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},  # the "simple request" a cross-site <form> or fetch() may send
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
        {"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"},
        {"Content-Type": "application/json", "Origin": "https://evil.example"},
        {"Content-Type": "application/json", "Origin": "null"},
    ],
)
async def test_cross_site_browser_writes_are_refused(
    client: TestClient, node: FakeNode, headers: dict[str, str]
) -> None:
    tx = signed(node)
    for path, body in (("/v1/txs", tx.to_plain()), ("/v1/txs/batch", {"txs": [tx.to_plain()]})):
        r = await client.post(path, data=json.dumps(body), headers=headers)
        status, code = await _answer(r)
        assert (status, code) == (403, "forbidden"), (path, headers)
    assert node.mempool == {}


async def test_a_json_write_from_a_tool_or_the_same_origin_is_accepted(client: TestClient, node: FakeNode) -> None:
    for i, extra in enumerate([{}, {"Sec-Fetch-Site": "same-origin"}, {"Origin": "http://localhost:26657"}]):
        tx = signed(node, nonce=f"ok{i}")
        headers = {"Content-Type": "application/json; charset=utf-8", "Host": "localhost:26657", **extra}
        r = await client.post("/v1/txs", data=json.dumps(tx.to_plain()), headers=headers)
        assert r.status == 202, (extra, await r.text())


# -- slow clients and the cap ------------------------------------------------------------------


class Served:
    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.port = runner.addresses[0][1]

    async def status(self) -> int:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"http://127.0.0.1:{self.port}/v1/status")).status_code


@pytest.fixture
async def served(node: FakeNode) -> AsyncIterator[Served]:
    runner = await serve(node, "127.0.0.1", 0, header_timeout_s=0.5, body_timeout_s=0.5, max_connections=20)
    try:
        yield Served(runner)
    finally:
        await runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection; fails if it stays open `seconds`."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_a_head_that_trickles_in_is_cut_off_at_the_header_timeout(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def trickle() -> None:
        for byte in b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)  # a byte well within any idle timeout, forever

    task = asyncio.create_task(trickle())
    try:
        assert await _closed_within(reader, 3) == b""
        assert loop.time() - start < 2
    finally:
        task.cancel()
        writer.close()


async def test_a_body_that_trickles_in_is_answered_408_at_the_body_timeout(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"POST /v1/txs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")
    await writer.drain()
    answer = await _closed_within(reader, 3)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b'"timeout"' in answer


async def test_connections_over_the_cap_are_closed_and_status_answers_once_they_go(node: FakeNode) -> None:
    # a long head timeout: only the cap can close connections within this test
    runner = await serve(node, "127.0.0.1", 0, header_timeout_s=60, max_connections=20)
    served = Served(runner)
    try:
        conns = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(30)]
        try:
            over = await asyncio.gather(*(_closed_within(r, 5) for r, _ in conns[20:]))
            assert over == [b""] * 10  # closed without an answer
            for r, _ in conns[:20]:  # the first 20 are held (until their head timeout)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(r.read(1), 0.01)
        finally:
            for _, w in conns:
                w.close()
        async with asyncio.timeout(5):
            while True:  # the server notices the closes on its next loop turns
                try:
                    if await served.status() == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()


# -- access log --------------------------------------------------------------------------------


async def test_the_access_log_names_the_token_never_its_value(node: FakeNode, caplog: pytest.LogCaptureFixture) -> None:
    tokens = (RpcToken(token=TOKEN, scopes=("read", "submit"), name="back office"),)
    runner = await serve(node, "127.0.0.1", 0, tokens=tokens)
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.INFO, logger="titlechain.access"):
            async with httpx.AsyncClient(timeout=5) as http:
                ok = await http.get(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
                wrong = {"Authorization": "Bearer wrong-token-value"}
                bad = await http.get(f"http://127.0.0.1:{port}/v1/status", headers=wrong)
    finally:
        await runner.cleanup()
    assert (ok.status_code, bad.status_code) == (200, 401)
    lines = [r.getMessage() for r in caplog.records if r.name == "titlechain.access"]
    assert len(lines) == 2, lines
    assert "GET /v1/status 200" in lines[0] and "token=back office" in lines[0]
    assert "GET /v1/status 401" in lines[1] and "token=-" in lines[1]
    assert not any(TOKEN in line or "wrong-token-value" in line for line in lines)
