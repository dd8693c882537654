"""Schema-driven fuzzing: schemathesis generates requests from the node's own OpenAPI document
(GET /v1/openapi.json of a real single-validator node, in-process) for every operation, valid and
invalid. No answer is a 5xx (504 `timeout` of `?wait=true` aside), every answer's status is one
the document declares and its body fits the schema declared for it, and the node stays ready.

Bounded: a fixed number of examples per operation (well under a minute in all). The event
stream is left to test_rpc_fuzz.py and test_rpc_sse.py: it never ends by itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rpc_servers import Server, running_server
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from node.rpc.base import INTERNAL_ERRORS

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server("validator", tmp_path_factory) as s:
        yield s


@pytest.fixture(scope="module")
def node_schema(node_server: Server) -> schemathesis.BaseSchema:
    base = f"http://127.0.0.1:{node_server.port}"
    doc = httpx.get(f"{base}/v1/openapi.json", timeout=10).json()
    return schemathesis.openapi.from_dict(doc)


schema = schemathesis.pytest.from_fixture("node_schema").exclude(path="/v1/events")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_the_node_answers_every_generated_request_as_its_document_says(case: schemathesis.Case, node_server: Server) -> None:
    if case.query and str(case.query.get("wait", "")).lower() in ("true", "1"):
        case.query["timeout"] = 0.05  # a wait must not hold an example for the default 30 s
    response = case.call(base_url=f"http://127.0.0.1:{node_server.port}", timeout=10)
    timed_out = response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    assert response.status_code < 500 or timed_out, (response.status_code, case.method, case.formatted_path, response.text[:300])
    case.validate_response(response, checks=(status_code_conformance, content_type_conformance, response_schema_conformance))
    assert node_server.app[INTERNAL_ERRORS] == []


def test_the_node_is_still_ready_after_the_schema_fuzzing(node_server: Server) -> None:
    # runs after the generated tests above (file order), on the same module-scoped node
    assert httpx.get(f"http://127.0.0.1:{node_server.port}/v1/status", timeout=10).json()["ready"] is True
    assert node_server.app[INTERNAL_ERRORS] == []
