"""The sealed framing of peer links: every byte of a frame is authenticated, and frames must come
in order, once each, from this link and this direction."""

from __future__ import annotations

import asyncio
import os

import pytest

from node.p2p.framing import FrameError
from node.p2p.linkcrypto import TAG_BYTES, Ephemeral, LinkAuthError, LinkKeys, Opener, Sealer

CAP = 1024


def link() -> tuple[LinkKeys, LinkKeys]:
    """Both ends' keys of one link, as two validators derive them after a handshake."""
    a, b = Ephemeral(), Ephemeral()
    transcript = os.urandom(32)
    return (
        LinkKeys.derive(a.shared_secret(b.public), transcript, we_are_lower=True),
        LinkKeys.derive(b.shared_secret(a.public), transcript, we_are_lower=False),
    )


async def read_all(opener: Opener, data: bytes) -> list[bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while True:
        try:
            out.append(await opener.read(reader))
        except FrameError as e:
            if str(e) == "connection closed":
                return out
            raise


def test_both_ends_derive_matching_direction_keys() -> None:
    lower, higher = link()
    assert lower.send == higher.receive and lower.receive == higher.send
    assert lower.send != lower.receive  # a frame reflected back at its sender does not open


async def test_round_trip_in_order() -> None:
    lower, higher = link()
    sealer, opener = Sealer(lower.send, CAP), Opener(higher.receive, CAP)
    msgs = [b"", b"x", os.urandom(CAP), b"hello" * 10]
    wire = b"".join(sealer.seal(m) for m in msgs)
    assert await read_all(opener, wire) == msgs
    assert all(m not in wire for m in msgs if len(m) >= 5)  # confidential


def frames(n: int) -> tuple[list[bytes], LinkKeys]:
    lower, higher = link()
    sealer = Sealer(lower.send, CAP)
    return [sealer.seal(f"frame {i}: {'z' * 40}".encode()) for i in range(n)], higher


@pytest.mark.parametrize("where", ["length", "first_body", "mid_body", "tag"])
async def test_a_flipped_byte_anywhere_fails(where: str) -> None:
    sealed, keys = frames(3)
    target = bytearray(sealed[1])
    pos = {"length": 3, "first_body": 4, "mid_body": len(target) // 2, "tag": len(target) - 1}[where]
    target[pos] ^= 0x01
    opener = Opener(keys.receive, CAP)
    with pytest.raises(LinkAuthError):
        # a longer length waits for bytes that then fail; a shorter one fails at once
        await read_all(opener, sealed[0] + bytes(target) + sealed[2] + b"\0" * 64)


async def test_every_single_byte_flip_of_a_frame_is_caught() -> None:
    sealed, keys = frames(1)
    for pos in range(len(sealed[0])):
        bad = bytearray(sealed[0])
        bad[pos] ^= 0x80
        with pytest.raises(FrameError):  # LinkAuthError, or a cut-off frame if the length grew
            await read_all(Opener(keys.receive, CAP), bytes(bad))


@pytest.mark.parametrize(
    "order",
    [[0, 0], [0, 1, 1], [1, 0], [0, 2], [0, 1, 0]],
    ids=["replay-first", "replay-last", "reorder", "drop-one", "replay-earlier"],
)
async def test_replayed_reordered_or_dropped_frames_fail(order: list[int]) -> None:
    sealed, keys = frames(3)
    opener = Opener(keys.receive, CAP)
    with pytest.raises(LinkAuthError):
        await read_all(opener, b"".join(sealed[i] for i in order))


async def test_frames_of_another_link_or_the_other_direction_fail() -> None:
    sealed, keys = frames(1)
    other_sealed, _ = frames(1)
    with pytest.raises(LinkAuthError):
        await read_all(Opener(keys.receive, CAP), other_sealed[0])
    with pytest.raises(LinkAuthError):
        await read_all(Opener(keys.send, CAP), sealed[0])


async def test_an_injected_plaintext_frame_fails() -> None:
    _, keys = frames(1)
    body = b"\x81\xa4kind\xa4ping"
    with pytest.raises(LinkAuthError):
        await read_all(Opener(keys.receive, CAP), len(body).to_bytes(4, "big") + body + b"\0" * 16)


async def test_truncated_frames_and_impossible_lengths() -> None:
    sealed, keys = frames(1)
    for cut in (2, 4, 10, len(sealed[0]) - 1):
        with pytest.raises(FrameError, match="closed inside a frame"):
            await read_all(Opener(keys.receive, CAP), sealed[0][:cut])
    for length in (0, TAG_BYTES - 1, CAP + TAG_BYTES + 1, 2**32 - 1):
        with pytest.raises(LinkAuthError, match="outside"):  # refused before any body is buffered
            await read_all(Opener(keys.receive, CAP), length.to_bytes(4, "big"))


def test_seal_refuses_oversize_plaintext() -> None:
    keys, _ = link()
    sealer = Sealer(keys.send, CAP)
    assert len(sealer.seal(b"a" * CAP)) == 4 + CAP + TAG_BYTES
    with pytest.raises(FrameError, match="exceeds the cap"):
        sealer.seal(b"a" * (CAP + 1))


def test_low_order_and_malformed_ephemeral_keys_are_refused() -> None:
    e = Ephemeral()
    with pytest.raises(ValueError):
        e.shared_secret(bytes(32))  # the all-zero point: the shared secret would be public
    with pytest.raises(ValueError):
        e.shared_secret(bytes(31))
