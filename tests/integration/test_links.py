"""Peer links against real node processes: an on-path relay reads nothing and every tampering
closes the link; a handshake flood does not keep a restarting validator from its quorum."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, free_base_port, wait_for
from relay import Relay

from chain.crypto import load_key_file
from chain.encoding import canonical
from chain.tx import new_nonce
from node.devnet.localnet import up
from node.devnet.provision import DEFAULT_SEED, init_consortium
from node.p2p.framing import encode_frame
from node.runtime.config import NodeConfig
from node.sdk.client import RpcError, sign

ISSUER = ("issuers", "northgate-receipts")
OWNER = ("parties", "riverside-foods")


@contextlib.contextmanager
def relayed_cluster(root: Path) -> Iterator[tuple[Cluster, Relay, int, int]]:
    """A 4-node localnet where node `a` dials node `b` through a relay (a's config names the
    relay as b's address); yields (cluster, relay, a, b)."""
    cons = init_consortium(root, validators=4, seed_path=DEFAULT_SEED, base_port=free_base_port(8))
    configs = [NodeConfig.load(n.config) for n in cons.nodes]
    publics = [load_key_file(cfg.key).public for cfg in configs]
    a, b = sorted(range(4), key=lambda i: publics[i])[:2]  # the lower key dials the higher
    host, port = configs[b].peer_listen.rsplit(":", 1)
    relay = Relay(host, int(port))
    relay_port = relay.start()
    configs[a].model_copy(update={"peer_addresses": {configs[b].node_id: f"127.0.0.1:{relay_port}"}}).write(cons.nodes[a].config)
    try:
        cluster = Cluster(root, up(root))
        try:
            yield cluster, relay, a, b
        finally:
            cluster.stop()
    finally:
        relay.close()


def linked(cluster: Cluster, i: int, j: int) -> bool:
    peers = {p["node_id"]: p["connected"] for p in cluster.status(i)["peers"]}
    return peers[cluster.nodes[j]["node_id"]]


def log_text(cluster: Cluster, i: int) -> str:
    return (Path(cluster.nodes[i]["config"]).parent / "node.log").read_text()


def auth_failures_logged(log: str) -> int:
    """Frames that failed authentication, as a node's log reports them (lines and summaries)."""
    total = 0
    for line in log.splitlines():
        if "more in the last" in line:
            total += sum(int(n) for n in re.findall(r"(\d+) x frame \d+ failed authentication", line))
        elif "failed authentication" in line:
            total += 1
    return total


def test_an_on_path_relay_reads_no_meta_and_each_tampering_closes_the_link(tmp_path: Path) -> None:
    with relayed_cluster(tmp_path / "net") as (cluster, relay, a, b):
        wait_for(lambda: relay.connections >= 1 and linked(cluster, b, a), 30, "a linked to b through the relay")
        issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
        height = cluster.status(a)["height"]

        # confidentiality: a tx's meta, gossiped from a to b, never crosses the relay in the clear
        secret = f"CONFIDENTIAL-terms-{new_nonce()}"
        args = {"asset_id": "WR-SECRET", "class": "warehouse_receipt", "owner": owner.public,
                "doc_hash": new_nonce() * 2, "meta": {"note": secret}}
        tx = sign(issuer, cluster.chain_id, "asset.register", args, expires=height + 500)
        carried = len(relay.captured_bytes())
        with cluster.client(a) as c:
            assert c.submit(tx, wait=True, timeout=30)["receipt"]["status"] == "ok"
        with cluster.client(b) as c:
            wait_for(lambda: c.tx(tx.tx_id)["status"] == "committed", 30, "the tx committed on b")
        # a gossips every tx it admits to every peer: the relay carried it, sealed
        assert len(relay.captured_bytes()) - carried > len(canonical(tx.to_plain()))
        assert secret.encode() not in relay.captured_bytes()

        # an outsider-chosen tx (validly signed, never submitted), injected as the incident's relay did
        injected = sign(issuer, cluster.chain_id, "asset.register",
                        {**args, "asset_id": "WR-INJECTED", "doc_hash": new_nonce() * 2, "meta": {}}, expires=height + 500)
        gossip = encode_frame({"kind": "msg", "body": {"t": "txs", "txs": [injected.to_plain()]}})
        for action, payload in [("flip", b""), ("replay", b""), ("inject", gossip)]:
            before = relay.connections
            relay.arm(action, payload)
            wait_for(lambda: relay.fired_on() == before, 15, f"the relay to {action} a sealed frame")
            wait_for(lambda: relay.connections > before and linked(cluster, b, a) and linked(cluster, a, b), 30,
                     f"the link re-established after the {action}")
        # each one was caught as a failed authentication (not, say, an idle timeout), and logged:
        # the first in full, the others in the next summary line
        wait_for(lambda: auth_failures_logged(log_text(cluster, b)) == 3, 20, "b to log three failed authentications")

        with cluster.client(b) as c:  # a later honest tx commits everywhere: the injected one had its chance
            honest = cluster.register(issuer, owner.public, "WR-AFTER", c.height())
            assert c.submit(honest, wait=True, timeout=30)["receipt"]["status"] == "ok"
        for i in range(4):
            with cluster.client(i) as c:
                wait_for(lambda: c.tx(honest.tx_id)["status"] == "committed", 30, f"the honest tx on node {i}")
                with pytest.raises(RpcError) as e:
                    c.tx(injected.tx_id)
                assert e.value.status == 404
        assert secret.encode() not in relay.captured_bytes()


class _Flood:
    """`per_node` connections to each peer port from one source address (127.0.0.2), that say
    nothing; each one closed by the node is reopened after `pause` s. Bounded by `limit_s`."""

    def __init__(self, ports: list[int], per_node: int, pause: float = 0.2, limit_s: float = 60.0) -> None:
        self.ports, self.per_node, self.pause, self.limit_s = ports, per_node, pause, limit_s
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> _Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    async def _hold(self, port: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set() and loop.time() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
                self.opened += 1
                while not self._stop.is_set() and loop.time() < deadline:
                    with contextlib.suppress(TimeoutError):
                        if not await asyncio.wait_for(reader.read(4096), 0.2):
                            break  # the node closed it
                writer.close()
            except OSError:
                pass
            await asyncio.sleep(self.pause)

    async def _run(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.limit_s
        await asyncio.gather(*(self._hold(p, deadline) for p in self.ports for _ in range(self.per_node)))


def test_a_handshake_flood_does_not_keep_a_restarting_validator_from_its_quorum(cluster: Cluster) -> None:
    configs = [NodeConfig.load(n["config"]) for n in cluster.nodes]
    victim = 1
    cluster.kill(victim)
    sizes = [len(log_text(cluster, i)) for i in range(4)]
    with _Flood([cfg.peer_port for cfg in configs], per_node=100) as flood:
        wait_for(lambda: flood.opened >= 400, 20, "the flood to open its connections")
        began = time.monotonic()
        cluster.restart(victim)
        wait_for(lambda: cluster.status(victim)["ready"], 30, "the restarted validator ready under the flood")
        took = time.monotonic() - began
        assert flood.opened > 400  # the nodes closed flood connections and the flood kept reopening them
    with cluster.client(victim) as c:
        issuer, owner = cluster.key(*ISSUER), cluster.key(*OWNER)
        assert c.submit(cluster.register(issuer, owner.public, "WR-FLOOD", c.height()), wait=True, timeout=30)["receipt"]["status"] == "ok"
    for i in range(4):  # a flood costs a few summary lines, not one line per connection
        grown = log_text(cluster, i)[sizes[i] if i != victim else 0 :]
        refusals = [line for line in grown.splitlines() if "refused inbound" in line]
        assert len(refusals) <= 2 + 2 * (took + 25) / 10, (i, len(refusals))
        assert len(grown) < 100_000, (i, len(grown))
