"""Test helpers over the deterministic devnet (chain/devnet.py): signed blocks, mixed-view certificates,
free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

import ports

from chain.block import Block, Certificate, Header, sign_commit
from chain.crypto import KeyPair
from chain.devnet import Consortium, make_consortium, seeded_key
from chain.merkle import EMPTY_ROOT, tx_root
from chain.tx import Tx

# the devnet's names stay importable from here, where most tests have always found them
__all__ = ["Consortium", "free_base_port", "make_block", "make_consortium", "mix_views", "seeded_key"]


def make_block(
    c: Consortium, height: int, prev_hash: str, txs: list[Tx], state_root: str = EMPTY_ROOT, view: int = 0
) -> tuple[Block, Certificate]:
    """A block and a certificate signed by a quorum; roots other than tx_root are given."""
    vset = c.genesis.validators
    header = Header(
        chain_id=c.genesis.chain_id,
        height=height,
        prev_hash=prev_hash,
        tx_root=tx_root([t.tx_id for t in txs]),
        state_root=state_root,
        receipts_root=EMPTY_ROOT,
        validators_hash=vset.hash,
        next_validators_hash=vset.hash,
        proposer=vset.primary(view).public,
        view=view,
        time=c.genesis.time + height,
    )
    block = Block(header, tuple(txs))
    keys = c.validator_keys[: vset.quorum]
    sigs = {k.public: sign_commit(k, c.genesis.chain_id, height, view, block.block_hash) for k in keys}
    return block, Certificate.build(height, view, block.block_hash, sigs)


def mix_views(cert: Certificate, keys: Iterable[KeyPair], chain_id: str, other_view: int) -> Certificate:
    """cert's block with every signer but the first re-committing in `other_view`, naming that view.

    What a Byzantine party assembles from genuine commits for one block cast in two views: a
    quorum of signatures in all, but fewer than a quorum in any one view.
    """
    by_public = {k.public: k for k in keys}
    (first, first_sig), *rest = cert.signatures
    sigs = {first: first_sig}
    sigs |= {v: sign_commit(by_public[v], chain_id, cert.height, other_view, cert.block_hash) for v, _ in rest}
    return Certificate.build(cert.height, other_view, cert.block_hash, sigs)


def free_base_port(count: int, start: int = ports.CLUSTER[0], stop: int = ports.CLUSTER[1]) -> int:
    """A base port P such that P .. P+count-1 can all be bound on 127.0.0.1 right now.

    Concurrent runs start at different points (by process id) to avoid racing for the same ports;
    the starting point wraps within [start, stop), so a narrow range is searched whole too (it
    used to start up to 980 ports in, past the end of a range narrower than that)."""
    span = stop - start - count
    first = (os.getpid() % 50) * 20 % (span + 1) if span >= 0 else 0
    for base in [*range(start + first, stop - count + 1, count), *range(start, start + first, count)]:
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports in {start}..{stop}")
