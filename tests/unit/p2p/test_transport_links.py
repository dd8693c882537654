"""Sealed links and the inbound handshake gate, against real transports on 127.0.0.1.

The attacker here holds what a real one would: a relay's view of the bytes, or its own
connections in any number, or (for the replay cases) a validator's genuine frames.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from test_transport import FAST, Net, closed_by_peer, logged, net, raw_connect, until, validator_link  # noqa: F401

from chain.crypto import Domain
from chain.encoding import canonical
from node.p2p.framing import encode_frame
from node.p2p.handshake import PROTOCOL_VERSION
from node.p2p.linkcrypto import Sealer
from node.p2p.linkguard import HandshakeGate, LogSummary
from node.p2p.transport import Transport, TransportConfig


async def test_an_injected_plaintext_frame_closes_the_link_and_is_logged(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    """What the relay of the incident did: a well-formed tx-gossip frame, in the clear, after the
    handshake. Before links were sealed it was delivered; now it closes the link."""
    await net.start(3)
    link = await validator_link(net, 3, net.keys[0])
    link.writer.write(encode_frame({"kind": "msg", "body": {"t": "txs", "txs": []}}))
    assert await closed_by_peer(link.reader)
    await logged(caplog, "failed authentication")
    assert "tampers with the link" in caplog.text
    assert net.inboxes[3].got == []


async def test_a_replayed_genuine_frame_closes_the_link(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    await net.start(3)
    link = await validator_link(net, 3, net.keys[0])
    sealer = Sealer(link.shake.keys.send, FAST.max_frame)
    first = sealer.seal(canonical({"kind": "msg", "body": "once"}))
    link.writer.write(first)
    await net.inboxes[3].wait_count(1)
    link.writer.write(first)  # the same bytes again, as a relay that recorded them would send
    assert await closed_by_peer(link.reader)
    await logged(caplog, "frame 1 failed authentication")
    assert net.inboxes[3].got == [(net.keys[0].public, "once")]


async def test_a_relay_cannot_swap_in_its_own_ephemeral_key(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    """A validator's genuine signed hello with another X25519 key in it: refused at the signature,
    so a relay cannot put itself in the middle of the key exchange."""
    await net.start(3)
    reader, writer = await raw_connect(net.ports[3])
    body = {
        "type": "hello", "version": PROTOCOL_VERSION, "chain_id": net.c.genesis.chain_id,
        "genesis_hash": net.c.genesis.hash, "role": "validator", "public": net.keys[0].public, "nonce": "11" * 32,
        "ephemeral": "22" * 32,
    }
    sig = net.keys[0].sign(Domain.HANDSHAKE, canonical(body))
    writer.write(encode_frame({**body, "ephemeral": "33" * 32, "sig": sig}))
    assert await closed_by_peer(reader)
    await logged(caplog, "hello signature does not verify")
    writer.close()


async def test_a_flood_from_one_address_holds_few_slots_and_a_validator_still_links(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "titlechain.transport")
    config = TransportConfig(**{**FAST.__dict__, "max_handshakes_per_source": 3, "hello_timeout": 30.0, "handshake_timeout": 30.0})
    await net.start(3, config=config)
    flood = [await raw_connect(net.ports[3]) for _ in range(12)]
    # the oldest nine were closed as newer ones came, long before the 30 s deadline
    for reader, _ in flood[:9]:
        assert await closed_by_peer(reader, timeout=5.0)
    await until(lambda: len(net.nodes[3]._gate.anonymous()) == 3)
    await net.start(0)  # a validator dials while three flood connections are still open
    await until(lambda: net.linked(0, 3))
    for _, w in flood:
        w.close()
    await logged(caplog, "handshakes from one address under way")
    assert caplog.text.count("refused inbound") <= 3  # 9 evictions, 3 closes: a line and summaries


def test_gate_caps_per_source_and_in_all_and_reserves_validator_slots() -> None:
    closed: list[str] = []
    evicted: list[tuple[str, str]] = []
    gate = HandshakeGate(max_total=4, max_per_source=2, on_evict=lambda s, r: evicted.append((s, r)))

    def admit(source: str, name: str) -> int:
        return gate.admit(source, lambda: closed.append(name))

    a1, a2 = admit("A", "a1"), admit("A", "a2")
    v = admit("A", "v")  # the per-source cap closes the oldest of A, not the newcomer
    assert closed == ["a1"] and gate.anonymous("A") == [a2, v]
    gate.claim(v, "validator-key")  # its hello is signed: it leaves the anonymous pool
    assert gate.anonymous("A") == [a2]
    for i in range(5):
        admit("A", f"flood{i}")
    assert "v" not in closed  # no anonymous arrival can take a reserved slot
    b1 = admit("B", "b1")
    admit("C", "c1")
    admit("D", "d1")  # the total cap (4) closes the oldest of the busiest source, A
    assert closed[-1] == "flood3" and b1 in gate.anonymous("B")
    v2 = admit("E", "v-again")
    gate.claim(v2, "validator-key")  # a newer handshake of the same key replaces the older one
    assert closed[-1] == "v"
    gate.release(v2)
    gate.release(a1)  # releasing an already evicted ticket is harmless
    assert len(evicted) == len(closed)


async def test_log_summary_turns_a_flood_into_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "t")
    summary = LogSummary(logging.getLogger("t"), "refused", interval=0.05)
    for i in range(10_000):
        summary.event(f"10.0.0.{i % 20}", f"reason {i % 3}")
    assert len(caplog.records) == 1  # the first, in full
    await until(lambda: len(caplog.records) == 2)
    line = caplog.records[1].getMessage()
    assert "9999 more" in line and "reason 1" in line and "other (" in line  # 20 sources: 8 named, rest "other"
    await until(lambda: summary._timer is None)  # quiet again after an empty interval
    summary.event("10.0.0.1", "again")
    assert len(caplog.records) == 3 and "again" in caplog.records[2].getMessage()
    summary.close()


async def test_a_connection_that_says_no_hello_is_closed_at_the_hello_deadline(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    config = TransportConfig(**{**FAST.__dict__, "hello_timeout": 0.3, "handshake_timeout": 30.0})
    await net.start(3, config=config)
    reader, writer = await raw_connect(net.ports[3])
    began = asyncio.get_running_loop().time()
    assert await closed_by_peer(reader, timeout=5.0)
    assert 0.25 <= asyncio.get_running_loop().time() - began < 5.0  # the hello deadline, not the 30 s one
    await logged(caplog, "no hello within 0.3s")
    assert net.nodes[3]._gate.anonymous() == []
    writer.close()


async def test_a_restarted_node_knocks_and_a_lower_key_redials_it_at_once(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """Node 1 is down while node 0 (the lower key, the dialer) backs off for 10-20 s; when node 1
    starts it knocks (a dial node 0 refuses after checking its hello) and node 0 dials it within moments,
    not at the end of its backoff. The link that stays up is node 0's dial: one per pair."""
    caplog.set_level(logging.DEBUG, "titlechain.transport")
    slow = TransportConfig(**{**FAST.__dict__, "backoff_initial": 20.0, "backoff_max": 20.0})
    await net.start(0, config=slow)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()  # a port nobody listens on, yet: node 1's
    net.nodes[0].set_address(net.keys[1].public, f"127.0.0.1:{port}")
    await logged(caplog, "failed")  # node 0 dialed node 1 in vain and now backs off
    addresses: dict[str, str | None] = {v.public: None for v in net.c.genesis.validators.validators}
    addresses[net.keys[0].public] = f"127.0.0.1:{net.ports[0]}"
    one = Transport(net.keys[1], chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
                    validators=net.c.genesis.validators, on_message=lambda *_: None, config=FAST, addresses=addresses)
    net.nodes[1] = one
    await one.start("127.0.0.1", port)
    await until(lambda: net.nodes[0].is_connected(net.keys[1].public) and one.is_connected(net.keys[0].public), timeout=5.0)
    assert "knocked: dialing it now" in caplog.text
