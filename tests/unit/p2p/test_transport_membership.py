"""Links that follow a changing validator set: adds, removals, rotations, a joining node that
knows only bootstrap addresses, and a retired node. Real transports on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from factories import seeded_key
from test_transport import FAST, Inbox, Net, logged, net, refused, until  # noqa: F401

from chain.crypto import KeyPair
from chain.validators import Validator, ValidatorSet
from node.p2p.transport import Transport


def _with(net: Net, *extra: Validator, without: tuple[str, ...] = ()) -> ValidatorSet:
    kept = [v for v in net.c.genesis.validators.validators if v.public not in without]
    return ValidatorSet((*kept, *extra))


def _rotated(vset: ValidatorSet, old: str, new: str) -> ValidatorSet:
    seat = vset.by_public[old]
    return vset.rotated(seat.node_id, new)


async def _newcomer(net: Net, key: KeyPair, bootstrap: tuple[str, ...] = ()) -> tuple[Transport, Inbox, int]:
    """A transport for a key the genesis does not list: it knows the genesis set only."""
    inbox = Inbox()
    t = Transport(key, chain_id=net.c.genesis.chain_id, genesis_hash=net.c.genesis.hash,
                  validators=net.c.genesis.validators, on_message=inbox, config=FAST, bootstrap=bootstrap)
    port = await t.start("127.0.0.1", 0)
    for j in net.nodes:
        t.set_address(net.keys[j].public, f"127.0.0.1:{net.ports[j]}")
    return t, inbox, port


async def test_a_removed_validator_is_dropped_and_refused(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "titlechain.transport")
    for i in range(4):
        await net.start(i)
    await until(net.all_linked)
    gone = net.keys[1].public
    smaller = _with(net, without=(gone,))
    for i in (0, 2, 3):
        added, removed = net.nodes[i].set_validators(smaller)
        assert added == [] and removed == [net.c.genesis.validators.by_public[gone].node_id]
    await until(lambda: not any(net.nodes[i].is_connected(gone) for i in (0, 2, 3)))
    assert all(net.linked(i, j) for i in (0, 2, 3) for j in (0, 2, 3) if i < j)
    # its genuine key no longer completes a handshake, though it is lower than the acceptor's
    caplog.clear()
    await refused(net, 3, net.keys[1])
    await logged(caplog, "is not a validator we accept")
    net.nodes[0].send(net.keys[2].public, "still linked")
    await net.inboxes[2].wait_count(1)
    with pytest.raises(KeyError):
        net.nodes[0].send(gone, "to a removed validator")


async def test_a_rotated_seat_links_with_its_new_key_and_refuses_the_old(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "titlechain.transport")
    for i in (0, 1, 3):
        await net.start(i)
    await until(net.all_linked)
    old = net.keys[1]
    fresh = seeded_key("rotated-seat")
    newset = _rotated(net.c.genesis.validators, old.public, fresh.public)
    t, inbox, port = await _newcomer(net, fresh)
    try:
        for i in (0, 3):
            net.nodes[i].set_validators(newset)
            net.nodes[i].set_address(fresh.public, f"127.0.0.1:{port}")  # the seat's address, in a real set
        t.set_validators(newset)
        assert t.member
        await until(lambda: all(t.is_connected(net.keys[i].public) and net.nodes[i].is_connected(fresh.public) for i in (0, 3)))
        assert not net.nodes[0].is_connected(old.public) and not net.nodes[3].is_connected(old.public)
        caplog.clear()
        await refused(net, 3, old)
        await logged(caplog, "is not a validator we accept")
        net.nodes[3].send(fresh.public, "to the new key")
        await inbox.wait_count(1)
        assert inbox.got == [(net.keys[3].public, "to the new key")]
    finally:
        await t.close()


async def test_a_joining_node_links_through_a_bootstrap_address_and_then_to_the_whole_set(net: Net) -> None:
    """It knows one validator's address; the others learn its address from the set change. Before
    it catches up (here: before its own set_validators) it accepts the lower keys that dial it."""
    for i in range(4):
        await net.start(i)
    await until(net.all_linked)
    newcomer = seeded_key("joining-validator")
    t, inbox, port = await _newcomer(net, newcomer, bootstrap=(f"127.0.0.1:{net.ports[3]}",))
    try:
        assert not t.member
        grown = _with(net, Validator("v4", newcomer.public, f"127.0.0.1:{port}"))
        for i in range(4):
            net.nodes[i].set_validators(grown)
        # every validator links to it, whichever end dials, while it still holds the genesis set only
        await until(lambda: all(net.nodes[i].is_connected(newcomer.public) for i in range(4)))
        net.nodes[2].send(newcomer.public, "catch-up traffic")
        await inbox.wait_count(1)
        t.set_validators(grown)  # it caught up to the add
        assert t.member and not any(p.guest for p in t.peer_status())
        # (a bootstrap dial and a dial of a genesis address may race at start: one replaces the other)
        await until(lambda: {p.public for p in t.peer_status() if p.connected} == {k.public for k in net.keys})
    finally:
        await t.close()


async def test_a_joining_node_accepts_unknown_lower_keys_until_it_is_a_member(net: Net) -> None:
    """A guest link (a key the joining node cannot place yet) lasts only while it is joining."""
    a, b = sorted((seeded_key("newcomer-a"), seeded_key("newcomer-b")), key=lambda k: k.public)
    joiner, _, port = await _newcomer(net, b)
    stranger, _, _ = await _newcomer(net, a)
    try:
        both = _with(net, Validator("v4", b.public, f"127.0.0.1:{port}"), Validator("v5", a.public, "127.0.0.1:1"))
        stranger.set_validators(both)  # the lower key dials the higher one, at the address the set gives
        await until(lambda: joiner.is_connected(a.public))
        assert [p.guest for p in joiner.peer_status() if p.public == a.public] == [True]
        assert not joiner.member
        # the joiner caught up to a set that holds itself but not the stranger: the guest goes
        joiner.set_validators(_with(net, Validator("v4", b.public, f"127.0.0.1:{port}")))
        assert joiner.member
        await until(lambda: not joiner.is_connected(a.public))
        assert all(not p.guest for p in joiner.peer_status())
    finally:
        await joiner.close()
        await stranger.close()


async def test_a_retired_node_closes_every_link_and_dials_nobody(net: Net) -> None:
    for i in range(3):
        await net.start(i)
    await until(net.all_linked)
    net.nodes[0].retire()
    await until(lambda: not net.nodes[1].is_connected(net.keys[0].public) and not net.nodes[2].is_connected(net.keys[0].public))
    assert net.nodes[0].peer_status() == [] and not net.nodes[0].member
    await refused(net, 0, net.keys[1])  # it accepts nobody either
    assert not net.nodes[1].is_connected(net.keys[0].public)
    # added back by governance while it kept running: it links again
    net.nodes[0].set_validators(net.c.genesis.validators)
    for j in (1, 2):
        net.nodes[0].set_address(net.keys[j].public, f"127.0.0.1:{net.ports[j]}")
    await until(net.all_linked)
