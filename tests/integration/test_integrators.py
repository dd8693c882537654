"""What an integrator meets first, on one real four-node consortium: a JavaScript client written
from docs/protocol.md submits a tx; the SDK document's example runs as written; offline signing
and sending; every hash an explore command prints, piped, is whole; readiness says why not."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, wait_for
from js_client import run_client

from chain.encoding import H

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path_factory.mktemp("integrators") / "net")
    try:
        yield c
    finally:
        c.stop()


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`titlechain ARGS` in a subprocess with stdout a pipe (as under `| grep`)."""
    return subprocess.run([sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=timeout)


def test_js_client_submits_a_tx_the_node_commits(net: Cluster) -> None:
    key = net.root / "keys" / "issuers" / "northgate-receipts.json"
    owner = net.key("parties", "haitong-metals").public
    args = {"asset_id": "WR-JS-0001", "class": "warehouse_receipt", "owner": owner,
            "doc_hash": H(b"js client receipt").hex(), "meta": {"written_by": "tests/js/client.mjs"}}
    code, report, err = run_client("submit", net.nodes[0]["rpc"], str(key), "asset.register", json.dumps(args))
    assert code == 0 and report["failures"] == [], (report, err)
    # the node computed the same tx id from the JS client's bytes, and the asset exists everywhere
    assert report["answer"]["tx_id"] == report["local_tx_id"]
    with net.client(3) as c:
        asset = wait_for(lambda: c.asset("WR-JS-0001"), 20, "the JS client's asset on node 3")
    assert asset["owner"] == owner


def python_blocks(markdown: str) -> list[str]:
    """The ```python code blocks of a markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_sdk_documents_issuer_example_runs_as_written(net: Cluster, tmp_path: Path) -> None:
    blocks = python_blocks((ROOT / "docs" / "sdk.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2, "docs/sdk.md: expected the issuer example and its async variant"
    depositor = net.key("parties", "haitong-metals").public
    env = {**os.environ, "TITLECHAIN_RPC": net.nodes[1]["rpc"], "DEPOSITOR": depositor,
           "ISSUER_KEY": str(net.root / "keys" / "issuers" / "northgate-receipts.json"),
           "GENESIS": str(net.root / "genesis.json"), "RECEIPT_ID": "WR-SDK-DOC-1"}
    outputs = []
    for i, code in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(code, encoding="utf-8")
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, f"docs/sdk.md block {i}:\n{r.stdout}\n{r.stderr}"
        outputs.append(r.stdout)
    assert "a second receipt for the lot: duplicate_document" in outputs[0]
    assert "history: asset.register at" in outputs[0] and ", asset.amend at" in outputs[0]
    assert "proof ok: WR-SDK-DOC-1 belongs to" in outputs[0]
    assert "WR-SDK-DOC-1: version 2, its owner holds" in outputs[1]
    with net.client(2) as c:
        assert c.asset("WR-SDK-DOC-1")["owner"] == depositor
