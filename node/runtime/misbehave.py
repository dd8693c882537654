"""A validator that attacks its own consortium, for integration tests only.

Like CometBFT's e2e "misbehaviors", the node runs its honest consensus core and tampers only with
what leaves it, using its own valid key and well-formed frames, the capabilities a real Byzantine
validator has. Behaviours:

- `equivocate`: as primary, its PRE-PREPARE to the first peer and to the others a conflicting one
  (same height and view, naming a block whose time is one millisecond later, pushed to them just
  before it), so that neither block can gather a quorum of commits and the honest nodes must
  change views with a Byzantine block prepared; as voter, its PREPARE and COMMIT to every peer, followed by a conflicting one
  (another block hash, with a valid commit signature of it) to every other peer.
- `forge_relay`: the STATUS it sends carries a NEW-VIEW it made up (signed by itself for a view it
  leads, with no quorum of VIEW-CHANGEs behind it); the VIEW-CHANGEs of others it relays (in a
  STATUS or a NEW-VIEW) are altered (a height changed under the original signature); its own
  VIEW-CHANGE goes to every other peer re-signed with an altered prepared proof (prepares
  dropped); and while it changes views, every peer gets unsolicited STATUSes whose NEW-VIEW is
  attributed to the view's real primary, carries the VIEW-CHANGEs this node holds, and bears a
  signature that is not that primary's (a STATUS relays a NEW-VIEW: it must be authenticated).
- `snapshot_alter_chunk`: every state chunk it serves to a syncing peer has one byte of a leaf's
  value changed (a well-formed chunk that no longer rebuilds the state root).
- `snapshot_forge_anchor`: the anchor it serves names a header with another state root, under a
  certificate holding its own valid commit signature of that header and the others' signatures
  copied from the real certificate (which do not cover the forged header).

It cannot be switched on by accident: the node reads TITLECHAIN_MISBEHAVE only when
TITLECHAIN_MISBEHAVE_ENABLE holds ENABLE_PHRASE word for word, refuses to start if the first is set
without the second, and logs a CRITICAL line at start and a WARNING for every message it tampers
with. No config field and no command-line option turn it on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from chain.block import Block, Header, sign_commit
from chain.crypto import Domain, KeyPair
from chain.encoding import hash_hex
from node.consensus.messages import (
    Commit,
    MessageError,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    Status,
    ViewChange,
    parse_signed,
)
from node.consensus.pbft import _commit_bytes  # the core's own definition of what a commit signature covers
from node.errors import NodeError

log = logging.getLogger("titlechain.misbehave")

ENV = "TITLECHAIN_MISBEHAVE"
ENABLE_ENV = "TITLECHAIN_MISBEHAVE_ENABLE"
ENABLE_PHRASE = "this node attacks its consortium: tests only"
BEHAVIOURS = frozenset({"equivocate", "forge_relay", "snapshot_alter_chunk", "snapshot_forge_anchor"})

Send = Callable[[str, Any], object]  # (peer public key, plain message); its result is ignored
PushBlock = Callable[[str, Block], object]  # (peer public key, block): a block frame; result ignored


class MisbehaveError(NodeError, ValueError):
    """The environment asks for misbehaviour without enabling it, or names an unknown one."""


def from_environ(environ: Mapping[str, str]) -> frozenset[str]:
    """The behaviours the environment asks for (empty: an honest node); raises MisbehaveError."""
    raw = environ.get(ENV, "").strip()
    if not raw:
        return frozenset()
    if environ.get(ENABLE_ENV) != ENABLE_PHRASE:
        raise MisbehaveError(
            f"{ENV}={raw!r} is set but {ENABLE_ENV} does not hold the test-only phrase; refusing to start a "
            "validator that would attack its consortium"
        )
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - BEHAVIOURS
    if unknown:
        raise MisbehaveError(f"{ENV}: unknown behaviours {sorted(unknown)}; known: {sorted(BEHAVIOURS)}")
    return names


@dataclass
class Misbehaviour:
    behaviours: frozenset[str]
    key: KeyPair
    chain_id: str
    peers: list[str]  # the other validators' public keys, in validator-set order
    send: Send
    push_block: PushBlock
    block_by_hash: Callable[[str], Block | None]  # a block our core holds (its own proposal)
    primary: Callable[[int, int], str]  # the public key of the primary of (view, height)
    # while our core changes views: (view, height, the VIEW-CHANGEs it holds for that view)
    changing_view: Callable[[], tuple[int, int, tuple[Signed, ...]] | None]
    tampered: int = 0
    _impersonated: tuple[int, int] = (-1, -1)  # (view, how many VIEW-CHANGEs) of the last impersonation

    def announce(self) -> None:
        log.critical(
            "MISBEHAVING NODE (%s): this validator tampers with what it sends, for integration tests only; "
            "never run it in a real consortium", ", ".join(sorted(self.behaviours)),
        )

    def outgoing(self, message: Any, to: str | None) -> bool:
        """Send `message` (to one peer, or None: every peer) our way; False leaves it to the caller."""
        try:
            signed = parse_signed(message)
        except (MessageError, RecursionError):
            return False
        if signed.sender != self.key.public:
            return False
        per_peer = self._tamper(signed)
        if per_peer is None:
            return False
        for i, peer in enumerate(self.peers):
            if to is None or peer == to:
                for out in per_peer(i):
                    self.send(peer, out)
        self.tampered += 1
        msg = signed.msg
        log.warning("misbehaving: tampered with our %s for view %d height %d", signed.kind, msg.view, msg.height)
        return True

    def after_step(self) -> None:
        """After each event our core handled: while it changes views, send every peer a STATUS whose
        NEW-VIEW is attributed to the view's real primary, carries the VIEW-CHANGEs we hold (once
        more of them arrived) and no re-proposal, and bears our signature instead of the primary's."""
        if "forge_relay" not in self.behaviours:
            return
        changing = self.changing_view()
        if changing is None:
            return
        view, height, held = changing
        if (view, len(held)) <= self._impersonated:
            return
        self._impersonated = (view, len(held))
        body = NewView(view, height, held, None)
        new_view = Signed(body, self.primary(view, height), Signed.sign(self.key, body).sig)
        status = self._sign(Status(view, height - 1, None, None, new_view))
        for peer in self.peers:
            self.send(peer, status)
        self.tampered += 1
        log.warning(
            "misbehaving: sent a NEW-VIEW for view %d impersonating its primary (%d VIEW-CHANGEs)", view, len(held)
        )

    def _tamper(self, signed: Signed) -> Callable[[int], list[Any]] | None:
        msg, plain = signed.msg, signed.to_plain()
        if "equivocate" in self.behaviours:
            block = self.block_by_hash(msg.block_hash) if isinstance(msg, PrePrepare) else None
            if isinstance(msg, PrePrepare) and block is not None:
                later = _later(block)
                alt = self._sign(PrePrepare(msg.view, msg.height, later.block_hash))
                for peer in self.peers[1:]:
                    self.push_block(peer, later)  # ahead of the PRE-PREPARE naming it, on each link
                return lambda i: [plain if i == 0 else alt]
            if isinstance(msg, (Prepare, Commit)):
                alt = self._sign(self._other_vote(msg))
                return lambda i: [plain] if i % 2 == 0 else [plain, alt]
        if "forge_relay" in self.behaviours:
            if isinstance(msg, Status):
                made_up = self._made_up_new_view(msg)
                forged = self._sign(replace(msg, new_view=made_up, view_changes=_altered(msg.view_changes)))
                return lambda i: [forged]
            if isinstance(msg, NewView):
                forged = self._sign(replace(msg, view_changes=_altered(msg.view_changes)))
                return lambda i: [plain if i % 2 == 0 else forged]
            if isinstance(msg, ViewChange):
                forged = plain
                if msg.prepared is not None:
                    proof = PreparedProof(msg.prepared.pre_prepare, msg.prepared.prepares[:1])
                    forged = self._sign(replace(msg, prepared=proof))
                return lambda i: [plain if i % 2 == 0 else forged]
        return None

    def _sign(self, msg: Any) -> dict[str, Any]:
        return Signed.sign(self.key, msg).to_plain()

    def tamper_snapshot(self, peer: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A state-sync answer as this node sends it (node/p2p/snapshot_serve.py)."""
        kind = answer.get("t")
        if kind == "snap_chunk" and "snapshot_alter_chunk" in self.behaviours:
            chunk = answer["chunk"]
            if chunk["leaves"]:
                key, value = chunk["leaves"][0]
                flipped = ("1" if value[:1] == "0" else "0") + value[1:] if value else "00"
                chunk = {**chunk, "leaves": [[key, flipped], *chunk["leaves"][1:]]}
            else:
                chunk = {**chunk, "outside": [o or "00" * 32 for o in chunk["outside"]]}
            answer = {**answer, "chunk": chunk}
        elif kind == "snap_anchor" and "snapshot_forge_anchor" in self.behaviours:
            answer = {**answer, **self._forged_anchor(answer["header"], answer["certificate"])}
        else:
            return answer
        self.tampered += 1
        log.warning("misbehaving: tampered with a %s for peer %s…", kind, peer[:12])
        return answer

    def _forged_anchor(self, header: dict[str, Any], cert: dict[str, Any]) -> dict[str, Any]:
        forged = Header.from_plain({**header, "state_root": hash_hex(b"misbehave/" + header["state_root"].encode())})
        own = sign_commit(self.key, self.chain_id, forged.height, cert["view"], forged.block_hash)
        sigs = [{"validator": self.key.public, "sig": own}]
        sigs += [s for s in cert["signatures"] if s["validator"] != self.key.public]
        return {"header": forged.to_plain(),
                "certificate": {**cert, "block_hash": forged.block_hash, "signatures": sorted(sigs, key=lambda s: s["validator"])}}

    def _other_vote(self, msg: Prepare | Commit) -> Prepare | Commit:
        other = hash_hex(b"misbehave/" + msg.block_hash.encode())
        if isinstance(msg, Prepare):
            return Prepare(msg.view, msg.height, other)
        # signed over exactly the bytes the core checks (whatever fields they come to cover)
        unsigned = Commit(msg.view, msg.height, other, "")
        return replace(unsigned, commit_sig=self.key.sign(Domain.COMMIT, _commit_bytes(self.chain_id, unsigned)))

    def _made_up_new_view(self, msg: Status) -> Signed:
        """A NEW-VIEW for the next view this node leads, with no VIEW-CHANGE quorum behind it."""
        view = msg.view + 1
        while self.primary(view, msg.height + 1) != self.key.public:
            view += 1
        return Signed.sign(self.key, NewView(view, msg.height + 1, (), None))


def _later(block: Block) -> Block:
    return Block(replace(block.header, time=block.header.time + 1), block.txs)


def _altered(view_changes: tuple[Signed, ...]) -> tuple[Signed, ...]:
    """Others' VIEW-CHANGEs with the first one's height changed under its original signature."""
    if not view_changes:
        return view_changes
    first = view_changes[0]
    msg = first.msg
    assert isinstance(msg, ViewChange)
    return (Signed(replace(msg, height=msg.height + 1), first.sender, first.sig), *view_changes[1:])
