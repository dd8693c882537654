"""Authenticated, encrypted TCP links between the validators of one consortium (asyncio).

Usage, from the validator process:

    t = Transport(key, chain_id=g.chain_id, genesis_hash=g.hash, validators=g.validators,
                  on_message=lambda sender_public, msg: ...)
    port = await t.start("0.0.0.0", 27000)
    t.send(peer_public, msg); t.broadcast(msg)      # msg: a plain value (docs/protocol.md, "Canonical encoding")
    t.peer_status()                                 # [PeerStatus]; .to_plain() for /v1/status
    await t.close()

Messages are delivered by calling `on_message(sender_public, msg)` from the event loop, with the
sender's verified validator key; it must not block (hand the message to a queue). An exception
it raises is logged and the connection goes on. `send`/`broadcast` never wait: they append to a
per-peer queue and return.

Every frame after the handshake is sealed (node/p2p/linkcrypto.py: ChaCha20-Poly1305 under one key per
direction, derived from an ephemeral X25519 exchange that both validators' handshake signatures
cover, with counter nonces and the length prefix authenticated). Its plaintext is canonical
`{"kind": "msg", "body": msg}` or `{"kind": "ping"}`; pings keep an idle link provably alive, and
a link on which nothing at all arrives for `idle_timeout` is dropped, which also catches
half-open TCP connections. A frame that fails authentication (altered, replayed, reordered,
injected) closes the link at once; the dialer then redials and a fresh handshake makes fresh keys.
So an on-path relay can read nothing but frame sizes and timing, and can only delay or cut the
link, never change what a validator receives.

The handshake is node/p2p/handshake.py. Inbound handshakes pass node/p2p/linkguard.py's gate: anonymous
ones are capped per source address and in all (at a cap the oldest is closed, so a flood cannot
keep a newcomer out), and one whose hello a validator signed gets that key's reserved slot. Every
failure of an inbound handshake, and every drop of a link, is logged through a summary: the first
in full, then one line per `log_interval` while they go on.

One connection per pair: the end with the lower key (as hex) dials, the other only accepts,
and refuses a dial from a higher key. If a second connection from the same peer completes its
handshake (the peer restarted and our side of the old one is not yet known to be dead), the
newest wins and the older is closed. The dialer redials forever with exponential backoff and
jitter (`backoff_initial` doubling to `backoff_max`, each wait drawn from [d/2, d]); the backoff
resets once a connection has lived `backoff_max` seconds, so a peer that accepts and at once drops
us is not hammered.

Knocking: a node that starts (a restart, or a join by state sync) would wait for each lower-keyed
peer's backoff, up to `backoff_max`, before that peer redials it. So on `start` it also dials each
lower-keyed validator of the set once: the peer checks the hello's signature (only a validator of
its set can knock), refuses the handshake as it refuses any dial from a higher key (so no dialer
ever takes a knock for a link, a joining node's bootstrap dial included), and, if it has no link
to the knocker, redials it now with its backoff reset. A replayed hello can only make it dial that
validator early; one that knocks again and again gets one dial back per knock.

The set changes (`set_validators`, after every commit that changes it): links to validators no
longer in it are closed and their keys refused from then on, and new ones are dialed (or awaited,
by the rule above). Joining: while this node's own key is not in the set it knows (a validator
added by governance, started from the genesis), it also dials `bootstrap` addresses accepting
whatever key answers, and accepts any lower key: the validators that already list it dial it
before it can know them. Such "guest" links carry catch-up traffic, whose blocks are checked
against their certificates; consensus messages from a key outside the set count for nothing. Once
its key is in the set, guests not in it are closed and the bootstrap dials stop. A node whose key
left the set `retire`s: it closes every link and dials nobody.

Observers (node/p2p/observers.py): a Transport made with `role="observer"` dials every validator
and listens for no one; a validator's made with `observers` also accepts observers' links, whose
messages go to `observers.on_message`, never to `on_message`, and which hear only what is sent
with `send_observer` / `broadcast_observers`.

Queues: each peer has its own queue, bounded in frames and bytes, that outlives connections (a
brief disconnection loses nothing). When it is full the OLDEST frame is dropped: consensus
tolerates loss and a newer message (a later view or height) is worth more than an old one. A
peer whose socket takes no bytes for `write_timeout` is disconnected; either way, a slow or dead
peer never delays the others, since each peer is written by its own task. Messages from one
peer arrive in the order it sent them, less any it dropped; nothing is retransmitted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import replace
from typing import Any

from chain.crypto import KeyPair
from chain.encoding import EncodingError, Value, canonical, canonical_map, decode
from chain.validators import ValidatorSet
from node.p2p.framing import FrameError
from node.p2p.handshake import (
    MAX_HANDSHAKE_FRAME,
    OBSERVER,
    PROTOCOL_VERSION,
    VALIDATOR,
    Handshake,
    HandshakeError,
    handshake,
)
from node.p2p.linkcrypto import SEAL_OVERHEAD, LinkAuthError
from node.p2p.linkguard import HandshakeGate, LogSummary
from node.p2p.observers import ObserverAccess, ObserverHub, ObserverLinks
from node.p2p.peers import AnyKey, Conn, KeysBelow, Peer, PeerStatus, TransportConfig, pause, split_address

__all__ = ["MAX_HANDSHAKE_FRAME", "PROTOCOL_VERSION", "HandshakeError", "PeerStatus", "Transport", "TransportConfig", "handshake"]

log = logging.getLogger("titlechain.transport")

_WRITE_CHUNK = 1024 * 1024  # bytes written between two drains

OnMessage = Callable[[str, Value], None]


_PING = canonical({"kind": "ping"})


class Knocked(HandshakeError):
    """A higher key of the set dialed us: a knock ("Knocking" above), refused, and that peer dialed."""


class Transport(ObserverLinks):
    """Links to every other validator of a set, which may change (`set_validators`); see the
    module docstring."""

    def __init__(
        self,
        key: KeyPair,
        *,
        chain_id: str,
        genesis_hash: str,
        validators: ValidatorSet,
        on_message: OnMessage,
        config: TransportConfig | None = None,
        addresses: Mapping[str, str | None] | None = None,
        bootstrap: Sequence[str] = (),
        role: str = VALIDATOR,
        observers: ObserverAccess | None = None,
    ) -> None:
        """`addresses` (public -> "host:port", or None: not yet known, see `set_address`)
        overrides the set's addresses to dial. `bootstrap`: "host:port"s to dial, whatever key
        answers, while this node's key is not in the set (a joining node: "Joining" above).
        `role="observer"`: this end follows without voting (an account key, not in the set);
        `observers`: a validator accepts observers so."""
        if role == OBSERVER and (key.public in validators.publics or observers is not None or bootstrap):
            raise ValueError("an observer's key is an account, not a validator's, and it accepts no observers")
        self.key = key
        self.role = role
        # the observers linked to this validator, by account
        self._hub: ObserverHub | None = ObserverHub(observers, lambda: self._peers.keys() | {key.public}) if observers else None
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.config = config or TransportConfig()
        self._on_message = on_message
        self._addresses = dict(addresses or {})
        self._bootstrap = tuple(bootstrap)
        self._bootstrappers: list[asyncio.Task[None]] = []
        self._peers: dict[str, Peer] = {}
        self._accept_from: Set[str] = frozenset()
        self._knockers: frozenset[str] = frozenset()
        self.member = False
        self._started = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals = LogSummary(log, "refused inbound connection", self.config.log_interval)
        self._gate = HandshakeGate(
            self.config.max_handshakes, self.config.max_handshakes_per_source, on_evict=self._refusals.event
        )
        self._closing = False
        self._rng = random.Random()
        self.port: int | None = None
        self.set_validators(validators)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> int:
        """Listen (port 0: any free port) and start dialing; returns the bound port."""
        self._server = await asyncio.start_server(self._on_inbound, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.dial()
        for peer in self._peers.values():
            if self.member and peer.public < self.key.public and peer.address is not None and not peer.guest:
                self._spawn(self._knock(peer), f"knock {peer.node_id}")
        return self.port

    def dial(self) -> None:
        """Start dialing (an observer only dials: it starts with this rather than `start`)."""
        self._started = True
        for peer in self._peers.values():
            self._start_dialing(peer)
        if not self.member and self.role == VALIDATOR:
            self._start_bootstrap()

    async def close(self) -> None:
        """Stop listening and dialing, close every connection, and wait for all tasks."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for peer in [*self._peers.values(), *(self._hub.linked.values() if self._hub else ())]:
            if peer.conn is not None:
                peer.conn.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refusals.close()
        for peer in self._peers.values():
            peer.drops.close()
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def set_observers(self, observers: ObserverAccess | None) -> None:
        """Accept observers from now on as `observers` says (a node taking over these links)."""
        self._hub = ObserverHub(observers, lambda: self._peers.keys() | {self.key.public}) if observers else None

    def set_on_message(self, on_message: OnMessage) -> None:
        """Hand the links to another receiver (a node taking over its state sync's transport, so
        that its peers need not reconnect)."""
        self._on_message = on_message

    @property
    def started(self) -> bool:
        return self._started

    # -- the set ---------------------------------------------------------------------------

    def set_validators(self, validators: ValidatorSet) -> tuple[list[str], list[str]]:
        """Link to the validators of `validators` from now on: new ones are dialed (or awaited,
        by the one-connection rule), dropped ones are closed and refused at the handshake. While
        this node's key is not in the set it is joining: it also dials the bootstrap addresses
        and accepts any lower key (the set it knows may be stale). The node ids added and removed."""
        wanted = {v.public: v for v in validators.validators if v.public != self.key.public}
        self.member = self.key.public in validators.publics
        added, removed = [], []
        for public in [p for p, peer in self._peers.items() if p not in wanted and (self.member or not peer.guest)]:
            removed.append(self._peers[public].node_id)
            self._drop_peer(self._peers.pop(public))
        for public, v in wanted.items():
            peer = self._peers.get(public)
            if peer is None or peer.guest:
                added.append(v.node_id)
                peer = self._peers[public] = peer or Peer(v.node_id, public, None, self.config)
                peer.node_id, peer.guest = v.node_id, False
                peer.address = self._addresses.get(public, v.address)
                if peer.address is not None:
                    peer.address_set.set()
                self._start_dialing(peer)
        # the dial rule: we accept only from lower keys and dial only higher ones (an observer
        # accepts none: it dials every validator)
        self._accept_from = frozenset(p for p in wanted if p < self.key.public) if self.member else KeysBelow(self.key.public)
        # the higher keys of the set, which we dial: each may knock ("Knocking" above)
        self._knockers = frozenset(p for p in wanted if p > self.key.public) if self.member else frozenset()
        if self.role == OBSERVER:
            self._accept_from = self._knockers = frozenset()
        elif self.member:  # each bootstrap loop ends by itself: a link it serves to a member stays up
            self._bootstrappers = []
        elif self._started and not self._bootstrappers:
            self._start_bootstrap()
        return added, removed

    def retire(self) -> None:
        """Close every link and dial nobody: this node's key left the set (docs/operations.md)."""
        self.member = False
        self._accept_from = self._knockers = frozenset()
        self._bootstrap = ()
        for task in self._bootstrappers:
            task.cancel()
        self._bootstrappers = []
        for peer in self._peers.values():
            self._drop_peer(peer)
        self._peers = {}

    def _start_dialing(self, peer: Peer) -> None:
        dials = peer.public > self.key.public or self.role == OBSERVER
        if self._started and peer.dialer is None and not peer.guest and dials:
            peer.dialer = self._spawn(self._dial_loop(peer), f"dial {peer.node_id}")

    def _drop_peer(self, peer: Peer) -> None:
        if peer.dialer is not None:
            peer.dialer.cancel()
            peer.dialer = None
        if peer.conn is not None:
            log.info("closing the link to %s: no longer a validator this node links to", peer.node_id)
            conn, peer.conn = peer.conn, None  # first: the closing is ours, not a drop to report
            conn.close()
        peer.queue.clear()
        peer.queued_bytes = 0
        peer.drops.close()

    def _start_bootstrap(self) -> None:
        self._bootstrappers = [self._spawn(self._bootstrap_loop(a), f"bootstrap {a}") for a in self._bootstrap]

    def set_address(self, public: str, address: str) -> None:
        """Dial a peer at a new "host:port" from the next attempt on."""
        peer = self._peers[public]
        peer.address = address
        peer.address_set.set()

    # -- sending ---------------------------------------------------------------------------

    def send(self, peer_public: str, msg: Value) -> int:
        """Queue msg for one peer; the size of its frame in bytes, as sealed on the wire.

        Raises KeyError for a key that is not another validator, and EncodingError or FrameError
        (both ValueError) for a msg that is not a plain value or exceeds `max_frame`.
        """
        return self.send_encoded(peer_public, canonical(msg))

    def broadcast(self, msg: Value) -> int:
        """Queue msg for every other validator (not for this node itself); its frame's size."""
        return self.broadcast_encoded(canonical(msg))

    def send_encoded(self, peer_public: str, body: bytes) -> int:
        """`send` for a msg given as its canonical bytes (a block reuses its own encoding)."""
        peer = self._peers[peer_public]
        frame = self._frame(body)
        peer.enqueue(frame)
        return len(frame) + SEAL_OVERHEAD

    def broadcast_encoded(self, body: bytes) -> int:
        frame = self._frame(body)
        for peer in self._peers.values():
            peer.enqueue(frame)
        return len(frame) + SEAL_OVERHEAD

    def _frame(self, body: bytes) -> bytes:
        """The plaintext of a msg's frame, from the msg's canonical bytes: queued as is, sealed by
        each link's writer (broadcast encodes once, seals once per peer)."""
        plain = canonical_map({"kind": canonical("msg"), "body": body})
        if len(plain) > self.config.max_frame:
            raise FrameError(f"frame of {len(plain)} bytes exceeds the cap of {self.config.max_frame}")
        return plain

    def failures(self) -> dict[str, str]:
        """node_id -> why the last dial failed (a validator's refusal of this observer), if unlinked."""
        return {p.node_id: p.failure for p in self._peers.values() if p.conn is None and p.failure is not None}

    # -- status ----------------------------------------------------------------------------

    def peer_status(self) -> list[PeerStatus]:
        """One entry per other validator this node links to (guests last, when joining)."""
        return [
            PeerStatus(p.node_id, p.public, p.conn is not None, p.sent, p.received, p.dropped, p.guest)
            for p in sorted(self._peers.values(), key=lambda p: p.guest)
        ]

    def is_connected(self, peer_public: str) -> bool:
        peer = self._peers.get(peer_public)
        return peer is not None and peer.conn is not None

    # -- connections -----------------------------------------------------------------------

    async def _redial(
        self, what: str, attempt: Callable[[], Awaitable[float]], go_on: Callable[[], bool],
        ready: Callable[[], Awaitable[object]] | None = None, knocked: asyncio.Event | None = None,
    ) -> None:
        """Call `attempt` (how long its link lived) while `go_on()`, backing off exponentially with
        jitter, from the start again after a link that lived `backoff_max` or a knock; an unexpected
        exception is logged and never ends the redialing."""
        cfg = self.config
        delay = cfg.backoff_initial
        while go_on():
            if ready is not None:
                await ready()
            lived = 0.0
            try:
                lived = await attempt()
            except Exception:  # a bug must not end the redialing for good
                log.exception("dialing %s failed unexpectedly", what)
            if lived >= cfg.backoff_max:
                delay = cfg.backoff_initial
            if await pause(delay * self._rng.uniform(0.5, 1.0), knocked):
                delay = cfg.backoff_initial
                continue
            delay = min(delay * 2, cfg.backoff_max)

    async def _dial_loop(self, peer: Peer) -> None:
        await self._redial(peer.node_id, lambda: self._dial_once(peer), lambda: not self._closing,
                           peer.address_set.wait, peer.knocked)

    async def _knock(self, peer: Peer) -> None:
        """Dial a lower-keyed peer once so that it redials us now ("Knocking" above)."""
        link = await self._connect(peer.address or "", {peer.public}, f"{peer.node_id} (knock)", quiet=True)
        if link is not None:
            link[1].transport.abort()

    def _on_hello(self, ticket: int, public: str) -> None:
        """An inbound hello's signature verified: a higher key of the set knocks (refused here, so
        the dialer never takes it for a link); any other claims its handshake slot."""
        if public in self._knockers and public not in self._accept_from:
            peer = self._peers.get(public)
            if peer is not None and peer.conn is None:
                log.info("peer %s knocked: dialing it now", peer.node_id)
                peer.knocked.set()
            raise Knocked(f"key {public[:16]}... is dialed by this node, never dials it: taken as a knock")
        self._gate.claim(ticket, public)

    async def _dial_once(self, peer: Peer) -> float:
        """Connect, authenticate and serve one connection; how long it lived (0: never up)."""
        if peer.conn is not None:  # linked already, through a bootstrap dial: nothing to do
            return 0.0
        assert peer.address is not None
        link = await self._connect(peer.address, {peer.public}, peer.node_id, peer)
        return 0.0 if link is None else await self._timed_serve(peer, link)

    async def _bootstrap_loop(self, address: str) -> None:
        """Dial a bootstrap address while this node is joining, unless linked already to the key
        that answered there last time."""
        answered: str | None = None

        async def attempt() -> float:
            nonlocal answered
            if answered is not None and answered in self._peers and self._peers[answered].conn is not None:
                return 0.0
            answered, lived = await self._bootstrap_once(address)
            return lived

        await self._redial(f"bootstrap peer {address}", attempt, lambda: not self._closing and not self.member)

    async def _bootstrap_once(self, address: str) -> tuple[str | None, float]:
        link = await self._connect(address, AnyKey(self.key.public), f"bootstrap peer {address}")
        if link is None:
            return None, 0.0
        public = link[2].peer
        peer = self._peers.get(public)
        if peer is None:
            peer = self._peers[public] = Peer(f"guest {public[:12]}", public, address, self.config, guest=True)
        if peer.conn is not None:  # linked already: keep that link
            link[1].transport.abort()
            return public, 0.0
        return public, await self._timed_serve(peer, link)

    async def _connect(
        self, address: str, allowed: Set[str], label: str, peer: Peer | None = None, quiet: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Handshake] | None:
        """Connect to `address` and complete the handshake with one of `allowed`; None on failure
        (why is kept in `peer.failure`; `quiet`: a failed handshake is logged at debug level only)."""
        cfg = self.config
        try:
            host, port = split_address(address)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), cfg.connect_timeout)
        except (OSError, TimeoutError, ValueError) as e:
            log.debug("dial %s at %s failed: %s", label, address, e)
            return None
        try:
            shake = await handshake(
                reader,
                writer,
                key=self.key,
                chain_id=self.chain_id,
                genesis_hash=self.genesis_hash,
                allowed=allowed,
                timeout=cfg.handshake_timeout,
                hello_timeout=cfg.hello_timeout,
                role=self.role,
            )
        except HandshakeError as e:
            (log.debug if quiet else log.warning)("handshake with %s at %s failed: %s", label, address, e)
            if peer is not None:
                peer.failure = str(e)
            writer.transport.abort()
            return None
        if peer is not None:
            peer.failure = None
        return reader, writer, shake

    async def _timed_serve(self, peer: Peer, link: tuple[asyncio.StreamReader, asyncio.StreamWriter, Handshake]) -> float:
        """Serve one authenticated connection; how long it lived."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self._serve(peer, Conn(*link, self.config.max_frame))
        return loop.time() - began

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # a task of our own rather than the server's, so close() can cancel it without asyncio
        # reporting the cancellation as an unhandled error of the server callback
        self._spawn(self._handle_inbound(reader, writer), "inbound")

    async def _handle_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._accept(reader, writer)
        except Exception:  # a bug here must cost one connection, never the node
            log.exception("inbound connection handler failed")
        finally:
            writer.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        source = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        if self._closing:
            return
        ticket = self._gate.admit(source, writer.transport.abort)
        shake: Handshake | None = None
        try:
            shake = await handshake(
                reader,
                writer,
                key=self.key,
                chain_id=self.chain_id,
                genesis_hash=self.genesis_hash,
                allowed=self._accept_from | self._knockers if self._knockers else self._accept_from,
                timeout=self.config.handshake_timeout,
                hello_timeout=self.config.hello_timeout,
                on_hello=lambda public: self._on_hello(ticket, public),
                dialer=False,
                observers=self._hub.refusal if self._hub is not None else None,
            )
        except Knocked:
            return  # not a refusal worth a log line: the peer is dialed now
        except HandshakeError as e:
            failure = str(e)
        finally:
            evicted = not self._gate.release(ticket)
        if shake is None:
            if not evicted:  # an eviction is already counted, under its own reason
                self._refusals.event(source, failure)
            return
        if shake.role == OBSERVER:
            await self._serve_observer(shake, reader, writer)
            return
        if shake.peer not in self._accept_from:  # the set changed during the handshake
            return
        peer = self._peers.get(shake.peer)
        if peer is None:  # a joining node, linked by a validator it does not know yet
            peer = self._peers[shake.peer] = Peer(f"guest {shake.peer[:12]}", shake.peer, None, self.config, guest=True)
        await self._serve(peer, Conn(reader, writer, shake, self.config.max_frame))

    async def _serve_observer(self, shake: Handshake, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hub = self._hub
        assert hub is not None
        if (reason := hub.refusal(shake.peer)) is not None:  # another took the last slot meanwhile
            self._refusals.event(str(writer.get_extra_info("peername")), reason)
            return
        access = hub.access
        queues = replace(self.config, queue_frames=access.queue_frames, queue_bytes=access.queue_bytes)
        peer = hub.adopt(shake.peer, lambda: Peer(f"observer {shake.peer[:12]}…", shake.peer, None, queues, observer=True))
        if access.on_link is not None:
            access.on_link(shake.peer)  # queued now, sent once the link serves
        try:
            await self._serve(peer, Conn(reader, writer, shake, self.config.max_frame, receive_max=access.max_frame))
        finally:
            if hub.release(shake.peer, peer):
                peer.drops.close()

    def _tracked(self, peer: Peer) -> bool:
        """Whether `peer` is (still) one this transport links to: of the set, or a linked observer."""
        if peer.observer:
            return self._hub is not None and self._hub.linked.get(peer.public) is peer
        return self._peers.get(peer.public) is peer

    async def _serve(self, peer: Peer, conn: Conn) -> None:
        """Run one authenticated connection until it fails or is replaced."""
        if self._closing or not self._tracked(peer):  # closing, or dropped from the set
            conn.close()
            return
        old, peer.conn = peer.conn, conn
        if old is not None:
            log.info("peer %s connected again; closing its older connection", peer.node_id)
            old.close()
        log.info("peer %s connected", peer.node_id)
        writer_task = asyncio.get_running_loop().create_task(self._write_loop(peer, conn), name=f"write {peer.node_id}")
        try:
            await self._read_loop(peer, conn)
        except (FrameError, OSError, TimeoutError) as e:
            if peer.conn is conn and not self._closing:
                where = conn.writer.get_extra_info("peername")
                reason = str(e) or type(e).__name__
                if isinstance(e, LinkAuthError):
                    reason = f"{reason}: someone on the path tampers with the link"
                peer.drops.event(str(where[0]) if isinstance(where, tuple) else str(where), reason)
        finally:
            # closed first: the write loop stops on it even if Python 3.11's wait_for swallows the
            # cancel (it does when the awaited event fires at the same moment), which left a dead
            # link's writer looping and pinging forever
            conn.close()
            writer_task.cancel()
            await asyncio.wait([writer_task])
            if peer.conn is conn:
                peer.conn = None
                log.info("peer %s disconnected", peer.node_id)

    async def _read_loop(self, peer: Peer, conn: Conn) -> None:
        cfg = self.config
        while True:
            plain = await asyncio.wait_for(conn.opener.read(conn.reader), cfg.idle_timeout)
            try:
                frame = decode(plain)
            except EncodingError as e:  # authentic but malformed: a buggy or Byzantine validator
                raise FrameError(f"undecodable frame: {e}") from None
            if type(frame) is not dict:
                raise FrameError("a frame is {kind, ...}")
            kind = frame.get("kind")
            if kind == "ping" and len(frame) == 1:
                continue
            if kind != "msg" or set(frame) != {"kind", "body"}:
                raise FrameError(f"unknown frame kind {kind!r}")
            peer.received += 1
            try:
                if peer.observer:
                    assert self._hub is not None
                    self._hub.access.on_message(peer.public, frame["body"])
                else:
                    self._on_message(peer.public, frame["body"])
            except Exception:
                log.exception("on_message failed for a message from %s", peer.node_id)

    async def _write_loop(self, peer: Peer, conn: Conn) -> None:
        cfg = self.config
        try:
            while peer.conn is conn and not conn.closed:
                if not peer.queue:
                    peer.wake.clear()
                    try:
                        await asyncio.wait_for(peer.wake.wait(), cfg.ping_interval)
                    except TimeoutError:
                        conn.writer.write(conn.sealer.seal(_PING))
                        await asyncio.wait_for(conn.writer.drain(), cfg.write_timeout)
                    continue
                written = 0
                while peer.queue and written < _WRITE_CHUNK and peer.conn is conn and not conn.closed:
                    frame = peer.dequeue()
                    conn.writer.write(conn.sealer.seal(frame))
                    written += len(frame)
                    peer.sent += 1
                await asyncio.wait_for(conn.writer.drain(), cfg.write_timeout)
        except TimeoutError:
            log.warning("peer %s took no data for %ss; disconnecting", peer.node_id, cfg.write_timeout)
        except OSError as e:
            log.info("write to %s failed: %s", peer.node_id, e)
        finally:
            conn.close()  # wakes the read loop, which ends the connection
