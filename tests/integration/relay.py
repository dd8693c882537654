"""An on-path relay between two validators: a TCP proxy in a background thread that forwards whole
length-prefixed frames, records every byte, and on request tampers with the dialer -> acceptor
direction of the current connection (after its two handshake frames):

    relay.arm("flip")                 flip one byte in the middle of the next frame
    relay.arm("replay")               forward the next frame, then send an earlier one again
    relay.arm("inject", frame_bytes)  send frame_bytes of our own between two frames

A node reaches it because its config's `peer_addresses` names the relay as the peer's address.
Every wait is bounded; `close()` ends the thread.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass, field

_LEN = struct.Struct(">I")
HANDSHAKE_FRAMES = 2  # hello, auth: passed untouched, as the relay of the incident did


@dataclass
class _Arm:
    action: str
    payload: bytes = b""
    fired_on: int | None = None  # the connection number it was applied to


@dataclass
class Relay:
    target_host: str
    target_port: int
    captured: bytearray = field(default_factory=bytearray)  # both directions, every connection
    connections: int = 0
    _arm: _Arm | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen on a free port of 127.0.0.1; returns it."""
        ready = threading.Event()
        port: list[int] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
                port.append(self._server.sockets[0].getsockname()[1])
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="relay")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("relay did not start")
        return port[0]

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def arm(self, action: str, payload: bytes = b"") -> None:
        with self._lock:
            self._arm = _Arm(action, payload)

    def fired_on(self) -> int | None:
        """The connection an armed action was applied to, once it was."""
        with self._lock:
            return self._arm.fired_on if self._arm is not None else None

    def captured_bytes(self) -> bytes:
        with self._lock:
            return bytes(self.captured)

    async def _on_client(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            down_w.close()
            return
        with self._lock:
            self.connections += 1
            number = self.connections
        pipes = [asyncio.ensure_future(self._pipe(up_r, down_w, None)), asyncio.ensure_future(self._pipe(down_r, up_w, number))]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:  # one side closed: close the other, as a transparent relay passes the close on
            pipe.cancel()
        for w in (up_w, down_w):
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tamper_conn: int | None) -> None:
        """Forward frames until either side closes; tamper only on the dialer -> acceptor side."""
        sent: list[bytes] = []
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                frame = head + await reader.readexactly(_LEN.unpack(head)[0])
                with self._lock:
                    self.captured += frame
                    arm = self._arm if tamper_conn is not None and len(sent) >= HANDSHAKE_FRAMES else None
                    if arm is not None and arm.fired_on is None:
                        arm.fired_on = tamper_conn
                    else:
                        arm = None
                out = frame
                if arm is not None and arm.action == "flip":
                    middle = len(frame) // 2
                    out = frame[:middle] + bytes([frame[middle] ^ 0x01]) + frame[middle + 1 :]
                if arm is not None and arm.action == "inject":
                    writer.write(arm.payload)
                writer.write(out)
                sent.append(frame)
                if arm is not None and arm.action == "replay":
                    writer.write(sent[HANDSHAKE_FRAMES])  # the first sealed frame of this connection, again
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
