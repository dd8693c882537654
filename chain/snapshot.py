"""State snapshots: the authenticated state under one root, in chunks each checkable alone.

A chunk is every leaf whose path (H(key)) lies in a range [lo, hi] of the 2^256 paths, with
each leaf's key and value, plus the `outside` subtrees: the hashes of the largest subtrees that
lie wholly outside the range, in left-to-right order. From those alone the verifier rebuilds the
root (`verify_chunk`): every subtree wholly inside the range from the leaves, every subtree
wholly outside from `outside`, every subtree the range's edges cut from its sixteen children. So a
chunk that drops, adds or alters a leaf, or alters any outside hash, yields another root. Chunks
whose ranges tile the path space [0, 2^256 - 1] under one root hold the whole state, and the
nodes their verification rebuilds are exactly that tree's nodes (`StateImport`).

An outside subtree is `""` (empty), 64 hex (an inner node's hash) or 128 hex (a lone leaf:
its key hash and value hash). A lone leaf must be told apart because the tree collapses a
subtree holding one leaf into that leaf (chain/smt.py); a chunk that calls an inner node a
leaf, or the reverse, rebuilds another root.

The exporter reads the tree through `TreeReader` (a node's preimage by hash, a leaf's data by
leaf hash), the one thing it asks of a store, and cuts a chunk where the next leaf's path first
differs from the last one taken (at a nibble: the tree's levels), so a range's edges lie a few
levels down, not 64, and the outside list stays short (at most fifteen subtrees a level on each
edge). Every chunk is bounded (`MAX_CHUNK_LEAVES`, `CHUNK_TARGET_BYTES` of keys and values, one
leaf past it at most) whatever the size of the state.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chain import smt
from chain.encoding import canonical, decode
from chain.errors import ChainError

# 2: the tree's sixteen children a node (store schema 11); 3: an inner node's hash leaves its empty
# children out (store schema 12), so a chunk's outside subtrees combine into other roots
SNAPSHOT_VERSION = 3
PATH_BITS = 256
TOP = (1 << PATH_BITS) - 1  # the last path
MAX_CHUNK_LEAVES = 4096
CHUNK_TARGET_BYTES = 256 * 1024  # keys and values in one chunk; the exporter stops past this
MAX_VALUE_BYTES = 256 * 1024  # a state value above this is refused (contract values are a few KiB)
MAX_OUTSIDE = 2 * (smt.ARITY - 1) * smt.MAX_DEPTH  # two edges, each at most 15 outside subtrees a level
# the encoded chunk: every leaf up to the target plus one more of the largest size, hex-doubled
MAX_CHUNK_BYTES = 2 * (CHUNK_TARGET_BYTES + MAX_VALUE_BYTES + smt.MAX_KEY_BYTES) + MAX_OUTSIDE * 140 + 4096


class SnapshotError(ChainError, ValueError):
    """A chunk that does not verify, or snapshot input that is malformed; the message says why."""


class TreeReader(Protocol):
    """What the exporter reads of a store: the state tree's nodes and leaves' data, each by its
    hash and the version (height) that stored it (chain/smt.py), so any state version the store
    still holds can be exported."""

    def node(self, node_hash: bytes, version: bytes) -> bytes | None: ...

    def leaf(self, leaf_hash: bytes, version: bytes) -> bytes | None: ...


@dataclass(frozen=True)
class KeyReader:
    """A TreeReader over a store's raw key lookup (`n/` nodes, `l/` leaf data)."""

    get: Callable[[bytes], bytes | None]

    def node(self, node_hash: bytes, version: bytes) -> bytes | None:
        return self.get(smt.node_key(node_hash, version))

    def leaf(self, leaf_hash: bytes, version: bytes) -> bytes | None:
        return self.get(smt.leaf_data_key(leaf_hash, version))


@dataclass(frozen=True)
class StateChunk:
    """The leaves with paths in [lo, hi] of the state under `state_root`, and the outside subtrees."""

    state_root: str
    lo: int
    hi: int
    leaves: tuple[tuple[bytes, bytes], ...]  # (key, value), ascending by H(key)
    outside: tuple[str, ...]  # "" | 64 hex | 128 hex, left to right

    def to_plain(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "state_root": self.state_root,
            "lo": _path_hex(self.lo),
            "hi": _path_hex(self.hi),
            "leaves": [[k.hex(), v.hex()] for k, v in self.leaves],
            "outside": list(self.outside),
        }

    def encode(self) -> bytes:
        return canonical(self.to_plain())

    @classmethod
    def from_plain(cls, obj: Any) -> StateChunk:
        """Parse (not verify) a chunk; raises SnapshotError for anything malformed or oversized."""
        if type(obj) is not dict or set(obj) != {"v", "state_root", "lo", "hi", "leaves", "outside"}:
            raise SnapshotError("a state chunk is {v, state_root, lo, hi, leaves, outside}")
        if obj["v"] != SNAPSHOT_VERSION:
            raise SnapshotError(f"state chunk version {obj['v']!r}; this node reads version {SNAPSHOT_VERSION}")
        root = _hex(obj["state_root"], 32, "state_root")
        lo, hi = int(_hex(obj["lo"], 32, "lo"), 16), int(_hex(obj["hi"], 32, "hi"), 16)
        leaves, outside = obj["leaves"], obj["outside"]
        if type(leaves) is not list or len(leaves) > MAX_CHUNK_LEAVES + 1:
            raise SnapshotError(f"leaves: a list of at most {MAX_CHUNK_LEAVES + 1}")
        if type(outside) is not list or len(outside) > MAX_OUTSIDE:
            raise SnapshotError(f"outside: a list of at most {MAX_OUTSIDE}")
        pairs = tuple(_leaf_pair(x, i) for i, x in enumerate(leaves))
        for i, o in enumerate(outside):
            if type(o) is not str or len(o) not in (0, 64, 128) or not _is_lower_hex(o):
                raise SnapshotError(f"outside[{i}]: empty, 64 or 128 lowercase hex characters")
        return cls(root, lo, hi, pairs, tuple(outside))

    @classmethod
    def decode(cls, data: bytes) -> StateChunk:
        if len(data) > MAX_CHUNK_BYTES:
            raise SnapshotError(f"a state chunk of {len(data)} bytes; at most {MAX_CHUNK_BYTES}")
        try:
            return cls.from_plain(decode(data))
        except (ValueError, TypeError) as e:
            if isinstance(e, SnapshotError):
                raise
            raise SnapshotError(f"a state chunk that does not decode: {e}") from None


def _path_hex(p: int) -> str:
    return p.to_bytes(32, "big").hex()


_LOWER_HEX = re.compile(r"[0-9a-f]*")


def _is_lower_hex(s: str) -> bool:
    # a regex, not a loop over the characters: a chunk carries ~0.5 MB of hex, and the loop was
    # two thirds of a joining node's time (docs/performance.md, State sync)
    return _LOWER_HEX.fullmatch(s) is not None


def _hex(s: Any, nbytes: int | None, where: str) -> str:
    if type(s) is not str or (nbytes is not None and len(s) != 2 * nbytes) or len(s) % 2 or not _is_lower_hex(s):
        size = f"{2 * nbytes} " if nbytes is not None else "an even number of "
        raise SnapshotError(f"{where}: {size}lowercase hex characters")
    return s


def _leaf_pair(x: Any, i: int) -> tuple[bytes, bytes]:
    if type(x) is not list or len(x) != 2:
        raise SnapshotError(f"leaves[{i}]: a pair [key hex, value hex]")
    key = bytes.fromhex(_hex(x[0], None, f"leaves[{i}][0]"))
    value = bytes.fromhex(_hex(x[1], None, f"leaves[{i}][1]"))
    if not 0 < len(key) <= smt.MAX_KEY_BYTES or len(value) > MAX_VALUE_BYTES:
        raise SnapshotError(f"leaves[{i}]: a key of 1..{smt.MAX_KEY_BYTES} bytes, a value of at most {MAX_VALUE_BYTES}")
    return key, value


# -- the tree as the exporter walks it -----------------------------------------------------------

# the exporter's view of a subtree: its hash, its (key hash, value hash) if a lone leaf, an inner
# node's stored record (read once: it names where the children are), and its version
_Node = tuple[bytes, tuple[bytes, bytes] | None, bytes | None, bytes]
_EMPTY_NODE: _Node = (smt.EMPTY, None, None, smt.NO_VERSION)


def _load(reader: TreeReader, h: bytes, version: bytes) -> _Node:
    if h == smt.EMPTY:
        return _EMPTY_NODE
    raw = reader.node(h, version)
    if not smt.is_node_record(raw):
        raise smt.SmtError(f"state tree node {h.hex()[:16]}… is missing (pruned?) or malformed")
    return (h, (raw[1:33], raw[33:65]), None, version) if raw[:1] == smt.LEAF else (h, None, raw, version)


def _children(reader: TreeReader, node: _Node, depth: int) -> list[_Node]:
    """The sixteen children of the subtree `node` at depth (a lone leaf sits in its path's child)."""
    h, leaf, raw, _ = node
    if h == smt.EMPTY:
        return [_EMPTY_NODE] * smt.ARITY
    if leaf is not None:
        children = [_EMPTY_NODE] * smt.ARITY
        children[smt.nibble(leaf[0], depth)] = node
        return children
    assert raw is not None  # an inner node's record, read by _load
    return [_load(reader, *smt.child(raw, i)) for i in range(smt.ARITY)]


def _encode_outside(node: _Node) -> str:
    h, leaf, _, _ = node
    if h == smt.EMPTY:
        return ""
    return (leaf[0] + leaf[1]).hex() if leaf is not None else h.hex()


def _width(depth: int) -> int:
    """How many paths a subtree at `depth` covers."""
    return 1 << (PATH_BITS - 4 * depth)


def _span(depth: int, start: int) -> int:
    return start + _width(depth) - 1


def _leaf_paths(reader: TreeReader, root: smt.RootRef, lo: int, hi: int) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(key hash, value hash, version) of every leaf with its path in [lo, hi], ascending. A
    stack, not nested generators: each leaf would otherwise pass up through one per level."""
    stack = [(root[0], root[1], 0, 0)]  # (subtree hash, version, depth, first path), read when popped
    while stack:
        h, version, depth, start = stack.pop()
        if h == smt.EMPTY or _span(depth, start) < lo or start > hi:
            continue
        _, leaf, raw, _ = _load(reader, h, version)
        if leaf is not None:
            if lo <= int.from_bytes(leaf[0], "big") <= hi:
                yield leaf[0], leaf[1], version
            continue
        assert raw is not None
        width = _width(depth + 1)
        for i in range(smt.ARITY - 1, -1, -1):  # the first child popped first
            stack.append((*smt.child(raw, i), depth + 1, start + i * width))


def _outside(reader: TreeReader, ref: _Node, depth: int, start: int, lo: int, hi: int, out: list[str]) -> None:
    end = _span(depth, start)
    if end < lo or start > hi:
        out.append(_encode_outside(ref))
        return
    if lo <= start and end <= hi:
        return
    width = _width(depth + 1)
    for i, sub in enumerate(_children(reader, ref, depth)):
        _outside(reader, sub, depth + 1, start + i * width, lo, hi, out)


# -- export ----------------------------------------------------------------------------------


def export_chunk(reader: TreeReader, root: smt.RootRef, lo: int, limit: int) -> StateChunk:
    """The chunk of the state stored at `root` (smt.root_at) from path lo on, ending at limit or sooner.

    It ends sooner when it holds MAX_CHUNK_LEAVES leaves or CHUNK_TARGET_BYTES of keys and values:
    then at the path just below the first bit where the next leaf's path leaves the last one's.
    """
    if not 0 <= lo <= limit <= TOP:
        raise SnapshotError("a chunk range needs 0 <= lo <= limit < 2^256")
    top = _load(reader, *root)
    leaves: list[tuple[bytes, bytes]] = []
    last = b""
    size = 0
    hi = limit
    for kh, vh, version in _leaf_paths(reader, root, lo, limit):
        if len(leaves) >= MAX_CHUNK_LEAVES or size >= CHUNK_TARGET_BYTES:
            hi = _cut_below(last, kh)
            break
        key, value = _leaf_contents(reader, kh, vh, version)
        leaves.append((key, value))
        last = kh
        size += len(key) + len(value)
    out: list[str] = []
    _outside(reader, top, 0, 0, lo, hi, out)
    return StateChunk(root[0].hex(), lo, hi, tuple(leaves), tuple(out))


def _leaf_contents(reader: TreeReader, kh: bytes, vh: bytes, version: bytes) -> tuple[bytes, bytes]:
    leaf = smt.leaf_hash(kh, vh)
    raw = reader.leaf(leaf, version)
    if raw is None:
        raise smt.SmtError(f"the data of state leaf {leaf.hex()[:16]}… (l/) is missing")
    key, value = smt.split_leaf_data(raw)
    if smt._sha(key) != kh or smt._sha(value) != vh:
        raise smt.SmtError(f"the data of state leaf {leaf.hex()[:16]}… (l/) does not hash to the leaf")
    return key, value


def _cut_below(last: bytes, following: bytes) -> int:
    """The last path of the aligned range that holds `last` but not `following` (last < following):
    the subtree under their first differing nibble that holds `last`, and all before it."""
    a, b = int.from_bytes(last, "big"), int.from_bytes(following, "big")
    common = (PATH_BITS - (a ^ b).bit_length()) // 4  # leading nibbles the two paths share
    keep = PATH_BITS - 4 * (common + 1)  # bits below the first differing nibble
    return ((b >> keep) << keep) - 1


def iter_chunks(reader: TreeReader, root: smt.RootRef) -> Iterator[StateChunk]:
    """Every chunk of the state in path order, tiling [0, 2^256 - 1] (tests, local export)."""
    lo = 0
    while True:
        chunk = export_chunk(reader, root, lo, TOP)
        yield chunk
        if chunk.hi == TOP:
            return
        lo = chunk.hi + 1


# -- verification ------------------------------------------------------------------------------


@dataclass
class VerifiedChunk:
    """A chunk that rebuilt its root: its leaves and the tree nodes (n/ keyed) it rebuilt."""

    lo: int
    hi: int
    height: int  # the state version its nodes are keyed at
    leaves: tuple[tuple[bytes, bytes], ...]
    nodes: dict[bytes, bytes] = field(default_factory=dict)
    hashes: list[tuple[bytes, bytes]] = field(default_factory=list)  # (H(key), H(value)) of each leaf


def verify_chunk(chunk: StateChunk, state_root: str, height: int) -> VerifiedChunk:
    """Rebuild the root from the chunk alone; raises SnapshotError unless it is state_root. The
    nodes it rebuilt come keyed as the store keeps the state of `height` (version `height`)."""
    if chunk.state_root != state_root:
        raise SnapshotError("the chunk is of another state root")
    if not 0 <= chunk.lo <= chunk.hi <= TOP:
        raise SnapshotError("the chunk's range is empty or out of bounds")
    items = [(smt._sha(k), smt._sha(v)) for k, v in chunk.leaves]
    for i, (kh, _) in enumerate(items):
        if not chunk.lo <= int.from_bytes(kh, "big") <= chunk.hi:
            raise SnapshotError(f"leaves[{i}]: its path lies outside the chunk's range")
        if i and items[i - 1][0] >= kh:
            raise SnapshotError(f"leaves[{i}]: not in ascending path order, or repeated")
    builder = _Rebuild(chunk, items, height)
    got = builder.subtree(0, 0)
    if builder.outside_used != len(chunk.outside):
        raise SnapshotError("outside: more subtrees than the range leaves out")
    if got[0].hex() != state_root:
        raise SnapshotError("the chunk does not rebuild the state root")
    return VerifiedChunk(chunk.lo, chunk.hi, height, chunk.leaves, builder.updater.nodes, items)


class _Rebuild:
    def __init__(self, chunk: StateChunk, items: list[tuple[bytes, bytes]], height: int) -> None:
        self.chunk = chunk
        self.items = items
        self.paths = [int.from_bytes(kh, "big") for kh, _ in items]
        self.outside_used = 0
        self.updater = smt._Updater(lambda key: None, height)  # every node of the import at version `height`

    def subtree(self, depth: int, start: int) -> smt._Ref:
        lo, hi = self.chunk.lo, self.chunk.hi
        end = _span(depth, start)
        if end < lo or start > hi:
            return self._next_outside(depth, start)
        if lo <= start and end <= hi:
            first, stop = bisect_left(self.paths, start), bisect_right(self.paths, end)
            return self.updater.build(depth, self.items[first:stop])
        width = _width(depth + 1)
        return self.updater.join([self.subtree(depth + 1, start + i * width) for i in range(smt.ARITY)])

    def _next_outside(self, depth: int, start: int) -> smt._Ref:
        if self.outside_used >= len(self.chunk.outside):
            raise SnapshotError("outside: fewer subtrees than the range leaves out")
        raw = self.chunk.outside[self.outside_used]
        self.outside_used += 1
        # an outside subtree is rebuilt by the chunk that holds it, at the same version as ours
        if raw == "":
            return smt._EMPTY_REF
        if len(raw) == 64:
            return (bytes.fromhex(raw), None, self.updater.version)
        kh, vh = bytes.fromhex(raw[:64]), bytes.fromhex(raw[64:])
        path = int.from_bytes(kh, "big")
        if not start <= path <= _span(depth, start):  # a lone leaf lies under its own subtree
            raise SnapshotError(f"outside[{self.outside_used - 1}]: a leaf whose path is not under its subtree")
        return (smt.leaf_hash(kh, vh), (kh, vh), self.updater.version)


# -- import ------------------------------------------------------------------------------------

LeafWrites = Callable[[bytes, bytes], Mapping[bytes, bytes]]
"""(state key, value) -> the records a store keeps for it beside the tree (the contracts: its s/
value and, for an asset, its owner index); injected because chain/ knows no contract keys."""


def chunk_writes(verified: VerifiedChunk, leaf_writes: LeafWrites) -> dict[bytes, bytes]:
    """Every record a verified chunk puts in a store: tree nodes, leaves' data, what the leaves imply."""
    writes = dict(verified.nodes)
    version = smt.version_bytes(verified.height)
    # the leaves' hashes as verify_chunk computed them: hashing 40,000 keys and values twice showed
    # in a join's profile
    hashes = verified.hashes or [(smt._sha(k), smt._sha(v)) for k, v in verified.leaves]
    for (key, value), (kh, vh) in zip(verified.leaves, hashes, strict=True):
        leaf = smt.leaf_hash(kh, vh)
        writes[smt.leaf_data_key(leaf, version)] = smt.leaf_data(key, value)
        writes.update(leaf_writes(key, value))
    return writes


class Coverage:
    """The path ranges of the chunks taken so far: none may overlap, and together they must tile
    [0, 2^256 - 1] before the state is whole (chunks arrive from several peers in any order)."""

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []  # sorted, disjoint
        self.leaves = 0

    def add(self, lo: int, hi: int, leaves: int = 0) -> None:
        i = bisect_left(self._ranges, (lo, hi))
        if (i > 0 and self._ranges[i - 1][1] >= lo) or (i < len(self._ranges) and self._ranges[i][0] <= hi):
            raise SnapshotError(f"a chunk from path {_path_hex(lo)[:16]}… overlaps one already taken")
        self._ranges.insert(i, (lo, hi))
        self.leaves += leaves
        self._merge_around(i)

    def _merge_around(self, i: int) -> None:
        # adjacent ranges are merged, so a whole state is held as the one range [0, TOP]
        if i + 1 < len(self._ranges) and self._ranges[i][1] + 1 == self._ranges[i + 1][0]:
            self._ranges[i : i + 2] = [(self._ranges[i][0], self._ranges[i + 1][1])]
        if i > 0 and self._ranges[i - 1][1] + 1 == self._ranges[i][0]:
            self._ranges[i - 1 : i + 1] = [(self._ranges[i - 1][0], self._ranges[i][1])]

    @property
    def complete(self) -> bool:
        return self._ranges == [(0, TOP)]

    def covered(self) -> int:
        """How many of the 2^256 paths are covered (progress: covered / 2^256)."""
        return sum(hi - lo + 1 for lo, hi in self._ranges)


def split_space(parts: int) -> list[tuple[int, int]]:
    """The path space cut into `parts` aligned ranges, fetched in parallel (one peer each at a time)."""
    if parts < 1 or parts & (parts - 1):
        raise SnapshotError("the path space is cut into a power of two of parts")
    step = (TOP + 1) // parts
    return [(i * step, (i + 1) * step - 1) for i in range(parts)]
