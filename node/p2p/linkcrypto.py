"""The sealed frames of a peer link: X25519 key agreement and ChaCha20-Poly1305 (the only
module that uses the `cryptography` package).

After the handshake (node/p2p/transport.py) each end holds its own ephemeral X25519 private key, the
other end's ephemeral public key and the hash of the handshake transcript, which both ends'
Ed25519 signatures cover. `LinkKeys.derive` turns them into one 32-byte key per direction:

    HKDF-SHA256(ikm = X25519(ours, theirs), salt = transcript hash, info = "titlechain link v2",
                length = 64) = key for the lower validator key's sending direction
                               || key for the higher validator key's sending direction

A sealed frame is a 4-byte big-endian length L, then L bytes of ChaCha20-Poly1305 ciphertext and
tag of one plaintext. The nonce is the frame's number on this link in this direction (4 zero
bytes, then a 64-bit big-endian counter starting at 0), never sent; the 4-byte length prefix is
the associated data, so it is authenticated too. A changed byte anywhere, a replayed, reordered,
dropped or injected frame, or a frame from another link (other keys) fails the tag: the reader
raises `LinkAuthError` and the link must be closed, since its counters can no longer agree.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from node.p2p.framing import FrameError

TAG_BYTES = 16
SEAL_OVERHEAD = 4 + TAG_BYTES  # wire bytes of a sealed frame beyond its plaintext: length prefix and tag
KEY_INFO = b"titlechain link v2"
_LEN = struct.Struct(">I")
_NONCE_PREFIX = b"\0\0\0\0"
_MAX_COUNTER = 2**64 - 1


class LinkAuthError(FrameError):
    """A sealed frame failed authentication: altered, replayed, reordered, injected or cut off."""


class Ephemeral:
    """A one-link X25519 key pair; the private half never leaves this object."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes_raw()

    def shared_secret(self, peer_public: bytes) -> bytes:
        """X25519 with the peer's 32-byte public key; ValueError for a key that is not one, or a
        low-order point (an all-zero secret would make the link keys public)."""
        if len(peer_public) != 32:
            raise ValueError("an X25519 public key is 32 bytes")
        return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))


@dataclass(frozen=True)
class LinkKeys:
    send: bytes
    receive: bytes

    @classmethod
    def derive(cls, shared: bytes, transcript_hash: bytes, *, we_are_lower: bool) -> LinkKeys:
        """The two direction keys of a link; `we_are_lower`: our validator key sorts first."""
        okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=transcript_hash, info=KEY_INFO).derive(shared)
        lower_sends, higher_sends = okm[:32], okm[32:]
        if we_are_lower:
            return cls(send=lower_sends, receive=higher_sends)
        return cls(send=higher_sends, receive=lower_sends)


class Sealer:
    """Seals the frames of one direction of one link, in order."""

    def __init__(self, key: bytes, max_frame: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0
        self._max_frame = max_frame

    def seal(self, plaintext: bytes) -> bytes:
        """The wire bytes of one frame; FrameError if plaintext exceeds the cap."""
        if len(plaintext) > self._max_frame:
            raise FrameError(f"frame of {len(plaintext)} bytes exceeds the cap of {self._max_frame}")
        if self._counter > _MAX_COUNTER:  # 2^64 frames: unreachable, but a nonce must never repeat
            raise FrameError("link frame counter exhausted; reconnect")
        head = _LEN.pack(len(plaintext) + TAG_BYTES)
        sealed = self._aead.encrypt(_NONCE_PREFIX + self._counter.to_bytes(8, "big"), plaintext, head)
        self._counter += 1
        return head + sealed


class Opener:
    """Opens the frames of one direction of one link, in order."""

    def __init__(self, key: bytes, max_frame: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0
        self._max_frame = max_frame

    def open(self, head: bytes, sealed: bytes) -> bytes:
        """The plaintext of the next frame; LinkAuthError if it is not the next frame we expect."""
        if self._counter > _MAX_COUNTER:
            raise LinkAuthError("link frame counter exhausted")
        try:
            plaintext = self._aead.decrypt(_NONCE_PREFIX + self._counter.to_bytes(8, "big"), sealed, head)
        except InvalidTag:
            raise LinkAuthError(
                f"frame {self._counter} failed authentication (altered, replayed, reordered or injected)"
            ) from None
        self._counter += 1
        return plaintext

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        """Read and open the next frame; FrameError on EOF or an impossible length, before
        buffering more than the cap."""
        try:
            head = await reader.readexactly(_LEN.size)
        except asyncio.IncompleteReadError as e:
            raise FrameError("connection closed" if not e.partial else "connection closed inside a frame") from None
        (length,) = _LEN.unpack(head)
        if length < TAG_BYTES or length > self._max_frame + TAG_BYTES:
            raise LinkAuthError(f"sealed frame length {length} outside [{TAG_BYTES}, {self._max_frame + TAG_BYTES}]")
        try:
            sealed = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise FrameError("connection closed inside a frame") from None
        return self.open(head, sealed)
