"""The state-sync client against in-process peers: honest ones, and ones that lie or stay silent.

Each peer is a SnapshotServer over a real store (node/p2p/snapshot_serve.py); messages travel as
plain values through the wire parser, as the transport would deliver them. The sync must refuse
every peer whose answer fails (and name why), complete from the others, and fail clearly when no
usable peer is left.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ledger_fixtures import LedgerChain, build_story_across_a_set_change

from chain import snapshot
from chain.encoding import canonical, decode
from contracts.snapshot_source import SnapshotSource
from contracts.state_sync import StateSync
from node.p2p import state_sync as client_module
from node.p2p.snapshot_serve import SnapshotServer
from node.p2p.state_sync import StateSyncClient, StateSyncError
from node.p2p.sync_wire import WireError, parse_sync


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> LedgerChain:
    ch = build_story_across_a_set_change(tmp_path_factory.mktemp("client") / "full")
    yield ch
    ch.close()


def altered_chunk(peer: str, answer: dict[str, Any]) -> dict[str, Any]:
    if answer["t"] == "snap_chunk" and answer["chunk"]["leaves"]:
        (key, value), *rest = answer["chunk"]["leaves"]
        answer["chunk"]["leaves"] = [[key, ("1" if value[:1] == "0" else "0") + value[1:]], *rest]
    return answer


class Net:
    """Peers named by a fake public key, each a server over the chain's store (or silent);
    `delay`: seconds each answer takes to arrive (a link's latency)."""

    delay = 0.0

    def __init__(self, chain: LedgerChain, behaviours: dict[str, Any]) -> None:
        self.servers = {
            peer: SnapshotServer(self._deliver(peer), lambda: SnapshotSource(chain.ledger.store), tamper)
            for peer, tamper in behaviours.items() if tamper != "silent"
        }
        self.peers = list(behaviours)
        self.client: StateSyncClient | None = None

    def _deliver(self, peer: str) -> Any:
        def send(_to: str, msg: dict[str, Any]) -> None:
            raw = canonical(msg)  # what the link carries
            asyncio.get_running_loop().call_later(self.delay, self.client.on_message, peer, decode(raw))
        return send

    def send(self, peer: str, msg: dict[str, Any]) -> None:
        if peer in self.servers:
            asyncio.get_running_loop().call_soon(self.servers[peer].serve, "joiner", decode(canonical(msg)))


def run_sync(chain: LedgerChain, path: Path, behaviours: dict[str, Any]) -> StateSyncClient:
    net = Net(chain, behaviours)
    net.client = StateSyncClient(net.send, lambda: net.peers, chain.c.genesis,
                                 lambda: StateSync(path, chain.c.genesis), {p: p for p in net.peers})

    async def go() -> None:
        store = await net.client.run()
        assert store.height == store.base_height == chain.ledger.height
        store.close()

    asyncio.run(go())
    return net.client


def test_liars_are_refused_and_the_sync_completes(
    chain: LedgerChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "MAX_CHUNK_LEAVES", 2)  # every peer gets chunks to serve
    monkeypatch.setattr(client_module, "PARTS", 4)
    client = run_sync(chain, tmp_path / "a", {"honest": None, "alters": altered_chunk})
    refused = client.progress.refused
    assert list(refused) == ["alters"], refused  # every peer works on the state: the liar is met
    assert "does not rebuild the state root" in refused["alters"]
    assert client.progress.leaves == len(list(chain.ledger.store.iterate(b"s/")))


def test_a_liar_met_mid_range_is_refused_and_its_range_resumed_where_it_failed(
    chain: LedgerChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the liar's first chunk is true and taken, the next (asked for before the first was
    # verified) is altered: the range goes back from that chunk's start, not its own (Coverage
    # would refuse the overlap), and the prefetched request leaves nothing pending
    monkeypatch.setattr(snapshot, "MAX_CHUNK_LEAVES", 2)
    monkeypatch.setattr(client_module, "PARTS", 2)
    served = {"chunks": 0}

    def alters_from_the_second(peer: str, answer: dict[str, Any]) -> dict[str, Any]:
        if answer["t"] == "snap_chunk":
            served["chunks"] += 1
            if served["chunks"] >= 2:
                return altered_chunk(peer, answer)
        return answer

    client = run_sync(chain, tmp_path / "a", {"liar": alters_from_the_second, "honest": None})
    assert list(client.progress.refused) == ["liar"], client.progress.refused
    assert served["chunks"] >= 2
    assert client.progress.leaves == len(list(chain.ledger.store.iterate(b"s/")))
    assert not client._pending  # no request left waiting


def test_a_silent_peer_times_out_and_no_usable_peer_left_fails_clearly(
    chain: LedgerChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "REQUEST_TIMEOUT_S", 0.2)
    monkeypatch.setattr(client_module, "CONNECT_DEADLINE_S", 0.3)
    client = run_sync(chain, tmp_path / "a", {"honest": None, "silent": "silent", "also": None})
    assert "no answer" in client.progress.refused["silent"]
    with pytest.raises(StateSyncError, match="no usable peer left|no peer gave a valid anchor"):
        run_sync(chain, tmp_path / "b", {"x": altered_chunk, "y": altered_chunk, "z": "silent"})


def test_sync_messages_are_bounded_and_checked() -> None:
    assert parse_sync({"t": "snap_offer_req", "id": 1}).kind == "snap_offer_req"
    for bad in (
        {"t": "snap_chunk_req", "id": 1, "height": 1, "lo": "f" * 64, "limit": "0" * 64},  # lo above limit
        {"t": "snap_chunk_req", "id": 1, "height": 1, "lo": "F" * 64, "limit": "f" * 64},  # not lowercase
        {"t": "snap_anchor", "id": 1, "header": {}, "certificate": {}, "changes": [{}] * 33, "total": 33},
        {"t": "snap_window", "id": 1, "summaries": []},
        {"t": "snap_none", "id": 1, "why": "x" * 513},
        {"t": "snap_offer", "id": -1, "height": 0},
        {"t": "snap_offer", "id": 1, "height": 0, "extra": 1},
    ):
        with pytest.raises(WireError):
            parse_sync(bad)


def test_a_peer_that_connects_mid_sync_is_put_to_work(
    chain: LedgerChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sync starts with the first f+1 peers, without waiting for the rest; a peer that links
    # once the state is being fetched gets a worker of its own at once (and its chunks are checked
    # like anyone's: it never gave an anchor)
    monkeypatch.setattr(snapshot, "MAX_CHUNK_LEAVES", 2)
    monkeypatch.setattr(client_module, "PARTS", 8)
    monkeypatch.setattr(Net, "delay", 0.02)  # so the fetching outlasts a look at the peers
    served: dict[str, int] = {"late": 0}
    net: dict[str, Any] = {}

    def counting(name: str) -> Any:
        def tamper(peer: str, answer: dict[str, Any]) -> dict[str, Any]:
            if answer["t"] == "snap_chunk":
                served[name] = served.get(name, 0) + 1
                if name == "first" and "late" not in net["peers"]:
                    net["peers"].append("late")  # links now, after the first chunk went out
            return answer
        return tamper

    behaviours = {"first": counting("first"), "second": counting("second"), "late": counting("late")}
    original = Net.__init__

    def init(self: Net, chain: LedgerChain, behaviours: dict[str, Any]) -> None:
        original(self, chain, behaviours)
        self.peers = ["first", "second"]
        net["peers"] = self.peers

    monkeypatch.setattr(Net, "__init__", init)
    client = run_sync(chain, tmp_path / "a", behaviours)
    assert not client.progress.refused
    assert served["late"] >= 1, served
    assert client.progress.leaves == len(list(chain.ledger.store.iterate(b"s/")))


def test_a_peer_with_no_block_is_not_counted_among_the_offers(chain: LedgerChain, tmp_path: Path) -> None:
    # a peer that holds nothing yet (another node joining, say) offers height 0: it is dropped,
    # and the base comes from f+1 peers that hold blocks, not from the first f+1 to answer
    def empty(peer: str, answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "height": 0} if answer["t"] == "snap_offer" else answer

    client = run_sync(chain, tmp_path / "a", {"empty": empty, "one": None, "two": None})
    assert list(client.progress.refused) == ["empty"] and "holds no block" in client.progress.refused["empty"]
    assert client.progress.base == chain.ledger.height
