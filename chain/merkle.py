"""Binary Merkle roots over ordered lists (tx ids, receipts).

Leaves and inner nodes are hashed under different one-byte prefixes so that an inner node can
never pass as a leaf; an odd node is carried up unchanged rather than paired with itself, so
two different lists never share a root (the duplicate-last-leaf flaw of Bitcoin's tree).
"""

from __future__ import annotations

from collections.abc import Sequence

from chain.encoding import H

LEAF = b"\x00"
NODE = b"\x01"
EMPTY_ROOT = H(b"").hex()


def merkle_root(leaves: Sequence[bytes]) -> str:
    """Hex root of the leaves (each already a byte string, typically a 32-byte hash)."""
    if not leaves:
        return EMPTY_ROOT
    level = [H(LEAF + leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [H(NODE + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def tx_root(tx_ids: Sequence[str]) -> str:
    return merkle_root([bytes.fromhex(t) for t in tx_ids])
