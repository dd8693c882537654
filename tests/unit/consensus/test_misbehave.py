"""The test-only misbehaving node: off unless explicitly enabled, and what it sends per peer."""

from __future__ import annotations

from typing import Any

import pytest
from factories import make_block, make_consortium

from chain.block import Block
from chain.crypto import Domain, verify
from chain.encoding import hash_hex
from node.consensus.messages import Commit, NewView, Prepare, PrePrepare, Signed, Status, ViewChange, parse_signed
from node.consensus.pbft import _commit_bytes
from node.runtime.misbehave import ENABLE_ENV, ENABLE_PHRASE, ENV, MisbehaveError, Misbehaviour, from_environ


def test_off_by_default_and_never_by_accident() -> None:
    assert from_environ({}) == frozenset()
    with pytest.raises(MisbehaveError, match="refusing to start"):
        from_environ({ENV: "equivocate"})
    with pytest.raises(MisbehaveError, match="refusing to start"):
        from_environ({ENV: "equivocate", ENABLE_ENV: "1"})
    with pytest.raises(MisbehaveError, match="unknown"):
        from_environ({ENV: "equivocate,lie", ENABLE_ENV: ENABLE_PHRASE})
    assert from_environ({ENV: "equivocate, forge_relay", ENABLE_ENV: ENABLE_PHRASE}) == {"equivocate", "forge_relay"}


changing: list[Any] = [None]
BLOCK, _ = make_block(make_consortium(4), 3, hash_hex(b"prev"), [])
pushed: list[tuple[str, Block]] = []


def _node(behaviours: set[str]) -> tuple[Misbehaviour, list[tuple[str, Any]]]:
    c = make_consortium(4)
    changing[0] = None
    pushed.clear()
    sent: list[tuple[str, Any]] = []
    keys = c.validator_keys
    bad = Misbehaviour(
        frozenset(behaviours), keys[0], c.genesis.chain_id, [k.public for k in keys[1:]],
        lambda peer, msg: sent.append((peer, msg)), lambda peer, block: pushed.append((peer, block)),
        {BLOCK.block_hash: BLOCK}.get, lambda view, height: keys[view % 4].public, lambda: changing[0],
    )
    return bad, sent


def _by_peer(sent: list[tuple[str, Any]]) -> dict[str, list[Signed]]:
    out: dict[str, list[Signed]] = {}
    for peer, msg in sent:
        out.setdefault(peer, []).append(parse_signed(msg))
    return out


def test_equivocating_primary_splits_its_pre_prepare() -> None:
    bad, sent = _node({"equivocate"})
    assert bad.outgoing(Signed.sign(bad.key, PrePrepare(0, 3, BLOCK.block_hash)).to_plain(), None)
    got = _by_peer(sent)
    hashes = [msgs[0].msg.block_hash for msgs in got.values()]  # type: ignore[union-attr]
    assert len(got) == 3 and all(len(m) == 1 for m in got.values())
    assert hashes[0] == BLOCK.block_hash != hashes[1] == hashes[2]
    # the other block went, whole, to the peers that were told of it
    assert [(p, b.block_hash) for p, b in pushed] == [(p, hashes[1]) for p in bad.peers[1:]]
    assert pushed[0][1].header.height == 3 and pushed[0][1].txs == BLOCK.txs
    assert all(verify(m.sender, Domain.CONSENSUS, m.body_bytes, m.sig) for ms in got.values() for m in ms)


@pytest.mark.parametrize("kind", ["prepare", "commit"])
def test_equivocating_voter_sends_a_conflicting_vote_to_half_the_peers(kind: str) -> None:
    bad, sent = _node({"equivocate"})
    h = hash_hex(b"block")
    msg = Prepare(1, 5, h) if kind == "prepare" else Commit(1, 5, h, "ab" * 64)
    assert bad.outgoing(Signed.sign(bad.key, msg).to_plain(), None)
    counts = [len(m) for m in _by_peer(sent).values()]
    assert counts == [1, 2, 1]
    second = _by_peer(sent)[bad.peers[1]][1]
    assert second.msg.block_hash != h and second.kind == kind  # type: ignore[union-attr]
    if isinstance(second.msg, Commit):  # a real vote: its commit signature holds, for the other block
        assert verify(bad.key.public, Domain.COMMIT, _commit_bytes(bad.chain_id, second.msg), second.msg.commit_sig)


def test_forged_status_carries_a_made_up_new_view_and_an_altered_relay() -> None:
    bad, sent = _node({"forge_relay"})
    other = make_consortium(4).validator_keys[2]
    relayed = Signed.sign(other, ViewChange(2, 4, None))
    status = Status(2, 3, None, None, None, (relayed,))
    assert bad.outgoing(Signed.sign(bad.key, status).to_plain(), bad.peers[0])
    assert [p for p, _ in sent] == [bad.peers[0]]
    forged = parse_signed(sent[0][1]).msg
    assert isinstance(forged, Status) and forged.new_view is not None
    nv = forged.new_view.msg
    assert isinstance(nv, NewView) and nv.view == 4 and nv.view_changes == ()
    altered = forged.view_changes[0]
    assert altered.sig == relayed.sig and not verify(other.public, Domain.CONSENSUS, altered.body_bytes, altered.sig)


def test_honest_messages_of_other_kinds_and_others_pass_through() -> None:
    bad, sent = _node({"equivocate"})
    assert not bad.outgoing(Signed.sign(bad.key, ViewChange(1, 1, None)).to_plain(), None)  # no forge_relay
    other = make_consortium(4).validator_keys[1]
    assert not bad.outgoing(Signed.sign(other, Prepare(0, 1, hash_hex(b"x"))).to_plain(), None)
    assert not bad.outgoing({"kind": "txs"}, None) and sent == []


def test_while_changing_views_it_impersonates_the_new_primary() -> None:
    bad, sent = _node({"forge_relay"})
    bad.after_step()
    assert sent == []  # not changing views
    held = (Signed.sign(make_consortium(4).validator_keys[2], ViewChange(1, 6, None)),)
    changing[0] = (1, 6, held)
    bad.after_step()
    bad.after_step()  # nothing new held: not again
    statuses = [parse_signed(m) for _, m in sent]
    assert len(statuses) == 3 and all(s.kind == "status" for s in statuses)
    nv = statuses[0].msg.new_view  # type: ignore[union-attr]
    assert nv is not None and isinstance(nv.msg, NewView) and nv.msg.view_changes == held
    assert nv.sender == bad.primary(1, 6) != bad.key.public
    assert not verify(nv.sender, Domain.CONSENSUS, nv.body_bytes, nv.sig)
