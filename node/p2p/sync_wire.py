"""The state-sync messages between validators (docs/protocol.md, "State sync").

Like the other data frames they carry a `"t"` field and no signature of their own: the link is
authenticated and sealed, and everything they carry is verified on its own (headers by their
certificates, window summaries by hash links, chunks against the state root). Each request
carries an `id` the answer repeats, so answers from several peers in flight are told apart.

    {"t": "snap_offer_req", "id"}                         -> {"t": "snap_offer", "id", "height"}
    {"t": "snap_anchor_req", "id", "height", "start"}     -> {"t": "snap_anchor", "id", "header",
                                                              "certificate", "changes", "total"}
    {"t": "snap_window_req", "id", "base", "top"}         -> {"t": "snap_window", "id", "summaries"}
    {"t": "snap_chunk_req", "id", "height", "lo", "limit"} -> {"t": "snap_chunk", "id", "chunk"}
    any request                                            -> {"t": "snap_none", "id", "why"}

`snap_none` says the peer cannot serve it (a height it does not hold); the asker goes to another
peer. Parsing raises only WireError; every list is bounded (chain/sync_anchor.py, chain/snapshot.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.snapshot import SnapshotError, StateChunk
from chain.sync_anchor import MAX_CHANGES_PER_PAGE, MAX_WINDOW_SUMMARIES
from node.p2p.messages import WireError

MAX_WHY = 512
REQUESTS = frozenset({"snap_offer_req", "snap_anchor_req", "snap_window_req", "snap_chunk_req"})
ANSWERS = frozenset({"snap_offer", "snap_anchor", "snap_window", "snap_chunk", "snap_none"})
_FIELDS = {
    "snap_offer_req": {"t", "id"},
    "snap_anchor_req": {"t", "id", "height", "start"},
    "snap_window_req": {"t", "id", "base", "top"},
    "snap_chunk_req": {"t", "id", "height", "lo", "limit"},
    "snap_offer": {"t", "id", "height"},
    "snap_anchor": {"t", "id", "header", "certificate", "changes", "total"},
    "snap_window": {"t", "id", "summaries"},
    "snap_chunk": {"t", "id", "chunk"},
    "snap_none": {"t", "id", "why"},
}


def is_sync_message(obj: Any) -> bool:
    return type(obj) is dict and obj.get("t") in _FIELDS


@dataclass(frozen=True)
class SnapRequest:
    kind: str
    req_id: int
    height: int = 0  # offer: unused; anchor, chunk: the base; window: the base
    start: int = 0  # anchor: the first change; window: the top height
    lo: int = 0  # chunk: the range asked for
    limit: int = 0


@dataclass(frozen=True)
class SnapAnswer:
    kind: str
    req_id: int
    body: dict[str, Any]  # the answer's fields past t and id, shape-checked
    chunk: StateChunk | None = None  # snap_chunk: parsed, not yet verified


SyncMessage = SnapRequest | SnapAnswer


def _int(obj: dict[str, Any], name: str, lo: int = 0) -> int:
    v = obj.get(name)
    if type(v) is not int or v < lo:
        raise WireError(f"{obj.get('t')}.{name}: an integer >= {lo}")
    return v


def _path(obj: dict[str, Any], name: str) -> int:
    v = obj.get(name)
    if type(v) is not str or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise WireError(f"{obj.get('t')}.{name}: a path, 64 lowercase hex characters")
    return int(v, 16)


def path_hex(p: int) -> str:
    return p.to_bytes(32, "big").hex()


def parse_sync(obj: Any) -> SyncMessage:
    if type(obj) is not dict or obj.get("t") not in _FIELDS:
        raise WireError("not a state-sync message")
    kind = obj["t"]
    if set(obj) != _FIELDS[kind]:
        raise WireError(f"{kind}: exactly the fields {sorted(_FIELDS[kind])}")
    req_id = _int(obj, "id")
    if kind == "snap_offer_req":
        return SnapRequest(kind, req_id)
    if kind == "snap_anchor_req":
        return SnapRequest(kind, req_id, height=_int(obj, "height", 1), start=_int(obj, "start"))
    if kind == "snap_window_req":
        return SnapRequest(kind, req_id, height=_int(obj, "base", 1), start=_int(obj, "top", 1))
    if kind == "snap_chunk_req":
        lo, limit = _path(obj, "lo"), _path(obj, "limit")
        if lo > limit:
            raise WireError("snap_chunk_req: lo above limit")
        return SnapRequest(kind, req_id, height=_int(obj, "height", 1), lo=lo, limit=limit)
    return _parse_answer(kind, req_id, obj)


def _parse_answer(kind: str, req_id: int, obj: dict[str, Any]) -> SnapAnswer:
    if kind == "snap_offer":
        return SnapAnswer(kind, req_id, {"height": _int(obj, "height")})
    if kind == "snap_none":
        why = obj["why"]
        if type(why) is not str or len(why) > MAX_WHY:
            raise WireError(f"snap_none.why: a string of at most {MAX_WHY} characters")
        return SnapAnswer(kind, req_id, {"why": why})
    if kind == "snap_anchor":
        changes = obj["changes"]
        if type(changes) is not list or len(changes) > MAX_CHANGES_PER_PAGE:
            raise WireError(f"snap_anchor.changes: a list of at most {MAX_CHANGES_PER_PAGE}")
        body = {"header": obj["header"], "certificate": obj["certificate"], "changes": changes,
                "total": _int(obj, "total")}
        return SnapAnswer(kind, req_id, body)  # header, certificate, changes: checked by verify_anchor
    if kind == "snap_window":
        summaries = obj["summaries"]
        if type(summaries) is not list or not 0 < len(summaries) <= MAX_WINDOW_SUMMARIES:
            raise WireError(f"snap_window.summaries: a list of 1..{MAX_WINDOW_SUMMARIES}")
        return SnapAnswer(kind, req_id, {"summaries": summaries})  # checked by StateSync.take_window
    try:
        chunk = StateChunk.from_plain(obj["chunk"])
    except SnapshotError as e:
        raise WireError(f"snap_chunk.chunk: {e}") from None
    return SnapAnswer(kind, req_id, {}, chunk)
