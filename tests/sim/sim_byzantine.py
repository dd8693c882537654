"""Byzantine behaviours for simulated replicas (at most f per run).

A Byzantine node runs an honest core but tampers with what leaves it: the network and the
oracles see only its output. Behaviours combine; each is a name in `Node.byzantine`. The
behaviours here tamper with single messages; the attacks on view changes, certificates and
validator-set changes are the strategies of `sim_adversary` (names in its STRATEGIES), and
every message either makes is crafted by `sim_craft.Crafter`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sim_adversary import STRATEGIES, Adversary
from sim_app import next_state_root
from sim_craft import Crafter

from chain.block import Block
from chain.devnet import seeded_key
from chain.encoding import decode, hash_hex
from chain.merkle import tx_root
from chain.tx import parse_tx
from node.consensus.messages import Commit, Prepare, PrePrepare, parse_signed

if TYPE_CHECKING:
    from simnet import Node, World

BEHAVIOURS = ("silent", "equivocate", "split", "double_vote", "bad_root", "invalid_tx", "replay", "forge")

OUTSIDER = seeded_key("sim-outsider")


def install(world: World, node: Node) -> None:
    behaviours = node.byzantine
    if behaviours & set(STRATEGIES):
        node.adversary = Adversary(world, node, behaviours)
    craft = Crafter(world.chain_id, node.key)
    outsider = Crafter(world.chain_id, OUTSIDER)
    if "bad_root" in behaviours:
        node.app.propose_hook = lambda b: _with_header(b, state_root=hash_hex(b.header.state_root.encode()))
    if "invalid_tx" in behaviours:
        node.app.propose_hook = lambda b: _with_forged_tx(world, node, b)

    if not behaviours & set(BEHAVIOURS):
        return

    def on_broadcast(message: dict[str, Any]) -> None:
        if "silent" in behaviours:
            return
        signed = parse_signed(message)
        others = [n for n in world.nodes if n is not node]
        msg = signed.msg
        block = node.replica.block_by_hash(msg.block_hash) if isinstance(msg, PrePrepare) else None
        if ("equivocate" in behaviours or "split" in behaviours) and isinstance(msg, PrePrepare) and block is not None:
            # a second block for the same (view, height), pushed and proposed to other peers:
            # equivocate: every other peer (a quorum may still form); split: all but the first,
            # so neither block can commit in this view
            alt = _with_header(block, time=block.header.time + 1)
            alt_msg = craft.pre_prepare(msg.view, msg.height, alt).to_plain()
            for i, dst in enumerate(others):
                ours = i == 0 if "split" in behaviours else i % 2 == 0
                if not ours:
                    world.push_block(node, dst, alt)
                world.transmit(node, dst, message if ours else alt_msg)
        elif "double_vote" in behaviours and isinstance(msg, (Prepare, Commit)):
            other_hash = craft.other_hash(msg.block_hash)
            make = craft.prepare if isinstance(msg, Prepare) else craft.commit
            alt_plain = make(msg.view, msg.height, other_hash).to_plain()
            for i, dst in enumerate(others):
                world.transmit(node, dst, message)
                if i % 2 == 1:
                    world.transmit(node, dst, alt_plain)
        else:
            world.broadcast(node, message)
        if "replay" in behaviours and node.received:
            for _ in range(3):
                old = decode(world.rng.choice(node.received))
                world.transmit(node, world.rng.choice(others), old)
        if "forge" in behaviours:
            dst = world.rng.choice(others)
            bad_sig = dict(message, sig=("0" if message["sig"][0] != "0" else "1") + message["sig"][1:])
            world.transmit(node, dst, bad_sig)
            world.transmit(node, dst, outsider.plain(msg))
            world.transmit(node, dst, {"body": {"kind": "prepare", "view": -1}, "sender": 7, "sig": None})
            world.transmit(node, dst, {"body": message["body"], "sender": node.key.public, "sig": "zz"})

    def on_block(block: Block) -> None:
        if "silent" in behaviours:
            return
        for dst in world.nodes:
            world.push_block(node, dst, block)

    node.on_broadcast = on_broadcast
    node.on_block = on_block


def _with_header(block: Block, **changes: Any) -> Block:
    return Block(replace(block.header, **changes), block.txs)


def _with_forged_tx(world: World, node: Node, block: Block) -> Block:
    """The block plus a tx whose signature is garbage, with roots that match it: only the tx is wrong."""
    tx = world.make_txs(1, start=10**6 + block.height)[0]
    txs = (*block.txs, parse_tx({"body": tx.body, "sig": "ab" * 64}))
    ids = [t.tx_id for t in txs]
    return _with_header(
        Block(block.header, txs), tx_root=tx_root(ids), state_root=next_state_root(node.app.state_root, ids)
    )
