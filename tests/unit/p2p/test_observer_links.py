"""Observer links on real transports on 127.0.0.1: who a validator admits as an observer, what an
observer's messages can reach, the bounds on observers, and dropping one whose role is revoked.

The observers here hold real account keys and complete valid handshakes (what a real auditor, or a
thief of its key, has); the role check is the validator's (a set standing in for its head state).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

import pytest
from factories import make_consortium, seeded_key
from test_transport import FAST, Inbox, Net, logged, net, until  # noqa: F401

from chain.crypto import KeyPair
from chain.validators import ValidatorSet
from node.p2p.framing import encode_frame, read_frame
from node.p2p.handshake import OBSERVER, HandshakeError, handshake
from node.p2p.observers import ObserverAccess
from node.p2p.transport import Transport


@dataclass
class Roles:
    """The validator's view of who holds an observer role (its head state, in the node)."""

    held: set[str] = field(default_factory=set)
    observer_inbox: Inbox = field(default_factory=Inbox)

    def role_of(self, account: str) -> str | None:
        return "auditor" if account in self.held else None


async def validator_with_observers(net: Net, roles: Roles, **limits: int) -> Transport:
    t = Transport(
        net.keys[3], chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
        validators=net.c.genesis.validators, on_message=Inbox(), config=FAST,
        addresses={v.public: None for v in net.c.genesis.validators.validators},
        observers=ObserverAccess(roles.role_of, roles.observer_inbox, **limits),
    )
    net.ports[3] = await t.start("127.0.0.1", 0)
    net.nodes[3], net.inboxes[3] = t, t._on_message  # type: ignore[assignment]
    return t


def observer(net: Net, key: KeyPair, inbox: Inbox) -> Transport:
    """An observer's transport that dials only validator 3 (the others are not running)."""
    t = Transport(
        key, role=OBSERVER, chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
        validators=net.c.genesis.validators, on_message=inbox, config=FAST,
        addresses={v.public: (f"127.0.0.1:{net.ports[3]}" if v.public == net.keys[3].public else None) for v in net.c.genesis.validators.validators},
    )
    t.dial()
    return t


async def as_observer(net: Net, key: KeyPair) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", net.ports[3])
    try:
        shake = await handshake(
            reader, writer, key=key, chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
            allowed={net.keys[3].public}, timeout=5, role=OBSERVER,
        )
        return shake.peer
    finally:
        writer.close()


async def test_an_account_without_the_role_is_refused_and_told_why(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    roles = Roles({seeded_key("auditor").public})
    await validator_with_observers(net, roles)
    with pytest.raises(HandshakeError, match="holds neither the auditor nor the regulator role"):
        await as_observer(net, seeded_key("issuer"))
    await logged(caplog, "holds neither the auditor nor the regulator role")
    assert await as_observer(net, seeded_key("auditor")) == net.keys[3].public
    # a validator's own key may not pose as an observer (it would hold an observer's slot)
    with pytest.raises(HandshakeError, match="a validator's key cannot link as an observer"):
        await as_observer(net, net.keys[0])


async def test_a_validator_that_accepts_no_observers_refuses_them(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    await net.start(3)
    with pytest.raises(HandshakeError):
        await as_observer(net, seeded_key("auditor"))
    await logged(caplog, "accepts no observers")


async def test_an_observers_messages_reach_only_the_observer_side_and_it_hears_only_what_is_sent_to_it(net: Net) -> None:
    auditor = seeded_key("auditor")
    roles = Roles({auditor.public})
    v = await validator_with_observers(net, roles)
    heard = Inbox()
    obs = observer(net, auditor, heard)
    try:
        await until(lambda: obs.is_connected(net.keys[3].public))
        vote = {"body": {"kind": "commit"}, "sender": auditor.public, "sig": "00" * 64}
        obs.send(net.keys[3].public, vote)
        obs.send(net.keys[3].public, {"t": "sync_req", "from": 1, "limit": 4})
        await roles.observer_inbox.wait_count(2)
        assert roles.observer_inbox.got == [(auditor.public, vote), (auditor.public, {"t": "sync_req", "from": 1, "limit": 4})]
        assert v._on_message.got == []  # type: ignore[attr-defined]  # the consensus side heard nothing
        v.broadcast("to validators only")
        v.broadcast_observers({"t": "head", "height": 7})
        v.send_observer(auditor.public, {"t": "sync_resp", "head": 7, "blocks": []})
        await heard.wait_count(2)
        assert heard.got == [(net.keys[3].public, {"t": "head", "height": 7}), (net.keys[3].public, {"t": "sync_resp", "head": 7, "blocks": []})]
    finally:
        await obs.close()


async def test_an_oversize_frame_from_an_observer_closes_its_link(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    auditor = seeded_key("auditor")
    roles = Roles({auditor.public})
    v = await validator_with_observers(net, roles, max_frame=1024)
    obs = observer(net, auditor, Inbox())
    try:
        await until(lambda: len(v.observer_status()) == 1)
        obs.send(net.keys[3].public, "x" * 4096)
        await until(lambda: not v.observer_status())
        assert roles.observer_inbox.got == []
    finally:
        await obs.close()


async def test_at_most_max_observers_accounts_link_and_one_link_each(net: Net) -> None:
    keys = [seeded_key(f"auditor-{i}") for i in range(3)]
    roles = Roles({k.public for k in keys})
    v = await validator_with_observers(net, roles, max_observers=2)
    first, second = observer(net, keys[0], Inbox()), observer(net, keys[1], Inbox())
    try:
        await until(lambda: len(v.observer_status()) == 2)
        with pytest.raises(HandshakeError, match="serves 2 observers already"):
            await as_observer(net, keys[2])
        again = observer(net, keys[0], Inbox())  # the same account again: replaces its older link
        try:
            await until(lambda: again.is_connected(net.keys[3].public))
            await until(lambda: not first.is_connected(net.keys[3].public))
            assert len(v.observer_status()) == 2
        finally:
            await again.close()
    finally:
        await first.close()
        await second.close()


async def test_an_observer_whose_role_is_revoked_is_dropped_and_refused_after(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    auditor = seeded_key("auditor")
    roles = Roles({auditor.public})
    v = await validator_with_observers(net, roles)
    obs = observer(net, auditor, Inbox())
    try:
        await until(lambda: obs.is_connected(net.keys[3].public) and len(v.observer_status()) == 1)  # both ends up
        assert v.recheck_observers() == []  # the role still held: nothing happens
        roles.held.clear()  # governance revoked it: the next commit's recheck drops the link
        assert v.recheck_observers() == [auditor.public]
        await until(lambda: not obs.is_connected(net.keys[3].public))
        await until(lambda: "holds neither" in obs.failures().get(net.c.genesis.validators.by_public[net.keys[3].public].node_id, ""))
        assert not v.observer_status()
    finally:
        await obs.close()


def test_an_observer_transport_needs_an_account_key_and_accepts_no_one(net: Net) -> None:
    kwargs = {"chain_id": net.c.genesis.chain_id, "genesis_hash": net.c.genesis.hash, "validators": net.c.genesis.validators, "on_message": Inbox()}
    with pytest.raises(ValueError, match="account"):
        Transport(net.keys[0], role=OBSERVER, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="account"):
        Transport(seeded_key("auditor"), role=OBSERVER, observers=ObserverAccess(lambda a: "auditor", Inbox()), **kwargs)  # type: ignore[arg-type]


async def test_a_refusal_is_shown_as_one_printable_line_whatever_the_other_end_sends() -> None:
    """The `refused` frame is unauthenticated: an impostor's text must not forge log lines."""

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader, 4096)
        writer.write(encode_frame({"type": "refused", "reason": "no\nWARNING forged line\x1b[2J" + "x" * 1000}))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(liar, "127.0.0.1", 0)
    c = make_consortium(4)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        with pytest.raises(HandshakeError) as refused:
            await handshake(
                reader, writer, key=seeded_key("auditor"), chain_id=c.genesis.chain_id, genesis_hash=c.genesis.hash,
                allowed=c.genesis.validators.publics, timeout=5, role=OBSERVER,
            )
        writer.close()
        text = str(refused.value)
        assert "\n" not in text and "\x1b" not in text and "no?WARNING forged line?[2J" in text and len(text) < 400
    finally:
        server.close()
        await server.wait_closed()


async def test_an_observers_links_follow_the_validator_set(net: Net) -> None:
    """An observer links to the validators of the set at its head: a validator added to the set is
    dialed, one removed is closed (the runtime calls set_validators after each commit that changes it)."""
    auditor = seeded_key("auditor")
    roles = Roles({auditor.public})
    second = Transport(
        net.keys[2], chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
        validators=net.c.genesis.validators, on_message=Inbox(), config=FAST,
        addresses={v.public: None for v in net.c.genesis.validators.validators},
        observers=ObserverAccess(roles.role_of, roles.observer_inbox),
    )
    second_port = await second.start("127.0.0.1", 0)
    await validator_with_observers(net, roles)
    by_key = {v.public: v for v in net.c.genesis.validators.validators}
    located = {k.public: replace(by_key[k.public], address=f"127.0.0.1:{p}") for k, p in ((net.keys[2], second_port), (net.keys[3], net.ports[3]))}
    obs = Transport(
        auditor, role=OBSERVER, chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
        validators=ValidatorSet((located[net.keys[3].public],)), on_message=Inbox(), config=FAST,
    )
    obs.dial()
    try:
        await until(lambda: obs.is_connected(net.keys[3].public))
        assert not second.observer_status()
        obs.set_validators(ValidatorSet((located[net.keys[3].public], located[net.keys[2].public])))  # one added
        await until(lambda: obs.is_connected(net.keys[2].public) and len(second.observer_status()) == 1)
        obs.set_validators(ValidatorSet((located[net.keys[2].public],)))  # one removed
        await until(lambda: not net.nodes[3].observer_status())
        assert obs.is_connected(net.keys[2].public) and [p.public for p in obs.peer_status()] == [net.keys[2].public]
    finally:
        await obs.close()
        await second.close()
