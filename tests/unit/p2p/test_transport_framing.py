"""Frames: round trip, the size cap on both sides, and refusal of anything not canonical."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import Value
from node.p2p.framing import FrameError, encode_frame, read_frame

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def reader_of(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


@settings(max_examples=100, deadline=None)
@given(st.lists(plain, min_size=1, max_size=5))
def test_round_trip(values: list[Value]) -> None:
    async def read_all() -> list[Value]:
        r = reader_of(b"".join(encode_frame(v) for v in values))
        return [await read_frame(r) for _ in values]

    assert asyncio.run(read_all()) == values


async def test_size_cap_on_write_and_read() -> None:
    v = "x" * 100
    frame = encode_frame(v, max_frame=103)
    assert len(frame) == 4 + 102
    with pytest.raises(FrameError):
        encode_frame(v, max_frame=101)
    with pytest.raises(FrameError, match="cap"):
        await read_frame(reader_of(frame), max_frame=101)
    # the cap is checked on the announced length, before any body arrives
    with pytest.raises(FrameError, match="cap"):
        await read_frame(reader_of(struct.pack(">I", 2**32 - 1), eof=False), max_frame=1024)


async def test_eof_and_cut_frames() -> None:
    with pytest.raises(FrameError, match="connection closed"):
        await read_frame(reader_of(b""))
    with pytest.raises(FrameError, match="inside a frame"):
        await read_frame(reader_of(encode_frame("hello")[:-1]))


async def test_not_canonical_refused() -> None:
    unsorted = msgpack.packb({"b": 1, "a": 2})
    with pytest.raises(FrameError, match="undecodable"):
        await read_frame(reader_of(struct.pack(">I", len(unsorted)) + unsorted))
    wide_int = b"\xcd\x00\x01"  # 1 as uint16: not the smallest form
    with pytest.raises(FrameError):
        await read_frame(reader_of(struct.pack(">I", len(wide_int)) + wide_int))
    two = msgpack.packb(1) + msgpack.packb(2)
    with pytest.raises(FrameError):
        await read_frame(reader_of(struct.pack(">I", len(two)) + two))
