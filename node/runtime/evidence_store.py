"""A validator's durable, bounded store of equivocation evidence (node-local records of its store).

Each record is the canonical core of an `EquivocationEvidence` (node/consensus/evidence.py) in its own
meta record `m/evidence_<validator>_<kind>_<view>_<height>` (numbers zero-padded so the keys list
in order), written synced before the node goes on: evidence that a validator attacked the chain
must survive a crash. Bounds: one record per (validator, kind, view, height) -- the first pair
seen is proof enough -- and at most MAX_RECORDS records and MAX_BYTES bytes in all (a record
holds two consensus messages, about a kilobyte: blocks travel beside PRE-PREPAREs, not inside
them, but a bound must not rest on that); past the cap new evidence is logged
but not stored, and the oldest records, the ones members may already have cited, stay.

Serving adds the links from the genesis to the validator set of the record's height, read from
the chain (contracts.proofs), so the answer verifies offline with `verify_evidence`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chain.encoding import EncodingError, decode
from chain.store import Store
from contracts.proofs import certified, validator_changes
from node.consensus.evidence import EquivocationEvidence, EvidenceError, parse_core
from node.errors import NodeError

log = logging.getLogger("titlechain.node")

META_PREFIX = "evidence_"
MAX_RECORDS = 256
MAX_BYTES = 16 * 1024 * 1024


class EvidenceStoreError(NodeError, RuntimeError):
    """A stored record cannot be read back: the data dir is damaged."""


def meta_name(key: tuple[str, str, int, int]) -> str:
    validator, kind, view, height = key
    return f"{META_PREFIX}{validator}_{kind}_{view:020d}_{height:020d}"


@dataclass(frozen=True)
class Listed:
    total: int
    records: list[dict[str, Any]]


class EvidenceStore:
    def __init__(self, store: Store, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES) -> None:
        self.store = store
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._names: list[str] = []
        self._bytes = 0
        self.by_validator: dict[str, int] = {}
        for name, raw in self._iterate():
            ev = self._parse(name, raw)
            self._names.append(name)
            self._bytes += len(raw)
            self.by_validator[ev.validator] = self.by_validator.get(ev.validator, 0) + 1

    def __len__(self) -> int:
        return len(self._names)

    def _iterate(self) -> list[tuple[str, bytes]]:
        prefix = b"m/" + META_PREFIX.encode()
        return [(key[2:].decode(), raw) for key, raw in self.store.iterate(prefix)]

    @staticmethod
    def _parse(name: str, raw: bytes) -> EquivocationEvidence:
        try:
            return parse_core(decode(raw))
        except (EncodingError, EvidenceError) as e:
            raise EvidenceStoreError(f"evidence record {name} is damaged: {e}") from None

    def add(self, ev: EquivocationEvidence) -> bool:
        """Store ev durably unless its key is stored already or the store is full; True if stored.
        A failed write raises (StoreError): the caller treats it as fatal, like any failed write."""
        name = meta_name(ev.key)
        if self.store.get_meta(name) is not None:
            return False
        raw = ev.encode_core()
        if len(self._names) >= self.max_records or self._bytes + len(raw) > self.max_bytes:
            log.error(
                "evidence store full (%d records, %d bytes): not storing %s evidence against %s… "
                "at view %d height %d",
                len(self._names), self._bytes, ev.kind, ev.validator[:12], ev.view, ev.height,
            )
            return False
        self.store.put_meta(name, raw)
        self._names.append(name)
        self._names.sort()
        self._bytes += len(raw)
        self.by_validator[ev.validator] = self.by_validator.get(ev.validator, 0) + 1
        return True

    def listing(
        self, offset: int, limit: int, validator: str | None = None, max_bytes: int = 8 * 1024 * 1024
    ) -> Listed:
        """Full records in key order from `offset`, at most `limit` and about `max_bytes` of cores
        (one record always fits); records whose links are not yet committed here are left out."""
        names = [n for n in self._names if validator is None or n.startswith(f"{META_PREFIX}{validator}_")]
        out: list[dict[str, Any]] = []
        size = 0
        for name in names[offset:]:
            if len(out) >= limit or (out and size >= max_bytes):
                break
            raw = self.store.get_meta(name)
            if raw is None:
                raise EvidenceStoreError(f"evidence record {name} vanished")
            record = self.full_record(self._parse(name, raw))
            if record is not None:
                out.append(record)
                size += len(raw)
        return Listed(len(names), out)

    def full_record(self, ev: EquivocationEvidence) -> dict[str, Any] | None:
        """The self-verifying record, or None while the block at height-1 is not committed here."""
        changes = validator_changes(self.store, ev.height)
        last = changes[-1]["header"]["height"] if changes else 0
        if ev.height == 1 or last == ev.height - 1:
            anchor = None
        elif self.store.height >= ev.height - 1:
            anchor = certified(self.store, ev.height - 1)
        else:
            return None
        return ev.to_plain(changes, anchor)
