"""Every consensus message a simulated Byzantine validator makes, in one place.

A Byzantine validator signs with its own real key and sends well-formed frames: what it can
do is choose what to sign, whom to send it to, and what to put inside the messages it relays.
All of that goes through `Crafter`, so a change of the wire format (a PRE-PREPARE carrying
only a block hash, a commit signature or certificate that names the view) is adapted here
and nowhere else: the constructors below look at the signatures of `sign_commit`,
`Certificate.build` and the `PrePrepare` fields instead of assuming today's.
"""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from typing import Any

from chain.block import Block, Certificate, sign_commit
from chain.crypto import Domain, KeyPair
from chain.encoding import canonical, hash_hex
from node.consensus.messages import (
    MAX_PROOF_MESSAGES,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    Status,
    ViewChange,
)

_COMMIT_PARAMS = set(inspect.signature(sign_commit).parameters)
_CERT_PARAMS = set(inspect.signature(Certificate.build).parameters)
_PP_FIELDS = {f.name for f in fields(PrePrepare)}


class Crafter:
    def __init__(self, chain_id: str, key: KeyPair) -> None:
        self.chain_id = chain_id
        self.key = key

    # ------------------------------------------------------------ signing

    def sign(self, msg: Message) -> Signed:
        return Signed.sign(self.key, msg)

    def plain(self, msg: Message) -> dict[str, Any]:
        return self.sign(msg).to_plain()

    def forged(self, msg: Message, claimed_sender: str) -> Signed:
        """`msg` naming another validator as its sender, signed with our own key (the only key we
        have): a replica that checks the nested signature refuses it, one that does not is fooled."""
        return Signed(msg, claimed_sender, self.key.sign(Domain.CONSENSUS, canonical(msg.to_plain())))

    # ------------------------------------------------------------ the messages

    def pre_prepare(self, view: int, height: int, block: Block) -> Signed:
        if "block" in _PP_FIELDS:
            return self.sign(PrePrepare(view, height, block))
        return self.sign(PrePrepare(view, height, block.block_hash))  # type: ignore[arg-type]

    def prepare(self, view: int, height: int, block_hash: str) -> Signed:
        return self.sign(Prepare(view, height, block_hash))

    def commit_sig(self, view: int, height: int, block_hash: str) -> str:
        kw: dict[str, Any] = {"chain_id": self.chain_id, "height": height, "block_hash": block_hash}
        if "view" in _COMMIT_PARAMS:
            kw["view"] = view
        return sign_commit(self.key, **kw)

    def commit(self, view: int, height: int, block_hash: str) -> Signed:
        return self.sign(Commit(view, height, block_hash, self.commit_sig(view, height, block_hash)))

    def view_change(self, view: int, height: int, proof: PreparedProof | None) -> Signed:
        return self.sign(ViewChange(view, height, proof))

    def new_view(self, view: int, height: int, vcs: tuple[Signed, ...], pp: Signed | None) -> Signed:
        return self.sign(NewView(view, height, vcs, pp))

    def status(self, view: int, head: int, head_hash: str | None, cert: Certificate | None,
               new_view: Signed | None, vcs: tuple[Signed, ...] = ()) -> Signed:
        return self.sign(Status(view, head, head_hash, cert, new_view, vcs))

    def certificate(self, view: int, height: int, block_hash: str, sigs: dict[str, str]) -> Certificate:
        """A certificate from commit signatures gathered anywhere (possibly from several views)."""
        kw: dict[str, Any] = {"height": height, "block_hash": block_hash, "sigs": sigs}
        if "view" in _CERT_PARAMS:
            kw["view"] = view
        return Certificate.build(**kw)

    # ------------------------------------------------------------ tampering

    @staticmethod
    def other_block(block: Block, bump: int = 1) -> Block:
        """The same txs at the same height with another header time: valid, and another hash."""
        return Block(replace(block.header, time=block.header.time + bump), block.txs)

    @staticmethod
    def other_hash(block_hash: str) -> str:
        return hash_hex(block_hash.encode())

    def altered_proof(self, vc: Signed) -> Signed | None:
        """A relayed VIEW-CHANGE whose proof lost a prepare or gained a duplicate, its signature
        kept: tampering a relay must break the relayed sender's signature."""
        msg = vc.msg
        if not isinstance(msg, ViewChange) or msg.prepared is None:
            return None
        proof = msg.prepared
        prepares = proof.prepares[1:] if len(proof.prepares) > 1 else proof.prepares * 2
        return Signed(ViewChange(msg.view, msg.height, PreparedProof(proof.pre_prepare, prepares)), vc.sender, vc.sig)

    def stripped_proof(self, vc: Signed) -> Signed | None:
        """A relayed VIEW-CHANGE with its proof removed (sender's signature kept)."""
        msg = vc.msg
        if not isinstance(msg, ViewChange) or msg.prepared is None:
            return None
        return Signed(ViewChange(msg.view, msg.height, None), vc.sender, vc.sig)

    def oversized(self, view: int, height: int, vc: Signed) -> list[dict[str, Any]]:
        """Messages at and past the parser's bounds: a NEW-VIEW with one VIEW-CHANGE too many,
        and a STATUS relaying the most VIEW-CHANGEs it may (all copies of one)."""
        too_many = (vc,) * (MAX_PROOF_MESSAGES + 1)
        at_bound = (vc,) * MAX_PROOF_MESSAGES
        return [
            self.plain(NewView(view, height, too_many, None)),
            self.plain(Status(view, max(0, height - 1), None, None, None, at_bound)),
        ]
