"""The authenticated state: a compact sparse Merkle tree over 256-bit paths H(key).

A path is read four bits (a nibble) a level, so an inner node has sixteen children. A leaf is
`H(0x00 || H(key) || H(value))`; an inner node is `H(0x02 || bitmap || the hashes of its non-empty
children)`, the bitmap two bytes (big-endian) with bit i set for a non-empty child i, the hashes in
nibble order; an empty subtree is 32 zero bytes. A subtree holding a single leaf is that leaf,
wherever it sits, so a tree of N random keys is about log16(N) deep rather than 64. Distinct tag
bytes keep a leaf from ever posing as an inner node (0x01 was the binary tree's inner tag, before
proof format 4), and the bitmap fixes how many hashes follow, so a preimage reads one way only.

Why the bitmap, not all sixteen hashes with zeros for the empty ones (proof format 4): most inner
nodes of a large tree sit on its lowest level and have two or three children, so a record of all
sixteen was four fifths zeros, and every byte of it was written to the log, the memtable, the
flush and each merge, and held in the caches (docs/performance.md, "Inner nodes without their
empty children").

Why sixteen children, not two: every level of a path is a node read from the cache or the store,
a record in the block's batch, a cache entry to replace and, on a pruning node, a delete; a
binary tree has four times the levels. Measured, the replica's CPU per tx fell by a third and the
consortium bench's throughput rose by a fifth to two fifths (docs/performance.md, "The 16-ary
state tree"), at the price of proofs three times as long (~4.5 KB of JSON at 200,000 keys).

Storage (keys are versioned by the height that wrote them, so that new nodes sort together and
the database's compactions do not rewrite old ones again and again: docs/performance.md, Store layout):

    n/<version:8><node hash>       a node written at height `version`: a leaf's 65-byte preimage,
                                   or an inner node's preimage (3 + 32k bytes for k non-empty
                                   children) followed by those children's versions in the same
                                   order (8 bytes each): 3 + 40k bytes
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from chain.errors import ChainError

LEAF = b"\x00"
INNER = b"\x02"
EMPTY = bytes(32)
EMPTY_ROOT = EMPTY.hex()
NODE_PREFIX = b"n/"
ROOT_PREFIX = b"r/"
STALE_PREFIX = b"z/"
LEAF_DATA_PREFIX = b"l/"
PREFIXES = (NODE_PREFIX, ROOT_PREFIX, STALE_PREFIX, LEAF_DATA_PREFIX)
MAX_KEY_BYTES = 0xFFFF  # a leaf's key length is written in two bytes (leaf_data)
ARITY = 16  # children of an inner node: a path is read a nibble (4 bits) a level
MAX_DEPTH = 64  # levels of nibbles in a 256-bit path
LEAF_BYTES = 65  # a leaf's record: its preimage
INNER_HEAD = 3  # an inner record's tag and bitmap; then 32 bytes a child's hash, then 8 its version
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
    if _sha(preimage(load_node(read, h, version))) != h:
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
            todo += children(raw)


def nibble(path: bytes, depth: int) -> int:
    """The child of the node at `depth` that a path goes down to: its nibble there."""
    b = path[depth >> 1]
    return b & 15 if depth & 1 else b >> 4


def _bitmap(raw: bytes) -> int:
    return raw[1] << 8 | raw[2]


def _hashed_end(raw: bytes) -> int:
    """Where an inner record's preimage ends: its tag, bitmap and the non-empty children's hashes."""
    return INNER_HEAD + 32 * _bitmap(raw).bit_count()


def _inner_head(nibbles: Iterable[int]) -> bytes:
    """An inner node's tag and the bitmap of its non-empty children."""
    bitmap = 0
    for i in nibbles:
        bitmap |= 1 << i
    return INNER + bitmap.to_bytes(2, "big")


def _slot(bitmap: int, i: int) -> tuple[int, int]:
    """Where child i's hash and version are, or go, in an inner record of this bitmap: after those
    of the non-empty children before it."""
    j = (bitmap & ((1 << i) - 1)).bit_count()
    return INNER_HEAD + 32 * j, INNER_HEAD + 32 * bitmap.bit_count() + 8 * j


def child(raw: bytes, i: int) -> tuple[bytes, bytes]:
    """(hash, version) of an inner record's child i: (EMPTY, NO_VERSION) for an empty one."""
    bitmap = _bitmap(raw)
    if not bitmap >> i & 1:
        return EMPTY, NO_VERSION
    h, v = _slot(bitmap, i)
    return raw[h : h + 32], raw[v : v + 8]


def children(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(hash, version) of an inner record's non-empty children, in nibble order."""
    k = _bitmap(raw).bit_count()
    v = INNER_HEAD + 32 * k
    return [(raw[INNER_HEAD + 32 * j : INNER_HEAD + 32 + 32 * j], raw[v + 8 * j : v + 8 + 8 * j]) for j in range(k)]


def inner_preimage(hashes: list[bytes]) -> bytes:
    """What an inner node's hash is the hash of, from its sixteen children's hashes (EMPTY for an
    empty one): the tag, the bitmap of the non-empty ones, their hashes."""
    live = [i for i, h in enumerate(hashes) if h != EMPTY]
    return _inner_head(live) + b"".join([hashes[i] for i in live])


def preimage(raw: bytes) -> bytes:
    """What a node's hash is the hash of: a leaf's record whole, an inner record's tag, bitmap and
    hashes."""
    return raw if raw[:1] == LEAF else raw[: _hashed_end(raw)]


# A subtree as the update sees it: (its hash, its (key_hash, value_hash) if it is a single leaf
# (None: an inner node or empty; _UNKNOWN: not read, see `update`), the version its node is stored
# at). A plain tuple: the update makes one per touched node, and a frozen dataclass's constructor
# cost a fifth of the update's time.
_UNKNOWN = (b"", b"")
_Ref = tuple[bytes, tuple[bytes, bytes] | None, bytes]
_EMPTY_REF: _Ref = (EMPTY, None, NO_VERSION)


def is_node_record(raw: bytes | None) -> TypeGuard[bytes]:
    """Whether a stored n/ record has a node's shape: a leaf's tag and length, or an inner node's
    tag, a bitmap naming at least one child, and the length that bitmap gives."""
    if raw is None:
        return False
    if raw[:1] == LEAF:
        return len(raw) == LEAF_BYTES
    return raw[:1] == INNER and len(raw) > INNER_HEAD and len(raw) == INNER_HEAD + 40 * _bitmap(raw).bit_count()


def load_node(read: NodeReader, h: bytes, version: bytes) -> bytes:
    raw = read(NODE_PREFIX + version + h)
    if not is_node_record(raw):
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
    def __init__(
        self, read: NodeReader, height: int, data: dict[bytes, bytes] | None = None, deletes: bool = False
    ) -> None:
        self.read = read
        self.version = version_bytes(height)
        self.nodes: dict[bytes, bytes] = {}  # n/ records
        self.writes: dict[bytes, bytes] = {}  # the others
        # <version><hash> of each stored node this update replaces: leaves (with l/ records) and inner nodes
        self.retired_leaves: list[bytes] = []
        self.retired_inner: list[bytes] = []
        # key hash -> the l/ record of the changes' leaves; None: write no l/ records
        self.data = data
        # whether the changes delete: only a delete can leave an inner node with a single leaf
        # under it (to collapse) or none, so the update checks for it only then
        self.deletes = deletes

    def put_leaf(self, kh: bytes, vh: bytes) -> _Ref:
        pre = LEAF + kh + vh
        h = _sha256(pre).digest()
        self.nodes[NODE_PREFIX + self.version + h] = pre
        if self.data is not None:
            self.writes[LEAF_DATA_PREFIX + self.version + h] = self.data[kh]
        return (h, (kh, vh), self.version)

    def _put_inner(self, record: bytes) -> _Ref:
        h = _sha256(memoryview(record)[: _hashed_end(record)]).digest()
        self.nodes[NODE_PREFIX + self.version + h] = record
        return (h, None, self.version)

    def join(self, children: list[_Ref]) -> _Ref:
        """The subtree of these sixteen children (in nibble order): empty if all are, the one
        child if it is a lone leaf (collapse), else a new inner node."""
        live = [c for c in children if c[0] != EMPTY]
        if not live:
            return _EMPTY_REF
        if len(live) == 1:
            only = self._known(live[0])
            if only[1] is not None:
                return only
        return self._put_inner(_inner_record([(i, c) for i, c in enumerate(children) if c[0] != EMPTY]))

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
        # two items or more: an inner node (its children hold them; none collapses into it)
        live = [(nib, self.build(depth + 1, items[start:end], kept)) for nib, start, end in _groups(items, depth)]
        return self._put_inner(_inner_record(live))

    def update(self, ref_hash: bytes, version: bytes, depth: int, items: list[tuple[bytes, bytes | None]]) -> _Ref:
        """The subtree stored at (version, ref_hash) with the sorted changes applied (value_hash
        None deletes). Every stored node it replaces is retired. A child no change reaches is not
        read: the new record keeps its hash and version as they were."""
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
            raise SmtError(f"state tree deeper than {MAX_DEPTH} levels")
        # most paths below a block's top levels carry one change
        groups = [(nibble(items[0][0], depth), 0, 1)] if len(items) == 1 else _groups(items, depth)
        changed: dict[int, _Ref] = {}
        shrunk = False
        for nib, start, end in groups:
            group = items[start:end]
            changed[nib] = self.update(*child(raw, nib), depth + 1, group)
            shrunk = shrunk or (self.deletes and any(vh is None for _, vh in group))
        if shrunk:  # the node may now hold a single leaf (collapse) or nothing
            return self.join([changed.get(i) or _untouched(*child(raw, i)) for i in range(ARITY)])
        record = raw  # the children no change reached stay as they are
        for nib, ref in changed.items():
            record = _with_child(record, nib, ref)
        return self._put_inner(record)


def _with_child(raw: bytes, i: int, ref: _Ref) -> bytes:
    """An inner record with its child i set to a non-empty subtree: replaced, or inserted in its place
    (the bitmap gains its bit). A few slices joined, whatever the children."""
    bitmap = _bitmap(raw)
    h, v = _slot(bitmap, i)
    if bitmap >> i & 1:
        return b"".join((raw[:h], ref[0], raw[h + 32 : v], ref[2], raw[v + 8 :]))
    head = INNER + (bitmap | 1 << i).to_bytes(2, "big")
    return b"".join((head, raw[INNER_HEAD:h], ref[0], raw[h:v], ref[2], raw[v:]))


def _inner_record(live: list[tuple[int, _Ref]]) -> bytes:
    """The record of an inner node from its non-empty children, (nibble, subtree) in nibble order:
    its preimage (tag, bitmap, their hashes), then their versions."""
    return _inner_head([i for i, _ in live]) + b"".join([c[0] for _, c in live]) + b"".join([c[2] for _, c in live])


def _groups(items: list[tuple[bytes, Any]], depth: int) -> list[tuple[int, int, int]]:
    """(nibble, start, end) of each run of the sorted items sharing their nibble at `depth`."""
    runs = []
    start, n = 0, len(items)
    while start < n:
        nib = nibble(items[start][0], depth)
        end = start + 1
        while end < n and nibble(items[end][0], depth) == nib:
            end += 1
        runs.append((nib, start, end))
        start = end
    return runs


def _untouched(h: bytes, version: bytes) -> _Ref:
    """A stored subtree no change reaches, as `update` returns it: not read (`_UNKNOWN`)."""
    return _EMPTY_REF if h == EMPTY else (h, _UNKNOWN, version)


def update(
    root: RootRef, changes: Mapping[bytes, bytes | None], read: NodeReader, height: int
) -> tuple[str, TreeWrites]:
    """(new root hash, records to write) after setting each key to its value (None deletes) in the
    block of `height`: the new nodes (n/) and their leaves' data (l/), the record of the retired
    ones (z/, if any) and the root record r/<height>."""
    items: list[tuple[bytes, bytes | None]] = []
    data: dict[bytes, bytes] = {}
    deletes = False
    for k, v in changes.items():
        kh = _sha(k)
        if v is None:
            items.append((kh, None))
            deletes = True
        else:
            items.append((kh, _sha(v)))
            data[kh] = leaf_data(k, v)
    items.sort()
    updater = _Updater(read, height, data, deletes)
    new = updater.update(root[0], root[1], 0, items)
    updater.writes[root_key(height)] = root_record((new[0], new[2]))
    retired = updater.retired_leaves + updater.retired_inner
    if retired:
        updater.writes[stale_key(height)] = retired_record(updater.retired_leaves, updater.retired_inner)
    return new[0].hex(), TreeWrites(updater.nodes, updater.writes, retired)


# -- proofs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof:
    """From the root down to where the key's path ends: at each level, the node's other fifteen
    children's hashes (in child order, the path's own child left out; EMPTY for an empty one),
    and what ends the path.

    `leaf` is None when the path ends in an empty child; otherwise it is the leaf found there:
    the key's own (inclusion) or another key's sharing the path so far (non-inclusion).
    """

    levels: tuple[tuple[bytes, ...], ...]
    leaf: tuple[bytes, bytes] | None

    def to_plain(self) -> dict[str, Any]:
        return {
            "levels": [["" if s == EMPTY else s.hex() for s in level] for level in self.levels],
            "leaf": None if self.leaf is None else {"key_hash": self.leaf[0].hex(), "value_hash": self.leaf[1].hex()},
        }

    @classmethod
    def from_plain(cls, obj: Any) -> Proof:
        if type(obj) is not dict or set(obj) != {"levels", "leaf"}:
            raise ValueError('a state proof is {"levels": [...], "leaf": null | {...}}')
        levels = obj["levels"]
        if type(levels) is not list or len(levels) > MAX_DEPTH:
            raise ValueError(f"levels: a list of at most {MAX_DEPTH} levels")
        parsed = []
        for i, level in enumerate(levels):
            if type(level) is not list or len(level) != ARITY - 1:
                raise ValueError(f"levels[{i}]: a list of {ARITY - 1} sibling hashes")
            parsed.append(tuple(EMPTY if s == "" else _hex32(s, f"levels[{i}][{j}]") for j, s in enumerate(level)))
        leaf = obj["leaf"]
        if leaf is None:
            return cls(tuple(parsed), None)
        if type(leaf) is not dict or set(leaf) != {"key_hash", "value_hash"}:
            raise ValueError('leaf: null or {"key_hash", "value_hash"}')
        return cls(tuple(parsed), (_hex32(leaf["key_hash"], "leaf.key_hash"), _hex32(leaf["value_hash"], "leaf.value_hash")))


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
    levels: list[tuple[bytes, ...]] = []
    depth = 0
    while h != EMPTY:
        raw = load_node(read, h, version)
        if raw[:1] == LEAF:
            return Proof(tuple(levels), (raw[1:33], raw[33:]))
        if depth >= MAX_DEPTH:
            raise SmtError(f"state tree deeper than {MAX_DEPTH} levels")
        nib = nibble(path, depth)
        levels.append(tuple(child(raw, i)[0] for i in range(ARITY) if i != nib))
        h, version = child(raw, nib)
        depth += 1
    return Proof(tuple(levels), None)


def verify_proof(root: str, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True iff proof shows key holding value (or, for None, absent) under root. Pure."""
    path = _sha(key)
    depth = len(proof.levels)
    if depth > MAX_DEPTH or any(len(level) != ARITY - 1 for level in proof.levels):
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
            if kh == path or any(nibble(kh, d) != nibble(path, d) for d in range(depth)):
                return False
        h = leaf_hash(kh, vh)
    for d in range(depth - 1, -1, -1):
        nib = nibble(path, d)
        level = proof.levels[d]
        h = _sha(inner_preimage([*level[:nib], h, *level[nib:]]))
    return h.hex() == root


def get(root: RootRef, key: bytes, read: NodeReader) -> bytes | None:
    """H(value) of key under root, or None if absent (the values themselves live elsewhere)."""
    proof = prove(root, key, read)
    if proof.leaf is not None and proof.leaf[0] == _sha(key):
        return proof.leaf[1]
    return None
