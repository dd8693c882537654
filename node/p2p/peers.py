"""The transport's view of its peers: its tuning, one peer's queue and connection, and the sets of
keys a handshake accepts (node/p2p/transport.py runs the links)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator, Set
from dataclasses import dataclass
from typing import Any

from node.p2p.framing import DEFAULT_MAX_FRAME
from node.p2p.handshake import Handshake
from node.p2p.linkcrypto import Opener, Sealer
from node.p2p.linkguard import LogSummary

log = logging.getLogger("titlechain.transport")


@dataclass(frozen=True)
class TransportConfig:
    max_frame: int = DEFAULT_MAX_FRAME  # plaintext bytes of one frame
    handshake_timeout: float = 5.0  # a whole handshake
    hello_timeout: float = 2.0  # from connecting to the other end's hello: what a flood can hold a slot for
    connect_timeout: float = 5.0
    queue_frames: int = 10_000
    queue_bytes: int = 64 * 1024 * 1024
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    ping_interval: float = 2.0
    idle_timeout: float = 10.0
    write_timeout: float = 10.0
    max_handshakes: int = 64  # anonymous inbound handshakes at once (node/p2p/linkguard.py)
    max_handshakes_per_source: int = 8  # ... from one address
    log_interval: float = 10.0  # at most one summary line per interval for refusals, and per peer for drops


@dataclass(frozen=True)
class PeerStatus:
    node_id: str
    public: str
    connected: bool
    sent: int  # frames written to a socket
    received: int  # messages delivered
    dropped: int  # frames dropped from a full queue
    guest: bool = False  # linked while this node is joining, its key in no set this node knows yet

    def to_plain(self) -> dict[str, Any]:
        """The /v1/status peer entry (docs/rpc.md)."""
        return {"node_id": self.node_id, "connected": self.connected}


# -- peers and connections -------------------------------------------------------------------


class Conn:
    """One authenticated connection: its socket and the sealing state of each direction."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, shake: Handshake, max_frame: int,
        receive_max: int | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.sealer = Sealer(shake.keys.send, max_frame)
        self.opener = Opener(shake.keys.receive, receive_max or max_frame)  # an observer's requests are small
        self.closed = False

    def close(self) -> None:
        # abort, not close: a graceful close waits to flush a buffer that a stalled peer never takes
        self.closed = True
        self.writer.transport.abort()


class Peer:
    def __init__(
        self, node_id: str, public: str, address: str | None, config: TransportConfig, guest: bool = False,
        observer: bool = False,
    ) -> None:
        self.node_id = node_id
        self.guest = guest
        self.observer = observer  # an observer's link (on a validator): its messages never reach consensus
        self.failure: str | None = None  # why the last dial failed (None once linked)
        self.dialer: asyncio.Task[None] | None = None
        self.public = public
        self.address = address
        self.address_set = asyncio.Event()
        if address is not None:
            self.address_set.set()
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.knocked = asyncio.Event()  # the peer knocked (transport.py, "Knocking"): redial at once
        self.conn: Conn | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.drops = LogSummary(log, f"link to {node_id} dropped", config.log_interval)
        self._config = config

    def enqueue(self, frame: bytes) -> None:
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        while len(self.queue) > self._config.queue_frames or self.queued_bytes > self._config.queue_bytes:
            self.queued_bytes -= len(self.queue.popleft())
            self.dropped += 1
        self.wake.set()

    def dequeue(self) -> bytes:
        frame = self.queue.popleft()
        self.queued_bytes -= len(frame)
        return frame


async def pause(seconds: float, knocked: asyncio.Event | None) -> bool:
    """Wait `seconds`, or less if `knocked` is set meanwhile; whether it was (and clears it)."""
    if knocked is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(knocked.wait(), seconds)
    except TimeoutError:
        return False
    finally:
        knocked.clear()
    return True


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class KeysBelow(Set[str]):
    """Every key lower than `own` (as hex): whom a joining node accepts links from. It cannot yet
    tell which of them are validators, and only a lower key dials it (the one-connection rule)."""

    def __init__(self, own: str) -> None:
        self._own = own

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key < self._own

    def __iter__(self) -> Iterator[str]:
        return iter(())  # not enumerable; the handshake only asks membership

    def __len__(self) -> int:
        return 0


class AnyKey(KeysBelow):
    """Any key but our own: what a bootstrap dial accepts (the address is all we were told)."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key != self._own
