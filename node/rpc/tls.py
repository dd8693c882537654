"""TLS for the RPC site, counted against its connection cap from the moment a socket is accepted.

Handing `ssl=` to `loop.create_server` would run the handshake before aiohttp sees the connection,
so a client that connects and never completes a handshake would hold a socket without counting
against `rpc_max_connections`: a slowloris one step earlier. Instead the site accepts plain TCP,
counts the socket at once, and upgrades it with `loop.start_tls` (bounded by the handshake timeout);
only then does the aiohttp handler see it, already counted by aiohttp itself.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

log = logging.getLogger("titlechain.rpc")


class Handshakes:
    """Sockets accepted and not yet handed to aiohttp (their TLS handshake under way)."""

    def __init__(self, context: ssl.SSLContext, timeout_s: float) -> None:
        self.context = context
        self.timeout_s = timeout_s
        self.pending: set[asyncio.Task[None]] = set()
        # counted when the protocol is made, at accept: asyncio accepts a burst of sockets before
        # any of them reaches connection_made, and each must see the ones before it
        self.count = 0

    def protocol(self, handler: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        self.count += 1
        return _Upgrade(self, handler)

    def finished(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        self.count -= 1

    async def close(self) -> None:
        """Drop every handshake under way (the site is stopping)."""
        for task in list(self.pending):
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)


class _Upgrade(asyncio.Protocol):
    """The plain-TCP protocol of one accepted socket until its TLS handshake ends."""

    def __init__(self, handshakes: Handshakes, handler: Callable[[], asyncio.Protocol]) -> None:
        self.handshakes = handshakes
        self.handler = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is for the TLS layer start_tls puts in between
        task = asyncio.get_running_loop().create_task(self._upgrade(transport))
        self.handshakes.pending.add(task)
        task.add_done_callback(self.handshakes.finished)

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        handler = self.handler()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, handler, self.handshakes.context, server_side=True,
                ssl_handshake_timeout=self.handshakes.timeout_s,
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, ConnectionError) as e:  # ssl.SSLError is an OSError
            # a plain HTTP request, an old TLS version, an untrusting client, a stall: nothing to serve
            log.debug("RPC TLS handshake failed: %s", e)
            transport.abort()
            return
        if tls is None:  # the peer went away during the handshake
            transport.abort()
            return
        handler.connection_made(tls)  # aiohttp registers (and counts) the connection here

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # before the upgrade the handshake task sees the failure; after it, the TLS layer owns the socket
