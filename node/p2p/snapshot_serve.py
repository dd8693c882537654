"""Serving state sync to joining peers (docs/protocol.md, "State sync"; the joining side is
node/p2p/state_sync.py).

Each `snap_*` request is answered from the store through a `SnapshotReader` (the runtime lends
contracts/snapshot_source.py, which this layer may not import), at a bounded rate per peer (a chunk costs a tree walk of up to a few thousand leaves), with
`snap_none` when this node cannot serve it. Nothing here is trusted by the asker: every answer is
verified on its side, so a wrong answer costs it only this peer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from chain.snapshot import StateChunk
from node.p2p.sync_wire import MAX_WHY, SnapRequest, WireError, parse_sync

log = logging.getLogger("titlechain.node")

SERVE_PER_S = 32  # snapshot answers per peer per second; more requests are ignored

class AnchorAnswer(Protocol):
    @property
    def header(self) -> dict[str, Any]: ...
    @property
    def certificate(self) -> dict[str, Any]: ...
    @property
    def changes(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def total_changes(self) -> int: ...


class SnapshotReader(Protocol):
    """What is served, read from the store; each raises LookupError for what it cannot serve."""

    def offer(self) -> int: ...

    def anchor(self, height: int, start: int) -> AnchorAnswer: ...

    def window(self, top: int, base: int) -> list[dict[str, Any]]: ...

    def state_chunk(self, height: int, lo: int, limit: int) -> StateChunk: ...


Send = Callable[[str, dict[str, Any]], object]
Tamper = Callable[[str, dict[str, Any]], dict[str, Any]]  # test-only (node/runtime/misbehave.py)


class SnapshotServer:
    def __init__(self, send: Send, reader: Callable[[], SnapshotReader], tamper: Tamper | None = None,
                 who: str = "validator") -> None:
        """`send`: to a validator peer, or to an observer's link (`who` names which, in the logs)."""
        self._send = send
        self._who = who
        self._reader = reader
        self._tamper = tamper
        self._served: dict[str, deque[float]] = {}

    def serve(self, peer: str, obj: Any) -> None:
        try:
            req = parse_sync(obj)
        except WireError as e:
            log.warning("malformed state-sync message from %s %s…: %s", self._who, peer[:12], e)
            return
        if not isinstance(req, SnapRequest):
            return  # an answer nobody here asked for (this node is not syncing)
        if not self._allow(peer):
            log.warning("%s %s… asks for snapshot data faster than %d/s; ignoring", self._who, peer[:12], SERVE_PER_S)
            return
        try:
            answer = self._answer(req)
        except LookupError as e:  # a height or record this node does not hold
            answer = {"t": "snap_none", "why": str(e)[:MAX_WHY]}
        answer["id"] = req.req_id
        if self._tamper is not None:
            answer = self._tamper(peer, answer)
        try:
            self._send(peer, answer)
        except (KeyError, ValueError) as e:  # the peer left, or an answer over the frame cap (a bug)
            log.error("could not answer a state-sync request: %s", e)

    def _allow(self, peer: str) -> bool:
        now = time.monotonic()
        recent = self._served.setdefault(peer, deque())
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        if len(recent) >= SERVE_PER_S:
            return False
        recent.append(now)
        return True

    def _answer(self, req: SnapRequest) -> dict[str, Any]:
        source = self._reader()
        if req.kind == "snap_offer_req":
            return {"t": "snap_offer", "height": source.offer()}
        if req.kind == "snap_anchor_req":
            page = source.anchor(req.height, req.start)
            return {"t": "snap_anchor", "header": page.header, "certificate": page.certificate,
                    "changes": page.changes, "total": page.total_changes}
        if req.kind == "snap_window_req":
            return {"t": "snap_window", "summaries": source.window(req.start, req.height)}
        chunk = source.state_chunk(req.height, req.lo, req.limit)
        return {"t": "snap_chunk", "chunk": chunk.to_plain()}
