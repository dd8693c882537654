"""The authenticated state: a compact sparse Merkle tree over 256-bit paths H(key).

A leaf is `H(0x00 || H(key) || H(value))`; an inner node is `H(0x01 || left || right)`; an
empty subtree is 32 zero bytes. A subtree holding a single leaf is that leaf, wherever it sits,
so a tree of N random keys is about log2(N) deep rather than 256. Distinct tag bytes keep a leaf
from ever posing as an inner node.

Storage (keys are versioned by the height that wrote them, so that new nodes sort together and
the database's compactions do not rewrite old ones again and again: docs/performance.md, Store layout):

    n/<version:8><node hash>       a node written at height `version`: a leaf's 65-byte preimage,
                                   or an inner node's 65-byte preimage followed by the versions of
                                   its two children (8 bytes each), 81 bytes
    r/<height:012d>                the root of the state at that height: its version (8 bytes) and
                                   its hash (32); written for every height, 0 being the genesis
    l/<version:8><leaf hash>       the key and value a leaf node n/<version><leaf hash> stands for
                                   (`leaf_data`): the whole state of a height is listed from its
                                   tree alone, in path order (state snapshots, chain/snapshot.py;
                                   the audit of a synced store's base); pruned with its leaf
    z/<height:8>                   the nodes that left the tree at that height (replaced or
                                   removed), one record per height: the number of leaves among
                                   them (4 bytes), then each leaf, then each inner node, as
                                   <version:8><hash>, 40 bytes each. Only a leaf has an l/ record
                                   to delete with it: a delete of an absent key still writes a
                                   tombstone, and most nodes a block retires are inner ones.
                                   Such a node belongs to the states of
                                   heights version .. height-1 only, so a store keeping the states
                                   from height P on may delete it once height <= P (chain/store.py,
                                   prune). One record, not one per node: a block retires thousands
                                   of nodes, and each record is a write of its own

Hashes are as before: the version is where a node is stored, never part of what it commits to,
so state roots and proofs do not depend on the layout. A node is read by (version, hash), and
every parent says where its children are, so a reader walks down from a height's root record.

`update` takes a whole block's changes at once, sorted by path, and walks each affected path
once; it reads nodes through a function and returns the records to write, so the caller puts them
in the block's single write batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chain.errors import ChainError

LEAF = b"\x00"
INNER = b"\x01"
EMPTY = bytes(32)
EMPTY_ROOT = EMPTY.hex()
NODE_PREFIX = b"n/"
ROOT_PREFIX = b"r/"
STALE_PREFIX = b"z/"
LEAF_DATA_PREFIX = b"l/"
PREFIXES = (NODE_PREFIX, ROOT_PREFIX, STALE_PREFIX, LEAF_DATA_PREFIX)
MAX_KEY_BYTES = 0xFFFF  # a leaf's key length is written in two bytes (leaf_data)
MAX_DEPTH = 256
NO_VERSION = bytes(8)  # the version the empty subtree is "at" (it is never stored)

NodeReader = Callable[[bytes], bytes | None]  # store key (n/..., r/...) -> its record
RootRef = tuple[bytes, bytes]  # (root hash, version bytes of the root node)
EMPTY_REF_ROOT: RootRef = (EMPTY, NO_VERSION)


class SmtError(ChainError, ValueError):
    """A node the tree needs is missing or malformed: the store is damaged (or pruned there)."""


_sha256 = hashlib.sha256  # called directly on the update's hot path (a wrapper's call is a fifth of a join)


def _sha(data: bytes) -> bytes:
    return _sha256(data).digest()


def version_bytes(height: int) -> bytes:
    return height.to_bytes(8, "big")


def node_key(node_hash: bytes, version: bytes) -> bytes:
    return NODE_PREFIX + version + node_hash


def root_key(height: int) -> bytes:
    return b"%s%012d" % (ROOT_PREFIX, height)


def stale_key(height: int) -> bytes:
    """The z/ record of the nodes that left the tree at `height`."""
    return STALE_PREFIX + version_bytes(height)


def stale_height(key: bytes) -> int:
    """The height at which the nodes a z/ record names left the tree."""
    return int.from_bytes(key[2:10], "big")


def retired_record(leaves: list[bytes], inner: list[bytes]) -> bytes:
    """The z/ record of the nodes a height retired, each as <version><hash>: the leaves first."""
    return len(leaves).to_bytes(4, "big") + b"".join(leaves) + b"".join(inner)


def retired_keys(record: bytes) -> list[bytes]:
    """What a z/ record's nodes hold in a store: each node's n/ key and, for a leaf, its l/ key
    (an inner node has none). SmtError for a malformed record."""
    if len(record) < 4 or (len(record) - 4) % 40:
        raise SmtError("a retired-node record (z/) is not a count and a whole number of <version><hash> entries")
    leaves_end = 4 + 40 * int.from_bytes(record[:4], "big")
    if leaves_end > len(record):
        raise SmtError("a retired-node record (z/) counts more leaves than it lists")
    where = [record[i : i + 40] for i in range(4, len(record), 40)]
    return [NODE_PREFIX + w for w in where] + [LEAF_DATA_PREFIX + w for w in where[: (leaves_end - 4) // 40]]


def leaf_data_key(leaf: bytes, version: bytes) -> bytes:
    return LEAF_DATA_PREFIX + version + leaf


def leaf_data(key: bytes, value: bytes) -> bytes:
    """The l/ record of a leaf: its key's length (2 bytes, big-endian), the key, the value."""
    if len(key) > MAX_KEY_BYTES:
        raise SmtError(f"a state key of {len(key)} bytes; at most {MAX_KEY_BYTES}")
    return len(key).to_bytes(2, "big") + key + value


def split_leaf_data(raw: bytes) -> tuple[bytes, bytes]:
    """(key, value) of an l/ record; raises SmtError for one too short to hold its key."""
    if len(raw) < 2 or len(raw) < 2 + int.from_bytes(raw[:2], "big"):
        raise SmtError("a leaf-data record (l/) is shorter than the key it announces")
    n = int.from_bytes(raw[:2], "big")
    return raw[2 : 2 + n], raw[2 + n :]


def leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    return _sha(LEAF + key_hash + value_hash)


def root_at(read: NodeReader, height: int) -> RootRef:
    """Where the root of the state at `height` is stored (SmtError: not kept, or damaged)."""
    raw = read(root_key(height))
    if raw is None or len(raw) != 40:
        raise SmtError(f"the state tree's root record of height {height} is missing (pruned?) or malformed")
    return raw[8:], raw[:8]


def check_root(read: NodeReader, height: int, state_root: str) -> None:
    """Raise SmtError unless the stored tree of `height` has a root record naming `state_root` and
    a root node that hashes to it (a node's open-time check of its head: constant time)."""
    if state_root == EMPTY_ROOT:
        return
    h, version = root_at(read, height)
    if h.hex() != state_root:
        raise SmtError(f"the state tree's root record of height {height} names another root")
    if _sha(load_node(read, h, version)[:65]) != h:
        raise SmtError(f"the state tree's root node of height {height} does not hash to its state root")


def root_record(root: RootRef) -> bytes:
    return root[1] + root[0]


def node_keys(read: NodeReader, root: RootRef) -> Iterator[bytes]:
    """The store key of every node of the tree stored at `root`, parents first: what a store must
    hold for that state version (a state-sync server sends these; the retention tests check that
    pruning keeps exactly them)."""
    todo = [root]
    while todo:
        h, version = todo.pop()
        if h == EMPTY:
            continue
        yield NODE_PREFIX + version + h
        raw = load_node(read, h, version)
        if raw[:1] == INNER:
            todo += [(raw[1:33], raw[65:73]), (raw[33:65], raw[73:81])]


def _bit(path: bytes, depth: int) -> int:
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


# A subtree as the update sees it: (its hash, its (key_hash, value_hash) if it is a single leaf
# (None: an inner node or empty; _UNKNOWN: not read, see `update`), the version its node is stored
# at). A plain tuple: the update makes one per touched node, and a frozen dataclass's constructor
# cost a fifth of the update's time.
_UNKNOWN = (b"", b"")
_Ref = tuple[bytes, tuple[bytes, bytes] | None, bytes]
_EMPTY_REF: _Ref = (EMPTY, None, NO_VERSION)


def load_node(read: NodeReader, h: bytes, version: bytes) -> bytes:
    raw = read(NODE_PREFIX + version + h)
    if raw is None or not ((len(raw) == 65 and raw[:1] == LEAF) or (len(raw) == 81 and raw[:1] == INNER)):
        raise SmtError(
            f"state tree node {h.hex()[:16]}… of version {int.from_bytes(version, 'big')} is missing or malformed"
        )
    return raw


class TreeWrites(dict[bytes, bytes]):
    """The records an update writes (n/, l/, z/, r/), with `nodes`, those of its new nodes (n/)
    alone: a node's cache takes them as they are, without a pass over the others; and `retired`,
    where the stored nodes it replaced are (<version><hash>, as in the z/ record): the next blocks
    will not read them."""

    __slots__ = ("nodes", "retired")

    def __init__(self, nodes: dict[bytes, bytes], others: dict[bytes, bytes], retired: list[bytes]) -> None:
        super().__init__(nodes)
        self.update(others)
        self.nodes = nodes
        self.retired = retired


class _Updater:
    def __init__(self, read: NodeReader, height: int, data: dict[bytes, bytes] | None = None) -> None:
        self.read = read
        self.version = version_bytes(height)
        self.nodes: dict[bytes, bytes] = {}  # n/ records
        self.writes: dict[bytes, bytes] = {}  # the others
        # <version><hash> of each stored node this update replaces: leaves (with l/ records) and inner nodes
        self.retired_leaves: list[bytes] = []
        self.retired_inner: list[bytes] = []
        # key hash -> the l/ record of the changes' leaves; None: write no l/ records
        self.data = data

    def put_leaf(self, kh: bytes, vh: bytes) -> _Ref:
        pre = LEAF + kh + vh
        h = _sha256(pre).digest()
        self.nodes[NODE_PREFIX + self.version + h] = pre
        if self.data is not None:
            self.writes[LEAF_DATA_PREFIX + self.version + h] = self.data[kh]
        return (h, (kh, vh), self.version)

    def join(self, left: _Ref, right: _Ref) -> _Ref:
        # collapse: a subtree whose only content is one leaf is that leaf
        if left[0] == EMPTY:
            if right[0] == EMPTY:
                return right
            right = self._known(right)
            if right[1] is not None:
                return right
        elif right[0] == EMPTY:
            left = self._known(left)
            if left[1] is not None:
                return left
        pre = INNER + left[0] + right[0]
        h = _sha256(pre).digest()
        self.nodes[NODE_PREFIX + self.version + h] = pre + left[2] + right[2]
        return (h, None, self.version)

    def _known(self, ref: _Ref) -> _Ref:
        """ref with its leaf-ness read, if the update left it unread."""
        if ref[1] is not _UNKNOWN:
            return ref
        raw = load_node(self.read, ref[0], ref[2])
        return (ref[0], (raw[1:33], raw[33:65]) if raw[:1] == LEAF else None, ref[2])

    def build(self, depth: int, items: list[tuple[bytes, bytes]], kept: _Ref | None = None) -> _Ref:
        """A subtree from scratch; items are sorted (key_hash, value_hash), all distinct. `kept` is
        a stored leaf among them that stays where it is stored (see `update`)."""
        if not items:
            return _EMPTY_REF
        if len(items) == 1:
            if kept is not None and kept[1] == items[0]:
                return kept
            return self.put_leaf(*items[0])
        split = _split(items, depth)
        return self.join(self.build(depth + 1, items[:split], kept), self.build(depth + 1, items[split:], kept))

    def update(self, ref_hash: bytes, version: bytes, depth: int, items: list[tuple[bytes, bytes | None]]) -> _Ref:
        """The subtree stored at (version, ref_hash) with the sorted changes applied (value_hash
        None deletes). Every stored node it replaces is retired. A subtree no change reaches is not
        read: whether it is a single leaf matters only when its sibling empties (`join`), and
        reading every untouched sibling doubled the reads of an update."""
        if not items:
            return _untouched(ref_hash, version)
        if ref_hash == EMPTY:
            return self.build(depth, [(k, v) for k, v in items if v is not None])
        raw = load_node(self.read, ref_hash, version)
        if raw[:1] == LEAF:
            kh, vh = raw[1:33], raw[33:]
            merged = {k: v for k, v in items}
            kept: _Ref | None = None
            if kh in merged:
                self.retired_leaves.append(version + ref_hash)  # changed or removed
            else:
                # untouched, only joined by new siblings: the leaf stays where it is stored (its
                # hash does not depend on its depth), so neither it nor its data (l/) is written again
                merged[kh] = vh
                kept = (ref_hash, (kh, vh), version)
            return self.build(depth, sorted((k, v) for k, v in merged.items() if v is not None), kept)
        self.retired_inner.append(version + ref_hash)  # replaced by what follows
        if depth >= MAX_DEPTH:
            raise SmtError("state tree deeper than 256 levels")
        if len(items) == 1:  # most paths below the top levels carry one change
            kh = items[0][0]
            split = 1 - ((kh[depth >> 3] >> (7 - (depth & 7))) & 1)  # index of the first item going right
        else:
            split = _split(items, depth)
        # a side no change reaches is passed on unread, without a call (half the calls of an update)
        if split:
            left = self.update(raw[1:33], raw[65:73], depth + 1, items[:split])
        else:
            left = _untouched(raw[1:33], raw[65:73])
        if split < len(items):
            right = self.update(raw[33:65], raw[73:81], depth + 1, items[split:])
        else:
            right = _untouched(raw[33:65], raw[73:81])
        return self.join(left, right)


def _untouched(h: bytes, version: bytes) -> _Ref:
    """A stored subtree no change reaches, as `update` returns it: not read (`_UNKNOWN`)."""
    return _EMPTY_REF if h == EMPTY else (h, _UNKNOWN, version)


def _split(items: list[tuple[bytes, Any]], depth: int) -> int:
    """Index of the first item whose path has bit `depth` set (items sorted by path)."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if _bit(items[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


def update(
    root: RootRef, changes: Mapping[bytes, bytes | None], read: NodeReader, height: int
) -> tuple[str, TreeWrites]:
    """(new root hash, records to write) after setting each key to its value (None deletes) in the
    block of `height`: the new nodes (n/) and their leaves' data (l/), the record of the retired
    ones (z/, if any) and the root record r/<height>."""
    items: list[tuple[bytes, bytes | None]] = []
    data: dict[bytes, bytes] = {}
    for k, v in changes.items():
        kh = _sha(k)
        if v is None:
            items.append((kh, None))
        else:
            items.append((kh, _sha(v)))
            data[kh] = leaf_data(k, v)
    items.sort()
    updater = _Updater(read, height, data)
    new = updater.update(root[0], root[1], 0, items)
    updater.writes[root_key(height)] = root_record((new[0], new[2]))
    retired = updater.retired_leaves + updater.retired_inner
    if retired:
        updater.writes[stale_key(height)] = retired_record(updater.retired_leaves, updater.retired_inner)
    return new[0].hex(), TreeWrites(updater.nodes, updater.writes, retired)


# -- proofs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """The siblings from the root down to where the key's path ends, and what ends it.

    `leaf` is None when the path ends in an empty subtree; otherwise it is the leaf found
    there: the key's own (inclusion) or another key's sharing the path so far (non-inclusion).
    """

    siblings: tuple[bytes, ...]
    leaf: tuple[bytes, bytes] | None

    def to_plain(self) -> dict[str, Any]:
        return {
            "siblings": [s.hex() for s in self.siblings],
            "leaf": None if self.leaf is None else {"key_hash": self.leaf[0].hex(), "value_hash": self.leaf[1].hex()},
        }

    @classmethod
    def from_plain(cls, obj: Any) -> Proof:
        if type(obj) is not dict or set(obj) != {"siblings", "leaf"}:
            raise ValueError('a state proof is {"siblings": [...], "leaf": null | {...}}')
        sibs = obj["siblings"]
        if type(sibs) is not list or len(sibs) > MAX_DEPTH:
            raise ValueError("siblings: a list of at most 256 hashes")
        siblings = tuple(_hex32(s, f"siblings[{i}]") for i, s in enumerate(sibs))
        leaf = obj["leaf"]
        if leaf is None:
            return cls(siblings, None)
        if type(leaf) is not dict or set(leaf) != {"key_hash", "value_hash"}:
            raise ValueError('leaf: null or {"key_hash", "value_hash"}')
        return cls(siblings, (_hex32(leaf["key_hash"], "leaf.key_hash"), _hex32(leaf["value_hash"], "leaf.value_hash")))


def _hex32(s: Any, where: str) -> bytes:
    if type(s) is not str or len(s) != 64 or s != s.lower():
        raise ValueError(f"{where}: 64 lowercase hex characters")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise ValueError(f"{where}: 64 lowercase hex characters") from None


def prove(root: RootRef, key: bytes, read: NodeReader) -> Proof:
    """The proof of key's value (or absence) under the root stored at `root` (`root_at`)."""
    path = _sha(key)
    h, version = root
    siblings: list[bytes] = []
    depth = 0
    while h != EMPTY:
        raw = load_node(read, h, version)
        if raw[:1] == LEAF:
            return Proof(tuple(siblings), (raw[1:33], raw[33:]))
        if depth >= MAX_DEPTH:
            raise SmtError("state tree deeper than 256 levels")
        if _bit(path, depth):
            siblings.append(raw[1:33])
            h, version = raw[33:65], raw[73:81]
        else:
            siblings.append(raw[33:65])
            h, version = raw[1:33], raw[65:73]
        depth += 1
    return Proof(tuple(siblings), None)


def verify_proof(root: str, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True iff proof shows key holding value (or, for None, absent) under root. Pure."""
    path = _sha(key)
    depth = len(proof.siblings)
    if depth > MAX_DEPTH:
        return False
    if proof.leaf is None:
        if value is not None:
            return False
        h = EMPTY
    else:
        kh, vh = proof.leaf
        if value is not None:
            if kh != path or vh != _sha(value):
                return False
        else:
            # another key's leaf ends our path: it must share the path so far and not be ours
            if kh == path or any(_bit(kh, d) != _bit(path, d) for d in range(depth)):
                return False
        h = leaf_hash(kh, vh)
    for d in range(depth - 1, -1, -1):
        sib = proof.siblings[d]
        h = _sha(INNER + sib + h) if _bit(path, d) else _sha(INNER + h + sib)
    return h.hex() == root


def get(root: RootRef, key: bytes, read: NodeReader) -> bytes | None:
    """H(value) of key under root, or None if absent (the values themselves live elsewhere)."""
    proof = prove(root, key, read)
    if proof.leaf is not None and proof.leaf[0] == _sha(key):
        return proof.leaf[1]
    return None
