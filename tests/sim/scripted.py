"""A hand-driven consortium for scripted attack schedules.

The simulator (`simnet.World`) delivers messages at random; an attack needs one exact order. A
`Script` wraps a `World` whose network only records: every message a replica broadcasts or sends
lands in `sent`, and the test delivers the ones it chooses, to the replicas it chooses, in the
order it chooses. Timers never fire by themselves (`timeout` fires one), and sync requests are
served only by `sync`. The Byzantine validators are not replicas at all here: the test signs
their messages with their real keys (`sign`). Blocks travel beside the messages: every block a
replica pushes (or a test registers with `add_block`) is delivered just ahead of a PRE-PREPARE or
NEW-VIEW that names it, as a real link (which keeps order) would deliver the push.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simnet import Node, World

from chain.block import Block
from chain.crypto import KeyPair
from chain.encoding import canonical, decode
from chain.tx import Tx
from node.consensus import pbft
from node.consensus.messages import Message, NewView, PrePrepare, Signed, parse_signed


@dataclass(frozen=True)
class Sent:
    src: int
    dst: int | None  # None: a broadcast
    signed: Signed

    @property
    def msg(self) -> Any:
        return self.signed.msg


class Script:
    def __init__(self, n: int = 4, seed: int = 1) -> None:
        self.world = World(seed, n=n)
        self.sent: list[Sent] = []
        self.commits: dict[int, list[pbft.CommitBlock]] = {i: [] for i in range(n)}
        self.blocks: dict[str, Block] = {}  # every block pushed, by hash
        for node in self.world.nodes:
            node.on_broadcast = lambda message, idx=node.idx: self._record(idx, None, message)
            node.on_block = self.add_block
        self.world.transmit = self._transmit  # type: ignore[method-assign]
        self.world.schedule = lambda delay, kind, data: None  # type: ignore[method-assign]

    # ---------------------------------------------------------------- the recording network

    def _record(self, src: int, dst: int | None, message: dict[str, Any]) -> None:
        self.sent.append(Sent(src, dst, parse_signed(decode(canonical(message)))))

    def _transmit(self, src: Node, dst: Node, message: dict[str, Any], wire: bytes | None = None) -> None:
        if src is not dst:
            self._record(src.idx, dst.idx, message)

    # ---------------------------------------------------------------- who is who

    def node(self, idx: int) -> Node:
        return self.world.nodes[idx]

    def primary_idx(self, view: int) -> int:
        public = self.world.vset.primary(view).public
        return next(n.idx for n in self.world.nodes if n.key.public == public)

    def key(self, idx: int) -> KeyPair:
        return self.world.nodes[idx].key

    def sign(self, idx: int, msg: Message) -> Signed:
        return Signed.sign(self.key(idx), msg)

    # ---------------------------------------------------------------- driving

    def submit(self, txs: list[Tx]) -> None:
        for tx in txs:
            self.world.submit(tx)

    def find(self, kind: type, src: int | None = None, view: int | None = None, height: int | None = None) -> list[Sent]:
        return [
            s for s in self.sent
            if isinstance(s.msg, kind)
            and (src is None or s.src == src)
            and (view is None or s.msg.view == view)
            and (height is None or s.msg.height == height)
        ]

    def add_block(self, block: Block) -> None:
        self.blocks[block.block_hash] = block

    def deliver(self, signed: Signed | Sent, to: list[int]) -> None:
        s = signed.signed if isinstance(signed, Sent) else signed
        plain = decode(canonical(s.to_plain()))
        msg = s.msg
        pre_prepare = msg.pre_prepare.msg if isinstance(msg, NewView) and msg.pre_prepare is not None else msg
        block = self.blocks.get(pre_prepare.block_hash) if isinstance(pre_prepare, PrePrepare) else None
        for idx in to:
            if block is not None:
                self.world._run(self.node(idx), pbft.BlockReceived(s.sender, block))
            self.world._run(self.node(idx), pbft.Received(plain))

    def deliver_all(self, kind: type, to: list[int], view: int | None = None, height: int | None = None,
                    src: list[int] | None = None) -> None:
        for s in self.find(kind, view=view, height=height):
            if src is None or s.src in src:
                self.deliver(s, [i for i in to if i != s.src])

    def timeout(self, idx: int) -> None:
        replica = self.node(idx).replica
        timer = replica.timer
        assert timer is not None, f"v{idx} has no timer running"
        self.world._run(self.node(idx), pbft.Timeout(*timer))

    def sync(self, idx: int, source: int) -> None:
        """Serve whatever `idx` would fetch from `source`'s store (certified blocks only)."""
        node, src = self.node(idx), self.node(source)
        for block, cert in src.app.chain[len(node.app.chain):]:
            self.world._run(node, pbft.SyncedBlock(block, cert))

    def chain(self, idx: int) -> list[Block]:
        return [b for b, _ in self.node(idx).app.chain]
