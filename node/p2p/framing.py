"""Length-prefixed frames of canonical msgpack, as validators exchange them over TCP.

A frame is a 4-byte big-endian length followed by that many bytes: `canonical(value)` of one
plain value. The reader refuses a length above its cap before reading the body, so a peer
cannot make us buffer more than the cap, and refuses bytes that are not exactly canonical.
"""

from __future__ import annotations

import asyncio
import struct

from chain.encoding import EncodingError, Value, canonical, decode
from chain.limits import MAX_FRAME_BYTES
from node.errors import NodeError

DEFAULT_MAX_FRAME = MAX_FRAME_BYTES  # the protocol's cap; a transport may be given a lower one (tests)
_LEN = struct.Struct(">I")


class FrameError(NodeError, ValueError):
    """The peer sent something that is not a frame we accept; the connection must be dropped."""


def encode_frame(value: Value, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame of one plain value; raises FrameError if it exceeds max_frame."""
    return frame_bytes(canonical(value), max_frame)


def frame_bytes(body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame of a value given as its canonical bytes; raises FrameError if it exceeds max_frame."""
    if len(body) > max_frame:
        raise FrameError(f"frame of {len(body)} bytes exceeds the cap of {max_frame}")
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME) -> Value:
    """The next value; FrameError on an oversize or non-canonical frame, EOF or a cut-off frame."""
    try:
        head = await reader.readexactly(_LEN.size)
        (length,) = _LEN.unpack(head)
        if length > max_frame:
            raise FrameError(f"peer announced a frame of {length} bytes; the cap is {max_frame}")
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise FrameError("connection closed" if not e.partial else "connection closed inside a frame") from None
    try:
        return decode(body)
    except EncodingError as e:
        raise FrameError(f"undecodable frame: {e}") from None
