"""Random methods, paths, query strings, bodies and headers never get a 5xx, and the node keeps answering:
both the in-memory test double and a real single-validator node (ledger, mempool, consensus).

The server runs on a real socket in a thread of its own (hypothesis drives plain synchronous code);
each example is one HTTP request, and after it `/v1/status` must still answer 200.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from factories import make_consortium
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_fake import FakeNode, signed

from chain.crypto import write_key_file
from node.config import NodeConfig
from node.rpc import INTERNAL_ERRORS, ROUTES, serve
from node.validator import open_validator


class Server:
    def __init__(self) -> None:
        self.node = FakeNode()
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self.app: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = self.loop.run_until_complete(serve(self.node, "127.0.0.1", 0, heartbeat_s=0.2))
        self.app = runner.app
        self.port = runner.addresses[0][1]
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        leftover = asyncio.all_tasks(self.loop)  # handlers of connections reset mid-request
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()

    def call(self, fn: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(10)


async def _call(fn: Any) -> Any:
    return fn()


class ValidatorServer(Server):
    """The same, around a real single-validator node (its own ledger, mempool and consensus)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        c = self.node.consortium = make_consortium(1, params={"batch_delay_ms": 1})
        c.genesis.write(tmp / "genesis.json")
        write_key_file(tmp / "v0.json", c.validator_keys[0])
        self.cfg = NodeConfig(node_id="v0", genesis=tmp / "genesis.json", key=tmp / "v0.json", data_dir=tmp / "data",
                              peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        validator = open_validator(self.cfg)
        self.loop.run_until_complete(validator.start())
        self.validator = validator
        self.app = validator._runner.app  # type: ignore[union-attr]
        self.port = validator.rpc_port
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(validator.stop())
        leftover = asyncio.all_tasks(self.loop)
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.close()


def _seed_validator(s: ValidatorServer) -> None:
    """Commit a few registrations, then leave one tx pending-or-committed as the fuzzed base."""
    for i in range(3):
        tx = signed(s.node, nonce=f"seed{i}", expires=50)
        s.call(lambda tx=tx: s.validator.submit(tx))
    wait = asyncio.run_coroutine_threadsafe(_wait_height(s.validator, 1), s.loop)
    wait.result(10)
    BASE_TX_HOLDER["tx"] = signed(s.node, nonce="base", expires=50)
    s.call(lambda: s.validator.submit(BASE_TX_HOLDER["tx"]))


async def _wait_height(v: Any, height: int) -> None:
    while v.height < height:
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module", params=["fake", "validator"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if request.param == "validator":
        v = ValidatorServer(tmp_path_factory.mktemp("fuzz-node"))
        v.thread.start()
        assert v.started.wait(10)
        _seed_validator(v)
        yield v
        v.loop.call_soon_threadsafe(v.loop.stop)
        v.thread.join(10)
        return
    s = Server()
    s.thread.start()
    assert s.started.wait(10)
    # A few blocks and an asset, so reads have something to find; the base tx is already
    # submitted, so re-sending it unchanged is a duplicate and never waits for a commit.
    s.call(lambda: [s.node.submit(signed(s.node, nonce=f"seed{i}")) for i in range(3)])
    s.call(s.node.commit)
    s.call(lambda: s.node.submit(BASE_TX_HOLDER.setdefault("tx", signed(s.node, nonce="base"))))
    yield s
    s.loop.call_soon_threadsafe(s.loop.stop)
    s.thread.join(10)


BASE_TX_HOLDER: dict[str, Any] = {}
ASCII = st.characters(min_codepoint=32, max_codepoint=126)
SEGMENTS = st.one_of(
    st.sampled_from(["latest", "0", "1", "-1", "ab" * 32, "WR-seed0-" + "x" * 6, "%00", "..", "%2F", "9" * 40, ""]),
    st.text(max_size=40).map(lambda t: quote(t, safe="")),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    template = draw(st.sampled_from([r.path for r in ROUTES] + ["/", "/v1", "/v1/txs/{x}/y", "/v2/status"]))
    while "{" in template:
        head, _, rest = template.partition("{")
        template = head + draw(SEGMENTS) + rest.partition("}")[2]
    return template


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


@st.composite
def mutated_tx(draw: st.DrawFn) -> bytes:
    tx = json.loads(json.dumps(BASE_TX_HOLDER["tx"].to_plain()))
    where = draw(st.sampled_from(["sig", "sig_any", "body", "chain_id", "signer", "op", "args", "nonce", "expires", "none"]))
    if where == "sig":
        tx["sig"] = draw(st.text(max_size=130))
    elif where in ("sig_any", "body"):  # any JSON value where a hex string or an object belongs
        tx[where.removesuffix("_any")] = draw(json_values)
    elif where != "none":
        tx["body"][where] = draw(json_values)
    return json.dumps(tx).encode()


bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps({"txs": [v, v]}).encode()),
    mutated_tx(),
)
queries = st.dictionaries(st.sampled_from(["from", "limit", "wait", "timeout", "x"]), st.text(ASCII, max_size=12), max_size=3)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Last-Event-ID", "Authorization", "Accept", "Content-Encoding", "X-Anything"]),
    st.one_of(st.sampled_from(["application/json", "gzip", "deflate", "Bearer x", "5", "text/event-stream"]), st.text(ASCII, max_size=30).map(str.strip)),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), path=paths(),
       query=queries, body=bodies, hdrs=headers)
def test_no_input_gets_a_5xx(server: Server, method: str, path: str, query: dict[str, str], body: bytes | None,
                             hdrs: dict[str, str]) -> None:
    if query.get("wait", "").lower() in ("true", "1"):
        query["timeout"] = "0.05"  # a tx that somehow gets in must not hold the example for 30 s
    url = f"http://127.0.0.1:{server.port}{path}" + (f"?{urlencode(query)}" if query else "")
    with httpx.Client(timeout=10) as http:
        try:
            with http.stream(method, url, content=body, headers=hdrs) as r:
                status = r.status_code
                if not r.headers.get("Content-Type", "").startswith("text/event-stream"):
                    r.read()
                    if r.headers.get("Content-Type", "").startswith("application/json") and status >= 400 and method != "HEAD":
                        assert set(r.json()) == {"error"}
                    elif status >= 400 and method != "HEAD":
                        # only aiohttp's HTTP parser answers in plain text, to bytes it cannot parse at all
                        assert status == 400, (status, r.text)
            assert status < 500 or (status == 504 and r.json()["error"]["code"] == "timeout"), (status, method, url)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # aiohttp's parser resets the connection when a body does not decode in its declared
            # Content-Encoding after the answer is sent; that is the only reset allowed.
            assert "Content-Encoding" in hdrs and body, (method, url, hdrs)
    with httpx.Client(timeout=10) as fresh:  # a new connection: the one above may have been reset
        assert fresh.get(f"http://127.0.0.1:{server.port}/v1/status").status_code == 200
    assert server.app[INTERNAL_ERRORS] == []
