"""The authenticated state: a compact sparse Merkle tree over 256-bit paths H(key).

A leaf is `H(0x00 || H(key) || H(value))`; an inner node is `H(0x01 || left || right)`; an
empty subtree is 32 zero bytes. A subtree holding a single leaf is that leaf, wherever it sits,
so a tree of N random keys is about log2(N) deep rather than 256. Distinct tag bytes keep a leaf
from ever posing as an inner node.

Nodes are content-addressed: `n/<node hash>` holds the node's preimage (65 bytes either kind),
and `l/<leaf hash>` holds what a leaf stands for, its key and value (`leaf_data`): a node can
then list the whole state under any root it holds, in path order, from the tree alone (a state
snapshot, chain/snapshot.py; an audit from a synced node's base). Nodes are never deleted, so every past root stays readable and provable (no pruning; see
docs/architecture.md for the cost and how pruning would be added).

`update` takes a whole block's changes at once, sorted by path, and walks each affected path
once; it reads nodes through a function and returns the nodes to write, so the caller puts them
in the block's single write batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chain.errors import ChainError

LEAF = b"\x00"
INNER = b"\x01"
EMPTY = bytes(32)
EMPTY_ROOT = EMPTY.hex()
NODE_PREFIX = b"n/"
LEAF_DATA_PREFIX = b"l/"
MAX_KEY_BYTES = 0xFFFF  # a leaf's key length is written in two bytes (leaf_data)
MAX_DEPTH = 256

NodeReader = Callable[[bytes], bytes | None]  # node hash -> its preimage


class SmtError(ChainError, ValueError):
    """A node the tree needs is missing or malformed: the store is damaged."""


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node_key(node_hash: bytes) -> bytes:
    return NODE_PREFIX + node_hash


def leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    return _sha(LEAF + key_hash + value_hash)


def leaf_data_key(leaf: bytes) -> bytes:
    return LEAF_DATA_PREFIX + leaf


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


def _bit(path: bytes, depth: int) -> int:
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


# A subtree as the update sees it: (its hash, its (key_hash, value_hash) if it is a single
# leaf). A plain tuple: the update makes one per touched node, and a frozen dataclass's
# constructor cost a fifth of the update's time.
_Ref = tuple[bytes, tuple[bytes, bytes] | None]
_EMPTY_REF: _Ref = (EMPTY, None)


class _Updater:
    def __init__(self, read: NodeReader) -> None:
        self.read = read
        self.writes: dict[bytes, bytes] = {}

    def load(self, h: bytes) -> bytes:
        raw = self.read(h)
        if raw is None or len(raw) != 65 or raw[:1] not in (LEAF, INNER):
            raise SmtError(f"state tree node {h.hex()[:16]}… is missing or malformed")
        return raw

    def put_leaf(self, kh: bytes, vh: bytes) -> _Ref:
        pre = LEAF + kh + vh
        h = _sha(pre)
        self.writes[NODE_PREFIX + h] = pre
        return (h, (kh, vh))

    def join(self, left: _Ref, right: _Ref) -> _Ref:
        # collapse: a subtree whose only content is one leaf is that leaf
        if left[0] == EMPTY:
            if right[0] == EMPTY or right[1] is not None:
                return right
        elif right[0] == EMPTY and left[1] is not None:
            return left
        pre = INNER + left[0] + right[0]
        h = _sha(pre)
        self.writes[NODE_PREFIX + h] = pre
        return (h, None)

    def build(self, depth: int, items: list[tuple[bytes, bytes]]) -> _Ref:
        """A subtree from scratch; items are sorted (key_hash, value_hash), all distinct."""
        if not items:
            return _EMPTY_REF
        if len(items) == 1:
            return self.put_leaf(*items[0])
        split = _split(items, depth)
        return self.join(self.build(depth + 1, items[:split]), self.build(depth + 1, items[split:]))

    def update(self, ref_hash: bytes, depth: int, items: list[tuple[bytes, bytes | None]]) -> _Ref:
        """The subtree at ref_hash with the sorted changes applied (value_hash None deletes)."""
        if ref_hash == EMPTY:
            if not items:
                return _EMPTY_REF
            return self.build(depth, [(k, v) for k, v in items if v is not None])
        raw = self.load(ref_hash)
        if raw[:1] == LEAF:
            kh, vh = raw[1:33], raw[33:]
            if not items:
                return (ref_hash, (kh, vh))
            merged = {k: v for k, v in items}
            if kh not in merged:
                merged[kh] = vh
            return self.build(depth, sorted((k, v) for k, v in merged.items() if v is not None))
        if not items:
            return (ref_hash, None)
        if depth >= MAX_DEPTH:
            raise SmtError("state tree deeper than 256 levels")
        split = _split(items, depth)
        left = self.update(raw[1:33], depth + 1, items[:split])
        right = self.update(raw[33:], depth + 1, items[split:])
        return self.join(left, right)


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


def update(root: str, changes: Mapping[bytes, bytes | None], read: NodeReader) -> tuple[str, dict[bytes, bytes]]:
    """(new root, writes) after setting each key to its value (None deletes): the new nodes keyed
    `n/<hash>` and each new leaf's data keyed `l/<leaf hash>`."""
    items: list[tuple[bytes, bytes | None]] = []
    data: dict[bytes, bytes] = {}
    for k, v in changes.items():
        kh = _sha(k)
        if v is None:
            items.append((kh, None))
            continue
        vh = _sha(v)
        items.append((kh, vh))
        data[LEAF_DATA_PREFIX + _sha(LEAF + kh + vh)] = leaf_data(k, v)
    items.sort()
    updater = _Updater(read)
    new = updater.update(bytes.fromhex(root), 0, items)
    updater.writes.update(data)
    return new[0].hex(), updater.writes


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


def prove(root: str, key: bytes, read: NodeReader) -> Proof:
    """The proof of key's value (or absence) under root."""
    path = _sha(key)
    h = bytes.fromhex(root)
    siblings: list[bytes] = []
    loader = _Updater(read)
    depth = 0
    while h != EMPTY:
        raw = loader.load(h)
        if raw[:1] == LEAF:
            return Proof(tuple(siblings), (raw[1:33], raw[33:]))
        if depth >= MAX_DEPTH:
            raise SmtError("state tree deeper than 256 levels")
        left, right = raw[1:33], raw[33:]
        if _bit(path, depth):
            siblings.append(left)
            h = right
        else:
            siblings.append(right)
            h = left
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


def get(root: str, key: bytes, read: NodeReader) -> bytes | None:
    """H(value) of key under root, or None if absent (the values themselves live elsewhere)."""
    proof = prove(root, key, read)
    if proof.leaf is not None and proof.leaf[0] == _sha(key):
        return proof.leaf[1]
    return None
