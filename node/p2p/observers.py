"""What a validator's transport lets an observer do: who may link, how many, how much they may send.

An observer (docs/operations.md, "Observer nodes") is a node run by an auditor or a regulator: it
follows the chain from the validators without voting. It links with the key of its account, so a
validator can ask its own head's state whether that account holds the auditor or regulator role
(contracts/roles.py); an account that does not is refused with the reason, and a link whose account
loses the role is dropped at the next commit (`Transport.recheck_observers`).

Bounds, so that observers (or a stolen auditor key) cannot starve consensus:
- at most `max_observers` accounts linked at once, one link each (a newer link replaces the older);
  unauthenticated connections pass the same handshake gate as everyone's (node/p2p/linkguard.py);
- an observer's frames are at most `max_frame` bytes (its only request is a tiny `sync_req`), so a
  flood of them costs little to decode, and the runtime answers them at a bounded rate
  (node/runtime/validator.py, `observer_requests_per_s`);
- what a validator queues for an observer is bounded in frames and bytes, oldest dropped first (an
  observer that falls behind asks again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from chain.encoding import Value, canonical
from node.p2p.peers import Peer, PeerStatus

log = logging.getLogger("titlechain.transport")

DEFAULT_MAX_OBSERVERS = 8


@dataclass(frozen=True)
class ObserverAccess:
    role_of: Callable[[str], str | None]  # the account's observer role at this node's head; None: refuse
    on_message: Callable[[str, Value], None]  # an observer's message (the runtime answers sync requests only)
    max_observers: int = DEFAULT_MAX_OBSERVERS
    max_frame: int = 4096  # plaintext bytes of one frame from an observer
    queue_frames: int = 256
    queue_bytes: int = 32 * 1024 * 1024  # a few sync answers (each about 4 MiB)
    on_link: Callable[[str], None] | None = None  # an observer's link came up (a validator tells it its head)

    def refusal(self, account: str, linked: Collection[str], validators: Collection[str]) -> str | None:
        """Why `account` may not link as an observer now, or None. `linked`: the accounts linked
        already; `validators`: the validator keys (a validator's key never links as an observer,
        where its messages would not reach consensus and it could hold an observer's slot)."""
        if account in validators:
            return "a validator's key cannot link as an observer"
        if self.role_of(account) is None:
            return f"account {account[:16]}… holds neither the auditor nor the regulator role at this validator's head"
        if account not in linked and len(linked) >= self.max_observers:
            return f"this validator serves {self.max_observers} observers already"
        return None


class ObserverHub:
    """The observers linked to one validator's transport, by account: admitting them (with the
    access rules above), finding the revoked, and queueing frames for them."""

    def __init__(self, access: ObserverAccess, validator_keys: Callable[[], Collection[str]]) -> None:
        self.access = access
        self.linked: dict[str, Peer] = {}
        self._validator_keys = validator_keys

    def refusal(self, account: str) -> str | None:
        """Why `account` may not link (now), or None (see ObserverAccess.refusal)."""
        return self.access.refusal(account, self.linked, self._validator_keys())

    def adopt(self, account: str, make: Callable[[], Peer]) -> Peer:
        """The account's peer object, made on its first link (a newer link reuses it: the older closes)."""
        if account not in self.linked:
            self.linked[account] = make()
        return self.linked[account]

    def release(self, account: str, peer: Peer) -> bool:
        """Forget an account whose last link ended; False if a newer link of it is still up."""
        if peer.conn is None and self.linked.get(account) is peer:
            del self.linked[account]
            return True
        return False

    def close_revoked(self) -> list[str]:
        """Close the links of the accounts that no longer hold an observer role at the head."""
        revoked = []
        for account, peer in self.linked.items():
            if peer.conn is not None and self.access.role_of(account) is None:
                log.warning("observer %s… no longer holds the auditor or regulator role; closing its link", account[:12])
                peer.conn.close()
                revoked.append(account)
        return revoked

    def status(self) -> list[PeerStatus]:
        return [PeerStatus(p.node_id, p.public, p.conn is not None, p.sent, p.received, p.dropped) for p in self.linked.values()]

    def enqueue(self, account: str, frame: bytes) -> None:
        """KeyError if the account has no link (any more)."""
        self.linked[account].enqueue(frame)

    def enqueue_all(self, frame: bytes) -> None:
        for peer in self.linked.values():
            peer.enqueue(frame)


class ObserverLinks:
    """What the transport of a validator offers for its observers' links (mixed into `Transport`,
    which holds the hub and frames messages)."""

    _hub: ObserverHub | None

    def _frame(self, body: bytes) -> bytes:
        raise NotImplementedError

    def send_observer(self, account: str, msg: Value) -> None:
        """Queue msg for a linked observer; KeyError if that account has no link (any more)."""
        if self._hub is None:
            raise KeyError(account)
        self._hub.enqueue(account, self._frame(canonical(msg)))

    def broadcast_observers(self, msg: Value) -> None:
        """Queue msg for every linked observer (never for a validator)."""
        if self._hub is not None and self._hub.linked:
            self._hub.enqueue_all(self._frame(canonical(msg)))

    def recheck_observers(self) -> list[str]:
        """Close the links of observers whose account lost its role (after each commit); their accounts."""
        return self._hub.close_revoked() if self._hub is not None else []

    def observer_status(self) -> list[PeerStatus]:
        """One entry per linked observer account."""
        return self._hub.status() if self._hub is not None else []
