"""Peer transport over real sockets on 127.0.0.1: handshake, delivery, refusals, reconnection, slow peers."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from factories import Consortium, make_consortium, seeded_key

from chain.crypto import KeyPair
from chain.encoding import Value, decode
from node.p2p.framing import encode_frame
from node.p2p.handshake import Handshake
from node.p2p.linkcrypto import Opener
from node.p2p.transport import PROTOCOL_VERSION, HandshakeError, Transport, TransportConfig, handshake

FAST = TransportConfig(
    handshake_timeout=1.0,
    connect_timeout=1.0,
    backoff_initial=0.02,
    backoff_max=0.3,
    ping_interval=0.2,
    idle_timeout=3.0,
    write_timeout=3.0,
    log_interval=0.1,
)
DEADLINE = 10.0


@dataclass
class Inbox:
    got: list[tuple[str, Value]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, sender: str, msg: Value) -> None:
        if msg == "boom":
            raise RuntimeError("a bug in the message handler")
        self.got.append((sender, msg))
        self.changed.set()

    async def wait_count(self, n: int, timeout: float = DEADLINE) -> None:
        async with asyncio.timeout(timeout):
            while len(self.got) < n:
                self.changed.clear()
                await self.changed.wait()


async def until(pred: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Wait for pred to hold, polling, failing after timeout."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait until the transport has logged text (its side may log after ours has given up)."""
    await until(lambda: text in caplog.text)


@dataclass
class Net:
    c: Consortium
    keys: list[KeyPair]  # validator keys sorted by public: keys[0] dials everyone
    nodes: dict[int, Transport] = field(default_factory=dict)
    inboxes: dict[int, Inbox] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)

    async def start(self, i: int, config: TransportConfig = FAST, port: int = 0) -> Transport:
        inbox = Inbox()
        t = Transport(
            self.keys[i],
            chain_id=self.c.genesis.chain_id,
            genesis_hash=self.c.genesis.hash,
            validators=self.c.genesis.validators,
            on_message=inbox,
            config=config,
            addresses={v.public: None for v in self.c.genesis.validators.validators},
        )
        self.ports[i] = await t.start("127.0.0.1", port)
        self.nodes[i], self.inboxes[i] = t, inbox
        for j, other in self.nodes.items():
            if j != i:
                other.set_address(self.keys[i].public, f"127.0.0.1:{self.ports[i]}")
                t.set_address(self.keys[j].public, f"127.0.0.1:{self.ports[j]}")
        return t

    async def stop(self, i: int) -> None:
        await self.nodes.pop(i).close()

    def linked(self, i: int, j: int) -> bool:
        return self.nodes[i].is_connected(self.keys[j].public) and self.nodes[j].is_connected(self.keys[i].public)

    def all_linked(self) -> bool:
        return all(self.linked(i, j) for i in self.nodes for j in self.nodes if i < j)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    c = make_consortium(4)
    n = Net(c, sorted(c.validator_keys, key=lambda k: k.public))
    yield n
    for t in n.nodes.values():
        await t.close()


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = DEADLINE) -> bool:
    """True once the other end closed the connection (EOF or reset)."""
    async with asyncio.timeout(timeout):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
    return True


async def test_four_connect_pairwise_and_deliver(net: Net) -> None:
    for i in range(4):
        await net.start(i)
    await until(net.all_linked)
    for i in range(4):
        for k in range(20):
            net.nodes[i].broadcast({"from": i, "k": k})
    net.nodes[3].send(net.keys[0].public, "direct")
    for i in range(4):
        await net.inboxes[i].wait_count(60 + (i == 0))
    for i in range(4):
        got = net.inboxes[i].got
        for j in range(4):
            if j != i:
                from_j = [m for s, m in got if s == net.keys[j].public and m != "direct"]
                assert from_j == [{"from": j, "k": k} for k in range(20)]  # per-sender order kept
        assert all(s != net.keys[i].public for s, _ in got)
    assert (net.keys[3].public, "direct") in net.inboxes[0].got
    status = net.nodes[1].peer_status()
    assert [s.to_plain() for s in status] == [
        {"node_id": v.node_id, "connected": True}
        for v in net.c.genesis.validators.validators
        if v.public != net.keys[1].public
    ]
    assert all(s.received == 20 and s.dropped == 0 for s in status)


async def test_handler_exception_does_not_drop_the_link(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    await net.start(0)
    await net.start(1)
    await until(net.all_linked)
    inbox = net.inboxes[1]
    net.nodes[0].send(net.keys[1].public, "boom")
    net.nodes[0].send(net.keys[1].public, "after")
    await inbox.wait_count(1)
    assert inbox.got == [(net.keys[0].public, "after")]
    assert net.linked(0, 1)
    assert "on_message failed" in caplog.text


async def knock(net: Net, target: int, key: KeyPair) -> None:
    """Dial a running transport as `key` (a higher key of its set) and complete the handshake if it lets us."""
    reader, writer = await raw_connect(net.ports[target])
    try:
        await handshake(reader, writer, key=key, chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
                        allowed={net.keys[target].public}, timeout=DEADLINE)
    finally:
        writer.close()


async def refused(
    net: Net, target: int, key: KeyPair, *, chain_id: str | None = None, genesis_hash: str | None = None
) -> None:
    """Handshake with a running transport as key, and see it close the connection on us.

    Our own side may refuse first (a wrong chain is mutual) or even complete (the other end signs
    before it checks our signature); what matters is that the transport hangs up.
    """
    reader, writer = await raw_connect(net.ports[target])
    try:
        try:
            await handshake(
                reader,
                writer,
                key=key,
                chain_id=chain_id or net.c.genesis.chain_id,
                genesis_hash=genesis_hash or net.c.genesis.hash,
                allowed={net.keys[target].public},
                timeout=DEADLINE,
            )
        except HandshakeError:
            pass
        else:
            assert await closed_by_peer(reader)
    finally:
        writer.close()


async def test_non_validator_wrong_chain_wrong_genesis_and_wrong_direction_refused(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "titlechain.transport")
    for i in (1, 3):
        await net.start(i)
    await until(net.all_linked)
    await refused(net, 3, seeded_key("not-a-validator"))
    await logged(caplog, "is not a validator we accept")
    caplog.clear()
    await refused(net, 3, net.keys[0], chain_id="other-chain")
    await logged(caplog, "wrong chain")
    caplog.clear()
    await refused(net, 3, net.keys[0], genesis_hash="0" * 64)
    await logged(caplog, "wrong genesis")
    caplog.clear()
    # a higher key must be dialed, never dial: its dial is refused, and taken as a knock
    # (transport.py): the lower key dials it back
    caplog.set_level(logging.INFO, "titlechain.transport")
    with pytest.raises(HandshakeError):  # refused at the handshake: never taken for a link
        await knock(net, 1, net.keys[2])
    await logged(caplog, "knocked: dialing it now")
    assert not net.nodes[1].is_connected(net.keys[2].public)
    # the refused attempts never became peers, and the real link is untouched
    assert not net.nodes[3].is_connected(net.keys[0].public)
    assert net.linked(1, 3)


async def test_an_impostor_without_the_key_fails_the_signature(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    """A hello naming a validator's key, signed with another key, is refused at the signature."""
    await net.start(3)
    impostor = KeyPair(seed=seeded_key("mallory").seed, public=net.keys[0].public)
    await refused(net, 3, impostor)
    await logged(caplog, "signature does not verify")
    assert not net.nodes[3].is_connected(net.keys[0].public)


def old_hello(net: Net, key: KeyPair) -> dict:
    """The hello a validator running the previous protocol version sends: well formed, its own key."""
    return {
        "type": "hello", "version": PROTOCOL_VERSION - 1, "chain_id": net.c.genesis.chain_id,
        "genesis_hash": net.c.genesis.hash, "public": key.public, "nonce": os.urandom(32).hex(),
    }


async def test_a_peer_of_another_protocol_version_is_refused_naming_both(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer of an older version runs rules this node does not (commit signatures, standing,
    cleartext frames): refused at the hello, with both versions named."""
    caplog.set_level(logging.WARNING, "titlechain.transport")
    await net.start(3)
    both = f"peer speaks protocol version {PROTOCOL_VERSION - 1}, this node speaks version {PROTOCOL_VERSION}"
    # an old validator dials us
    reader, writer = await raw_connect(net.ports[3])
    writer.write(encode_frame(old_hello(net, net.keys[0])))
    assert await reader.read(65536) == b""  # refused before it says anything (the acceptor answers a valid hello only)
    assert await closed_by_peer(reader)
    writer.close()
    await logged(caplog, both)
    assert not net.nodes[3].is_connected(net.keys[0].public)

    # we dial an old validator: our side refuses it just the same
    async def old_node(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(encode_frame(old_hello(net, net.keys[3])))
        await w.drain()
        await r.read(65536)
        w.close()

    server = await asyncio.start_server(old_node, "127.0.0.1", 0)
    try:
        reader, writer = await raw_connect(server.sockets[0].getsockname()[1])
        with pytest.raises(HandshakeError, match=both):
            await handshake(
                reader, writer, key=net.keys[0], chain_id=net.c.genesis.chain_id,
                genesis_hash=net.c.genesis.hash, allowed={net.keys[3].public}, timeout=DEADLINE,
            )
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_garbage_oversize_and_slow_handshakes_are_dropped_without_harm(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    for i in (1, 2, 3):
        await net.start(i)
    await until(net.all_linked)
    port = net.ports[3]

    garbage = await raw_connect(port)
    garbage[1].write(os.urandom(5000))
    oversize = await raw_connect(port)
    oversize[1].write(struct.pack(">I", 100 * 1024 * 1024) + b"x" * 100)
    silent = await raw_connect(port)  # connects and says nothing
    half = await raw_connect(port)
    half[1].write(struct.pack(">I", 50) + b"abc")  # a frame that never completes
    ill_typed = await raw_connect(port)  # a canonical hello with fields of the wrong types
    ill_typed[1].write(
        encode_frame(
            {"type": "hello", "version": True, "chain_id": net.c.genesis.chain_id,
             "genesis_hash": net.c.genesis.hash, "public": [1], "nonce": 7}
        )
    )

    # meanwhile the validators keep talking
    net.nodes[1].broadcast("during")
    for conn in (garbage, oversize, silent, half, ill_typed):
        assert await closed_by_peer(conn[0])
        conn[1].close()
    await net.inboxes[3].wait_count(1)
    await net.inboxes[2].wait_count(1)
    assert net.all_linked()
    # all five are logged, but not one line each: a first in full, then a summary per interval
    await logged(caplog, "no handshake within")
    await logged(caplog, f"peer speaks protocol version True, this node speaks version {PROTOCOL_VERSION}")
    await logged(caplog, "bytes; the cap is 4096")
    assert "handler failed" not in caplog.text

    # after a valid handshake, an oversize frame still costs only that connection
    reader, writer = await raw_connect(port)
    await handshake(
        reader,
        writer,
        key=net.keys[0],
        chain_id=net.c.genesis.chain_id,
        genesis_hash=net.c.genesis.hash,
        allowed={net.keys[3].public},
        timeout=DEADLINE,
    )
    await until(lambda: net.nodes[3].is_connected(net.keys[0].public))
    writer.write(struct.pack(">I", FAST.max_frame + 1))
    assert await closed_by_peer(reader)
    writer.close()
    await until(lambda: not net.nodes[3].is_connected(net.keys[0].public))
    net.nodes[2].send(net.keys[3].public, "still fine")
    await net.inboxes[3].wait_count(2)
    assert net.all_linked()


@pytest.mark.parametrize("restarted", [0, 1], ids=["dialer", "acceptor"])
async def test_reconnects_after_a_peer_restarts_and_delivers_what_was_queued(net: Net, restarted: int) -> None:
    await net.start(0)
    await net.start(1)
    await until(net.all_linked)
    survivor = 1 - restarted
    port = net.ports[restarted]
    await net.stop(restarted)
    await until(lambda: not net.nodes[survivor].is_connected(net.keys[restarted].public))
    net.nodes[survivor].send(net.keys[restarted].public, "sent while it was down")
    await net.start(restarted, port=port)
    await until(net.all_linked)
    await net.inboxes[restarted].wait_count(1)
    assert net.inboxes[restarted].got == [(net.keys[survivor].public, "sent while it was down")]
    net.nodes[restarted].send(net.keys[survivor].public, "back")
    await until(lambda: (net.keys[restarted].public, "back") in net.inboxes[survivor].got)


async def test_a_peer_that_stops_reading_does_not_block_the_others(net: Net) -> None:
    config = TransportConfig(**{**FAST.__dict__, "queue_frames": 20, "write_timeout": 60.0})
    for i in (1, 2):
        await net.start(i)
    x = await net.start(3, config=config)
    await until(net.all_linked)
    # keys[0] completes the handshake with x and then never reads again
    reader, writer = await raw_connect(net.ports[3])
    await handshake(
        reader,
        writer,
        key=net.keys[0],
        chain_id=net.c.genesis.chain_id,
        genesis_hash=net.c.genesis.hash,
        allowed={net.keys[3].public},
        timeout=DEADLINE,
    )
    await until(lambda: x.is_connected(net.keys[0].public))
    stalled = net.keys[0].public
    blob = "ab" * 32 * 1024  # 64 KiB per message: far more in all than socket buffers hold
    count = 600
    for k in range(count):
        x.broadcast({"k": k, "blob": blob})
        await net.inboxes[1].wait_count(k + 1)
        await net.inboxes[2].wait_count(k + 1)
    for i in (1, 2):
        assert [m["k"] for _, m in net.inboxes[i].got] == list(range(count))
    by_key = {s.public: s for s in x.peer_status()}
    assert by_key[stalled].dropped > 0
    assert by_key[net.keys[1].public].dropped == 0 and by_key[net.keys[2].public].dropped == 0
    assert len(x._peers[stalled].queue) <= config.queue_frames
    writer.close()


@dataclass
class Link:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    shake: Handshake


async def validator_link(net: Net, target: int, key: KeyPair) -> Link:
    """A raw connection that passes the handshake as key and then does only what the test says."""
    reader, writer = await raw_connect(net.ports[target])
    shake = await handshake(
        reader,
        writer,
        key=key,
        chain_id=net.c.genesis.chain_id,
        genesis_hash=net.c.genesis.hash,
        allowed={net.keys[target].public},
        timeout=DEADLINE,
    )
    await until(lambda: net.nodes[target].is_connected(key.public))
    return Link(reader, writer, shake)


async def test_a_silent_link_is_dropped_after_the_idle_timeout(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    """No frame at all, not even a ping, for idle_timeout: the link is dead (half-open) and dropped."""
    config = TransportConfig(**{**FAST.__dict__, "idle_timeout": 0.5})
    await net.start(3, config=config)
    link = await validator_link(net, 3, net.keys[0])
    began = asyncio.get_running_loop().time()
    await until(lambda: not net.nodes[3].is_connected(net.keys[0].public))
    assert asyncio.get_running_loop().time() - began >= 0.4
    assert await closed_by_peer(link.reader)
    link.writer.close()


async def test_pings_keep_an_idle_link_up(net: Net) -> None:
    config = TransportConfig(**{**FAST.__dict__, "ping_interval": 0.05, "idle_timeout": 1.0})
    await net.start(0, config=config)
    await net.start(1, config=config)
    await until(net.all_linked)
    # idle for several idle timeouts: the link must still be the first one, never dropped
    first = net.nodes[0]._peers[net.keys[1].public].conn
    loop = asyncio.get_running_loop()
    end = loop.time() + 1.5
    await until(lambda: loop.time() >= end or not net.linked(0, 1))
    assert net.linked(0, 1) and net.nodes[0]._peers[net.keys[1].public].conn is first


async def test_a_peer_that_takes_no_bytes_is_disconnected_after_the_write_timeout(net: Net) -> None:
    config = TransportConfig(**{**FAST.__dict__, "write_timeout": 0.5, "idle_timeout": 60.0})
    x = await net.start(3, config=config)
    link = await validator_link(net, 3, net.keys[0])
    blob = "ab" * 32 * 1024
    for k in range(400):  # far more than socket buffers hold, so the writer blocks
        x.send(net.keys[0].public, {"k": k, "blob": blob})
    await until(lambda: not x.is_connected(net.keys[0].public))
    link.writer.close()


async def test_a_second_connection_from_a_peer_replaces_the_first(net: Net) -> None:
    """What a restarted dialer looks like before its old connection is known to be dead."""
    await net.start(3)
    old = await validator_link(net, 3, net.keys[0])
    new = await validator_link(net, 3, net.keys[0])
    assert await closed_by_peer(old.reader)
    assert net.nodes[3].is_connected(net.keys[0].public)
    net.nodes[3].send(net.keys[0].public, "to the newest")
    opener = Opener(new.shake.keys.receive, FAST.max_frame)
    frame = decode(await opener.read(new.reader))
    while frame == {"kind": "ping"}:
        frame = decode(await opener.read(new.reader))
    assert frame == {"kind": "msg", "body": "to the newest"}
    for link in (old, new):
        link.writer.close()


async def test_dialing_the_wrong_validator_is_refused_by_the_dialer(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    await net.start(0)
    await net.start(2)
    await until(net.all_linked)
    # keys[1]'s address points at keys[2]: the dialer must notice who answered
    net.nodes[0].set_address(net.keys[1].public, f"127.0.0.1:{net.ports[2]}")
    await logged(caplog, "is not a validator we accept")
    assert not net.nodes[0].is_connected(net.keys[1].public)
    assert net.linked(0, 2)


async def test_close_is_clean_and_idempotent_with_links_up(net: Net) -> None:
    for i in range(3):
        await net.start(i)
    await until(net.all_linked)
    t = net.nodes.pop(0)
    await t.close()
    assert not t._tasks
    assert all(not s.connected for s in t.peer_status())
    await until(lambda: not net.nodes[1].is_connected(net.keys[0].public))
    await t.close()
