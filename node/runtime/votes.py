"""The consensus vote record in the data dir, and whose votes it holds.

The record (`m/votes`, pbft.VoteRecord) is what a restarted replica must remember so that it never
votes twice. A seat's key can change (`rotate_validator`) while its node keeps its data dir, so
the record is kept beside the public key that made it (`m/votes_key`): a node started with another
key has voted nothing under that key, and takes none of the old key's record for its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chain.crypto import KeyPair
from chain.encoding import EncodingError, decode
from chain.store import Store
from node.consensus import pbft
from node.consensus.messages import MessageError
from node.errors import NodeError

log = logging.getLogger("titlechain.node")

VOTES_RECORD = "votes"
VOTES_OWNER = "votes_key"  # absent in a data dir written before keys could rotate: the node's own


class VoteRecordError(NodeError, ValueError):
    """The record cannot be read: the node must not start (it cannot know what it voted)."""


class VoteStore:
    """Loads the record once at start-up and writes each new one durably (synced)."""

    def __init__(self, store: Store, key: KeyPair, data_dir: Path) -> None:
        self._store = store
        self._key = key
        self._data_dir = data_dir
        self._owner_written = False

    def load(self) -> pbft.VoteRecord | None:
        raw = self._store.get_meta(VOTES_RECORD)
        if raw is None:
            return None
        owner = self._store.get_meta(VOTES_OWNER)
        if owner is not None and owner != self._key.public.encode():
            # the seat's previous key voted these; this key starts afresh, in no view change
            # (starting in the view after the old key's would only keep it out of a settled view)
            log.info("the vote record holds the votes of key %s…, not this node's: this key starts afresh", owner[:12].decode())
            return None
        try:
            record = pbft.VoteRecord.from_plain(decode(raw))
        except (MessageError, EncodingError) as e:
            raise VoteRecordError(f"{self._data_dir}: the consensus vote record is damaged: {e}") from None
        vc = record.view_change
        if vc is not None and vc.sender != self._key.public:
            # a record older than VOTES_OWNER, made under the seat's previous key: this key never
            # sent that VIEW-CHANGE, and re-sending it would repeat a vote that no longer counts
            log.info("the vote record's VIEW-CHANGE was signed by %s…, not this node's key: not resent", vc.sender[:12])
            return pbft.VoteRecord(record.view, record.prepared, None, record.block)
        return record

    def save(self, record: pbft.VoteRecord) -> None:
        if not self._owner_written:
            # the owner first: a crash between the two writes then leaves another key's record
            # taken for ours (a needless view change), never ours taken for another key's
            self._store.put_meta(VOTES_OWNER, self._key.public.encode())
            self._owner_written = True
        # built from the block's own bytes: the record holds the prepared block beside its proof
        self._store.put_meta(VOTES_RECORD, record.encode())
