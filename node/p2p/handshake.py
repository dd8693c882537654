"""The mutual handshake that opens a peer link (see node/p2p/transport.py for the links themselves).

Both ends run the same code, so neither can be tricked into playing the other's part (the only
difference: the dialer sends its hello first and the acceptor answers a valid one, so a connection
that never sends a valid hello costs the acceptor no signature and no key agreement):

1. each sends a hello `{"type": "hello", "version", "chain_id", "genesis_hash", "role", "public",
   "nonce", "ephemeral", "sig"}`: its role ("validator" or "observer"), 32 fresh random bytes of
   nonce, a fresh X25519 public key, and an Ed25519 signature (`Domain.HANDSHAKE`) by `public` over
   the canonical hello without "sig". Each checks the other's version, chain id, genesis hash, key
   and signature. A validator's key must be one this end is willing to talk to (of the set); an
   observer's key is an account, which the acceptor's `observers` check admits or refuses (a
   validator asks its head's state for the auditor or regulator role) only once the hello's
   signature holds, and a refused observer is told why in a `{"type": "refused", "reason"}` frame
   instead of a hello. A signed hello lets the acceptor tell a known key's connection from a flood
   before the handshake ends (`on_hello`); it may be a replay, which step 2 catches.
2. each signs, under `Domain.HANDSHAKE`, canonical({"type": "auth", "version", "chain_id",
   "genesis_hash", "signer", "signer_nonce", "signer_ephemeral", "peer", "peer_nonce",
   "peer_ephemeral"}) from its own point of view, and checks the other's signature from the
   other's. Fresh nonces on both sides defeat replay; naming signer and peer defeats reflecting a
   signature back at its maker; covering both ephemeral keys means a relay that substitutes its
   own ephemeral key fails the signature, so it cannot learn the link keys.
3. both derive the link keys (node/p2p/linkcrypto.py) from the X25519 secret and the transcript hash
   (SHA-256 of the step 2 message from the lower validator key's point of view).

Anything else (unknown key, refused observer, bad signature, wrong version, chain or genesis,
garbage, an oversize frame, no hello within `hello_timeout` or no end within `timeout`) raises
HandshakeError.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from chain.crypto import Domain, KeyPair, verify
from chain.encoding import Value, canonical, is_hex
from node.errors import NodeError
from node.p2p.framing import FrameError, encode_frame, read_frame
from node.p2p.linkcrypto import Ephemeral, LinkKeys

# The version of the peer protocol; a peer of another version is refused at the handshake.
#   2: PRE-PREPARE names its block by hash; blocks travel as block frames
#   3: commit votes and certificates name their view (commit signatures v2): a peer of an older
#      version signs commits this node cannot check
#   4: a block holding a tx from a signer without standing is invalid, and state roots include
#      standing: a peer of an older version would vote for blocks this node refuses
#   5: hellos carry a signed X25519 key, and every frame after the handshake is sealed
#      (ChaCha20-Poly1305): a peer of an older version sends frames in the clear
#   6: governance gains rotate_validator, and add_validator refuses an address nobody can dial or
#      one already in the set: a peer of an older version executes such txs differently, so it
#      would refuse blocks this node certifies (or the reverse)
#   7: hellos name their end's role, so that an observer (an auditor's or regulator's account key)
#      can link to validators; a peer of an older version would take an observer for an unknown
#      validator
#   8: state sync (node/p2p/sync_wire.py: snap_* requests and answers); the state's leaves are
#      listed from l/ records a version-7 node does not keep, so it could not serve them
#   9: an observer may ask a validator for state sync (snap_* requests on its link); a version-8
#      validator drops them, so an observer joining by state sync would wait on it for nothing.
#      And the knock (node/p2p/transport.py): a starting node dials lower keys once so that they
#      redial it at once; a version-8 node refuses that handshake
#  10: the state tree has sixteen children a node (store schema 11): state roots, state sync's
#      chunks (snapshot chunk version 2) and proofs (version 4) are another tree's; a version-9
#      peer would compute other roots for the same blocks
#  11: an inner node's hash leaves its empty children out (store schema 12): state roots, state
#      sync's chunks (snapshot chunk version 3) and proofs (version 5) are another tree's again
PROTOCOL_VERSION = 11
MAX_HANDSHAKE_FRAME = 4096  # an unauthenticated peer may not make us buffer more than this
_HELLO_FIELDS = frozenset({"type", "version", "chain_id", "genesis_hash", "role", "public", "nonce", "ephemeral", "sig"})
VALIDATOR, OBSERVER = "validator", "observer"
ROLES = (VALIDATOR, OBSERVER)
MAX_REASON = 300  # characters of a refusal's reason sent to the refused end

# An acceptor's check of an observer's account key, once its hello is signed: None admits it, a
# string refuses it and says why (sent to the observer, so it must hold nothing secret).
ObserverCheck = Callable[[str], str | None]


class HandshakeError(NodeError):
    """The other end did not prove it is a validator (or observer) we may talk to, on this chain."""


class _Refused(HandshakeError):
    """A signed hello of an observer this end does not admit: the observer is told the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"observer refused: {reason}")
        self.reason = reason[:MAX_REASON]


@dataclass(frozen=True)
class Handshake:
    """The outcome: the other end's verified key and role, and the link's direction keys."""

    peer: str
    keys: LinkKeys
    role: str = VALIDATOR


@dataclass(frozen=True)
class _Context:
    """This end of one handshake: who we are, what we accept, and how long we wait."""

    key: KeyPair
    role: str
    chain_id: str
    genesis_hash: str
    allowed: AbstractSet[str]
    observers: ObserverCheck | None
    hello_timeout: float
    on_hello: Callable[[str], None] | None
    dialer: bool


@dataclass(frozen=True)
class _Side:
    public: str
    nonce: str
    ephemeral: str
    role: str


def _hello_body(ctx: _Context, side: _Side) -> dict[str, Any]:
    return {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "chain_id": ctx.chain_id,
        "genesis_hash": ctx.genesis_hash,
        "role": side.role,
        "public": side.public,
        "nonce": side.nonce,
        "ephemeral": side.ephemeral,
    }


def _challenge(ctx: _Context, signer: _Side, peer: _Side) -> bytes:
    return canonical(
        {
            "type": "auth",
            "version": PROTOCOL_VERSION,
            "chain_id": ctx.chain_id,
            "genesis_hash": ctx.genesis_hash,
            "signer": signer.public,
            "signer_nonce": signer.nonce,
            "signer_ephemeral": signer.ephemeral,
            "peer": peer.public,
            "peer_nonce": peer.nonce,
            "peer_ephemeral": peer.ephemeral,
        }
    )


async def _send(writer: asyncio.StreamWriter, value: Value) -> None:
    writer.write(encode_frame(value, MAX_HANDSHAKE_FRAME))
    await writer.drain()


def _check_hello(theirs: Value, ours: _Side, ctx: _Context) -> _Side:
    """The other end's side of the handshake, once its hello passes every check."""
    if type(theirs) is not dict or theirs.get("type") != "hello":
        raise HandshakeError("expected a hello")
    version = theirs.get("version")
    if "version" in theirs and (type(version) is not int or version != PROTOCOL_VERSION):  # before the fields: they differ by version
        raise HandshakeError(
            f"peer speaks protocol version {version!r}, this node speaks version {PROTOCOL_VERSION}; "
            "both ends must run the same protocol version"
        )
    if set(theirs) != _HELLO_FIELDS:
        raise HandshakeError("expected a hello")
    if theirs["chain_id"] != ctx.chain_id:
        raise HandshakeError(f"wrong chain {theirs['chain_id']!r}")
    if theirs["genesis_hash"] != ctx.genesis_hash:
        raise HandshakeError("wrong genesis hash")
    role, peer = theirs["role"], theirs["public"]
    if role not in ROLES:
        raise HandshakeError(f"unknown role {str(role)[:32]!r}")
    if type(peer) is not str or peer == ours.public:
        raise HandshakeError("a hello's key is 32 bytes in hex, not ours")
    if role == VALIDATOR and peer not in ctx.allowed:
        raise HandshakeError(f"key {peer[:16]}... is not a validator we accept this connection from")
    if role == OBSERVER and ctx.observers is None:
        raise HandshakeError(f"key {peer[:16]}... connects as an observer; this end accepts no observers")
    if not is_hex(theirs["nonce"], 32) or theirs["nonce"] == ours.nonce:
        raise HandshakeError("nonce must be 32 fresh random bytes in hex")
    if not is_hex(theirs["ephemeral"], 32) or theirs["ephemeral"] == ours.ephemeral:
        raise HandshakeError("ephemeral must be a fresh 32-byte X25519 key in hex")
    side = _Side(peer, theirs["nonce"], theirs["ephemeral"], role)
    body = canonical(_hello_body(ctx, side))
    if type(theirs["sig"]) is not str or not is_hex(peer, 32) or not verify(peer, Domain.HANDSHAKE, body, theirs["sig"]):
        raise HandshakeError("hello signature does not verify")
    if role == OBSERVER and ctx.observers is not None and (reason := ctx.observers(peer)) is not None:
        raise _Refused(reason)  # only now: only the account's holder learns why it is refused
    return side


def _refusal(frame: Value) -> str | None:
    """The reason of a `refused` frame, or None if the frame is something else."""
    if type(frame) is dict and frame.get("type") == "refused" and set(frame) == {"type", "reason"} and type(frame["reason"]) is str:
        # unauthenticated text from the other end, bound for our logs and status: one printable line
        return "".join(ch if ch.isprintable() else "?" for ch in frame["reason"][:MAX_REASON])
    return None


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: _Context) -> Handshake:
    if ctx.dialer:
        eph, ours = _fresh_side(ctx)
        await _send_hello(writer, ctx, ours)
    try:
        hello = await asyncio.wait_for(read_frame(reader, MAX_HANDSHAKE_FRAME), ctx.hello_timeout)
    except TimeoutError:
        raise HandshakeError(f"no hello within {ctx.hello_timeout}s") from None
    if not ctx.dialer:  # only now: a silent connection costs the acceptor no key generation
        eph, ours = _fresh_side(ctx)
    if (reason := _refusal(hello)) is not None:
        raise HandshakeError(f"the peer refused this node: {reason}")
    try:
        theirs = _check_hello(hello, ours, ctx)
    except _Refused as e:
        await _send(writer, {"type": "refused", "reason": e.reason})
        raise
    if ctx.on_hello is not None:
        ctx.on_hello(theirs.public)
    if not ctx.dialer:  # only now: a connection that never says a valid hello costs us no signature
        await _send_hello(writer, ctx, ours)
    await _send(writer, {"type": "auth", "sig": ctx.key.sign(Domain.HANDSHAKE, _challenge(ctx, ours, theirs))})
    auth = await read_frame(reader, MAX_HANDSHAKE_FRAME)
    if type(auth) is not dict or set(auth) != {"type", "sig"} or auth["type"] != "auth" or type(auth["sig"]) is not str:
        raise HandshakeError("expected an auth")
    if not verify(theirs.public, Domain.HANDSHAKE, _challenge(ctx, theirs, ours), auth["sig"]):
        raise HandshakeError("handshake signature does not verify")
    lower, higher = (ours, theirs) if ours.public < theirs.public else (theirs, ours)
    transcript = hashlib.sha256(_challenge(ctx, lower, higher)).digest()
    try:
        shared = eph.shared_secret(bytes.fromhex(theirs.ephemeral))
    except ValueError:
        raise HandshakeError("ephemeral key is not a usable X25519 key") from None
    return Handshake(theirs.public, LinkKeys.derive(shared, transcript, we_are_lower=ours is lower), theirs.role)


def _fresh_side(ctx: _Context) -> tuple[Ephemeral, _Side]:
    """A fresh X25519 key and nonce for this end of one handshake."""
    eph = Ephemeral()
    return eph, _Side(ctx.key.public, os.urandom(32).hex(), eph.public.hex(), ctx.role)


async def _send_hello(writer: asyncio.StreamWriter, ctx: _Context, ours: _Side) -> None:
    body = _hello_body(ctx, ours)
    await _send(writer, {**body, "sig": ctx.key.sign(Domain.HANDSHAKE, canonical(body))})


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    key: KeyPair,
    chain_id: str,
    genesis_hash: str,
    allowed: AbstractSet[str],
    timeout: float,
    hello_timeout: float | None = None,
    on_hello: Callable[[str], None] | None = None,
    dialer: bool = True,
    role: str = VALIDATOR,
    observers: ObserverCheck | None = None,
) -> Handshake:
    """Run the mutual handshake on a fresh connection (see the module docstring).

    The dialer says its hello first; the acceptor (`dialer=False`) answers only a valid one.
    `role` is this end's ("validator", or "observer" for a node that follows without voting).
    `allowed` holds the validator keys this end accepts; `observers` (None: no observer is
    accepted) admits or refuses an observer's account key. `on_hello(public)` runs once the other
    end's hello is signed by an admitted key; it may raise HandshakeError to stop. Raises
    HandshakeError for any failure, including timeout, garbage, refusal and a closed connection.
    """
    try:
        hello_within = min(hello_timeout or timeout, timeout)
        ctx = _Context(key, role, chain_id, genesis_hash, allowed, observers, hello_within, on_hello, dialer)
        return await asyncio.wait_for(_handshake(reader, writer, ctx), timeout)
    except TimeoutError:
        raise HandshakeError(f"no handshake within {timeout}s") from None
    except FrameError as e:
        raise HandshakeError(str(e)) from None
    except OSError as e:
        raise HandshakeError(f"connection failed: {e}") from None
