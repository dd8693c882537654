"""What this node is in the validator set its peer links follow (docs/operations.md, "Changing the
membership").

Links follow the set of the height after the head: after each commit that changes it, the
transport links to the validators of the new set and refuses every other key. This node's own key
is, in that set, one of three things:
- a member: it votes, and is ready once it has links to a quorum;
- joining: not (yet) in the set it knows, as a validator added by governance that started from the
  genesis; it catches up through bootstrap peers and votes from the height whose set includes it;
- retired: it was in the set and is no longer (removed, or its seat's key rotated); it closes
  every link, dials nobody, no longer votes, and keeps serving the chain up to there.
"""

from __future__ import annotations

import logging

from chain.crypto import KeyPair
from chain.validators import ValidatorSet
from node.p2p.transport import Transport

log = logging.getLogger("titlechain.node")


def start_problem(head_set: ValidatorSet, key: KeyPair, node_id: str, peers: tuple[str, ...], height: int) -> str | None:
    """Why a node with `key` cannot start at this head; None if it can (a member, or joining with
    bootstrap peers). Without peers an unknown key is more likely a wrong key file than a newcomer."""
    me = head_set.by_public.get(key.public)
    if me is None and not peers:
        return (
            f"this key is not a validator of the set at height {height}; a validator added by governance "
            "joins with the addresses of a few running validators (`peers`, or --peers)"
        )
    if me is not None and me.node_id != node_id:
        return f"the config names node {node_id!r} but the validator set gives this key the id {me.node_id!r}"
    return None


class Membership:
    def __init__(self, key: KeyPair, node_id: str, head_set: ValidatorSet, transport: Transport) -> None:
        self._key = key
        self._node_id = node_id
        self._transport = transport
        self.linked_set = head_set  # the set of the height after the head
        self.left_at: int | None = None  # the height from which this node's key is no validator

    def follow(self, height: int, vset: ValidatorSet) -> None:
        """The set of `height` (the one after the new head) differs from the linked one."""
        was_member = self._key.public in self.linked_set.publics
        self.linked_set = vset
        is_member = self._key.public in vset.publics
        if was_member and not is_member:
            self.left_at = height
            self._transport.retire()
            log.warning(
                "this node's key left the validator set at height %d: it no longer votes or links to validators, "
                "and serves the chain up to height %d (a rotated seat: restart with the new key)", height, height - 1,
            )
            return
        if is_member:
            self.left_at = None  # re-added while its node kept running: it links and votes again
        added, removed = self._transport.set_validators(vset)
        log.info(
            "the validator set changes at height %d (n=%d, quorum %d): links added %s, dropped %s%s",
            height, vset.n, vset.quorum, added or "none", removed or "none",
            "; this node's key is a validator from this height on" if is_member and not was_member else "",
        )
        if is_member and (listed := vset.by_public[self._key.public].node_id) != self._node_id:
            log.warning("the validator set gives this node's key the id %r, its config says %r", listed, self._node_id)

    def not_ready_reason(self, next_height: int) -> str | None:
        """Why this node cannot take part in consensus; None while it is a linked member."""
        if self.left_at is not None:
            return f"this node's key is no validator from height {self.left_at} on: it serves the chain up to there"
        if not self._transport.member:
            return f"joining: this node's key is not a validator of the set at height {next_height}; catching up from peers"
        peers = [p for p in self._transport.peer_status() if not p.guest]
        connected, need = sum(1 for p in peers if p.connected), self.linked_set.quorum - 1
        if connected < need:
            return f"connected to {connected} of {len(peers)} peers, a quorum needs {need}"
        return None
