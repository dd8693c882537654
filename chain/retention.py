"""How many past versions of the state tree a store keeps (docs/operations.md, Retention).

Each block's state-tree update writes new nodes under its own height and marks the nodes it
replaced (chain/smt.py, z/ records). A store that prunes deletes, as it commits, every node that
left the tree at or below its horizon P: the trees of every height >= P stay whole (provable,
and servable to a joining node), older ones are gone. The state records (s/), the blocks, the
receipts and the indexes are never pruned; nor is anything the audit needs to re-execute, which
replays from the genesis and recomputes every root.

The horizon never passes the state a joining node may sync from: snapshot heights are the
multiples of the snapshot interval (node config `state_snapshot_interval`, SNAPSHOT_INTERVAL by
default), and the store keeps the latest two below its head, so a sync whose base was the head
when it started has at least that many heights to finish.
"""

from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT_INTERVAL = 1_000
# The horizon moves by a whole snapshot interval at once; a commit prunes at most this many
# heights' retired nodes, so the jump is spread over the next commits. Pruned in one batch, the
# 100 heights of the 1M bench's interval (~6,000 deleted nodes a height) stalled each node's
# commit for 8-12 s, long enough to change views (docs/performance.md, "The 1,000,000-tx run with
# a pruning node").
PRUNE_HEIGHTS_PER_COMMIT = 4


@dataclass(frozen=True)
class Retention:
    """`keep` None: archive, every state version kept. Otherwise the states of the last `keep`
    heights (the head's included) are kept, and the two latest snapshot heights."""

    keep: int | None = None
    snapshot_interval: int = SNAPSHOT_INTERVAL

    def __post_init__(self) -> None:
        # the head's own tree is what the next block is executed on: at least that one stays
        if self.keep is not None and (type(self.keep) is not int or self.keep < 1):
            raise ValueError("retention: keep the state of at least 1 height (the head's), or None: archive")
        if type(self.snapshot_interval) is not int or self.snapshot_interval < 1:
            raise ValueError("retention: the snapshot interval is a positive number of heights")

    @property
    def archive(self) -> bool:
        return self.keep is None

    def next_state_from(self, state_from: int, head: int) -> int:
        """The first height whose tree stays whole once `head` is committed, from `state_from`
        before it: towards the horizon, PRUNE_HEIGHTS_PER_COMMIT heights at most (pruning later
        than the horizon allows is always safe; it never moves back)."""
        return max(state_from, min(self.horizon(head), state_from + PRUNE_HEIGHTS_PER_COMMIT))

    def horizon(self, head: int) -> int:
        """The first height whose state tree is kept whole when the head is at `head`."""
        if self.keep is None:
            return 0
        recent = head - self.keep + 1
        interval = self.snapshot_interval
        return max(0, min(recent, snapshot_height(head, interval) - interval))


ARCHIVE = Retention(None)


def snapshot_height(head: int, interval: int = SNAPSHOT_INTERVAL) -> int:
    """The latest height at or below head from which a joining node may sync its state."""
    return head - head % interval
