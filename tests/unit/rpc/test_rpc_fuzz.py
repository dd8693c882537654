"""Random methods, paths, query strings, bodies and headers never get a 5xx, and the node keeps answering:
both the in-memory test double and a real single-validator node (ledger, mempool, consensus).

The server runs on a real socket in a thread of its own (hypothesis drives plain synchronous code);
each example is one HTTP request, and after it `/v1/status` must still answer 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_servers import BASE_TX_HOLDER, Server, running_server

from node.rpc.base import INTERNAL_ERRORS
from node.rpc.routes import ROUTES


@pytest.fixture(scope="module", params=["fake", "validator"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(request.param, tmp_path_factory) as s:
        yield s


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
    where = draw(st.sampled_from(
        ["sig", "sig_any", "body", "chain_id", "signer", "op", "args", "nonce", "expires", "none"]
    ))
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
