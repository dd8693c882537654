"""A Byzantine validator that attacks view changes, certificates and validator-set changes.

The node runs an honest core (so it knows the chain, the proposals and the votes, and
produces well-formed messages); the `Adversary` sees everything the node receives and decides
what leaves it. It signs only with its own key, through `sim_craft.Crafter`. Strategies are
names in `Node.byzantine` and combine; each one says which open defect it targets, so CI can
leave out the attacks that today's core is known to lose to (see `OPEN_DEFECTS`) while the
soak (`tests/sim/soak.py --byzantine`) runs them all.

In a controlled world (the explorer) the adversary draws no random numbers: it sends every
message to every peer, and the explorer's choice of what to deliver, and what never to,
covers the withholding.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sim_craft import Crafter

from chain.block import Block, Certificate, CertificateError
from chain.encoding import canonical
from node.consensus import pbft
from node.consensus.messages import (
    Commit,
    MessageError,
    NewView,
    Prepare,
    PrePrepare,
    Signed,
    Status,
    ViewChange,
    parse_signed,
)

if TYPE_CHECKING:
    from simnet import Node, World

# The defects the adversary is known to find in today's core (fixes are under way). A strategy
# that targets one of them stays out of the CI mix until the fix lands and its name leaves this
# dict; each has a strict-xfail reproduction in tests/sim/test_sim_adversary.py.
OPEN_DEFECTS: dict[str, str] = {}
# Fixed on main (each keeps its schedule in tests/sim/test_sim_adversary.py, which failed before):
#   new_view_height: a NEW-VIEW's height was bound to nothing (a Byzantine primary named a height
#     above every VIEW-CHANGE it carried, hid their proofs, and re-proposed a lower height);
#   status_new_view: a STATUS's NEW-VIEW was acted on without checking its signature;
#   mixed_views: commit signatures did not cover the view, so commits of several views made one
#     certificate;
#   guessed_next_set: messages for the next height were judged by a guessed set after a removal.

# strategy -> the open defects it targets (empty: today's core must withstand it)
STRATEGIES: dict[str, tuple[str, ...]] = {
    "split_votes": (),  # PRE-PREPARE / PREPARE / COMMIT for one block to half the peers, another to the rest
    "withhold": (),  # each message to a random part of the peers only
    "forge_status": ("status_new_view",),  # STATUS carrying a NEW-VIEW it made up, naming the primary
    "tamper_relay": (),  # relays VIEW-CHANGEs with their proofs cut, in STATUS and NEW-VIEW
    "inflate_new_view": ("new_view_height",),  # NEW-VIEW at H above its VIEW-CHANGEs, then PRE-PREPARE below H
    "deflate_new_view": (),  # NEW-VIEW at a height below its VIEW-CHANGEs
    "replay_old_view": (),  # on each view change, resends messages of earlier views
    "cross_view_votes": ("mixed_views",),  # COMMIT for B in view v, then for A at the same height in a later view
    "mixed_cert": ("mixed_views",),  # certificates from commits of several views, served by sync and STATUS
    "vote_always": ("guessed_next_set",),  # PREPARE and COMMIT every proposal, also after its removal
    "oversized": (),  # NEW-VIEW and STATUS at and past the parser's bounds
}


# how each open defect shows in the oracles' messages (simnet.World.fail), for the soak's report
SYMPTOMS: dict[str, str] = {
    "status_new_view": "on a NEW-VIEW its primary did not sign",
    "mixed_views": "certificate mixing views",
    "guessed_next_set": "is not a validator",
    "new_view_height": "two certificates/blocks at height",
}


def likely_defect(violation: str) -> str | None:
    """The open defect whose symptom the violation shows, if any (a fork may have other causes)."""
    for defect, symptom in SYMPTOMS.items():
        if defect in OPEN_DEFECTS and symptom in violation:
            return defect
    return None


def ci_strategies() -> tuple[str, ...]:
    return tuple(s for s, targets in STRATEGIES.items() if not set(targets) & set(OPEN_DEFECTS))


class Adversary:
    def __init__(self, world: World, node: Node, strategies: frozenset[str]) -> None:
        self.world = world
        self.node = node
        self.on = strategies
        self.craft = Crafter(world.chain_id, node.key)
        self.vcs: dict[int, dict[str, Signed]] = {}  # view -> sender -> VIEW-CHANGE seen
        self.sigs: dict[tuple[int, str], dict[str, tuple[int, str]]] = {}  # (height, hash) -> signer -> (view, sig)
        self.my_commits: dict[int, tuple[int, str]] = {}  # height -> (view, hash) of our first COMMIT
        self.old: list[tuple[int, dict[str, Any]]] = []  # (view, message) received, for replays
        self.forged_chain: dict[int, tuple[Block, Certificate]] = {}  # what we serve to sync requests
        self.done: set[tuple[Any, ...]] = set()  # attacks already made (each once)

    # ------------------------------------------------------------ sending

    def peers(self) -> list[Node]:
        return [n for n in self.world.nodes if n is not self.node]

    def targets(self) -> list[Node]:
        peers = self.peers()
        if "withhold" not in self.on or self.world.controlled:
            return peers
        return self.world.rng.sample(peers, self.world.rng.randint(1, len(peers)))

    def send(self, plain: dict[str, Any], to: list[Node] | None = None) -> None:
        wire = canonical(plain)  # encoded once for all recipients
        for dst in self.targets() if to is None else to:
            self.world.transmit(self.node, dst, plain, wire)

    def push(self, block: Block, to: list[Node]) -> None:
        for dst in to:
            self.world.push_block(self.node, dst, block)

    def block(self, block_hash: str) -> Block | None:
        """A block we hold: proposed or pushed to us and not yet pruned, or on our chain."""
        found = self.node.replica.block_by_hash(block_hash)
        if found is None:
            found = next((b for b, _ in self.node.app.chain if b.block_hash == block_hash), None)
        return found

    def halves(self) -> tuple[list[Node], list[Node]]:
        peers = self.peers()
        return peers[::2], peers[1::2]

    def forward(self, message: dict[str, Any]) -> None:
        if self.node.on_broadcast is not None:  # an older behaviour of sim_byzantine also runs
            self.node.on_broadcast(message)
        else:
            self.send(message)

    # ------------------------------------------------------------ what the node hears

    def on_receive(self, plain: Any) -> None:
        try:
            signed = pbft.parse_signed(plain)  # shared with the core's parse of the same frame (simnet)
        except (MessageError, RecursionError):
            return
        msg = signed.msg
        if "replay_old_view" in self.on and len(self.old) < 400 and not isinstance(msg, Status):
            self.old.append((msg.view, plain))
        if isinstance(msg, PrePrepare):
            self._vote_eagerly(msg)
        elif isinstance(msg, Commit):
            self.sigs.setdefault((msg.height, msg.block_hash), {})[signed.sender] = (msg.view, msg.commit_sig)
            if "mixed_cert" in self.on:
                self._mix_certificate(msg.height, msg.block_hash)
        elif isinstance(msg, ViewChange):
            self.vcs.setdefault(msg.view, {}).setdefault(signed.sender, signed)
            if "forge_status" in self.on:
                self._forge_status(msg.view, msg.height)
            if "tamper_relay" in self.on:
                self._relay_tampered(signed)
        elif isinstance(msg, NewView):
            if msg.pre_prepare is not None and isinstance(msg.pre_prepare.msg, PrePrepare):
                self._vote_eagerly(msg.pre_prepare.msg)
            for vc in msg.view_changes:
                if isinstance(vc.msg, ViewChange):
                    self.vcs.setdefault(vc.msg.view, {}).setdefault(vc.sender, vc)

    def _vote_eagerly(self, msg: PrePrepare) -> None:
        """vote_always: PREPARE and COMMIT whatever is proposed. cross_view_votes: vote for a
        later view's proposal at a height where we already committed to another block."""
        block_hash = msg.block_hash
        mine = self.my_commits.get(msg.height)
        cross = "cross_view_votes" in self.on and mine is not None and mine[0] < msg.view and mine[1] != block_hash
        if not (cross or "vote_always" in self.on) or ("vote", msg.view, msg.height) in self.done:
            return
        self.done.add(("vote", msg.view, msg.height))
        self.send(self.craft.prepare(msg.view, msg.height, block_hash).to_plain())
        self.send(self.craft.commit(msg.view, msg.height, block_hash).to_plain())

    def _own_view_change(self, view: int, height: int) -> Signed:
        mine = self.vcs.setdefault(view, {}).get(self.node.key.public)
        if mine is None:
            mine = self.vcs[view][self.node.key.public] = self.craft.view_change(view, height, None)
        return mine

    def _forge_status(self, view: int, height: int) -> None:
        """A NEW-VIEW for `view` made of VIEW-CHANGEs without proofs (ours among them), naming the
        view's primary as its sender but signed with our key, relayed to all in a STATUS."""
        vset = self.node.app.validator_set(height)
        primary = vset.primary(view).public
        if primary == self.node.key.public or ("forge", view) in self.done:
            return
        self._own_view_change(view, height)
        bare = [vc for s, vc in sorted(self.vcs[view].items()) if vc.msg.prepared is None]  # type: ignore[union-attr]
        if len(bare) < vset.quorum:
            return
        self.done.add(("forge", view))
        chosen = tuple(bare[: vset.quorum])
        top = max(vc.msg.height for vc in chosen)
        forged = self.craft.forged(NewView(view, top, chosen, None), primary)
        head = self.node.app.head()
        status = self.craft.status(view, head.height, None, None, forged)
        self.send(status.to_plain())

    def _relay_tampered(self, vc: Signed) -> None:
        for altered in (self.craft.altered_proof(vc), self.craft.stripped_proof(vc)):
            if altered is not None:
                msg = altered.msg
                status = self.craft.status(msg.view, max(0, msg.height - 1), None, None, None, (altered,))
                self.send(status.to_plain())

    def _mix_certificate(self, height: int, block_hash: str) -> None:
        """A certificate for (height, block) from the commits of as many views as we can mix,
        kept to serve to sync requests and announced in a STATUS."""
        block = self.block(block_hash)
        votes = dict(self.sigs.get((height, block_hash), {}))
        vset = self.world.vset_at(height)
        if block is None or height in self.forged_chain:
            return
        views = {v for v, _ in votes.values()}
        if len(views) < 2 and self.my_commits.get(height, (0, ""))[1] == block_hash:
            return  # one view only, and our own vote would not add another
        me = self.node.key.public
        if me not in votes:
            view = max(views) + 1 if views else 0
            votes[me] = (view, self.craft.commit_sig(view, height, block_hash))
        # honest signers taken from each view in turn (so no single view holds them all), ours last
        by_view: dict[int, list[str]] = {}
        for signer in sorted(s for s in votes if s != me and s in vset.publics):
            by_view.setdefault(votes[signer][0], []).append(signer)
        order = [s for group in itertools.zip_longest(*by_view.values()) for s in group if s is not None]
        chosen = {s: votes[s][1] for s in [*order[: vset.quorum - 1], me]}
        if len(chosen) < vset.quorum or len({votes[s][0] for s in chosen if s != me}) < 2:
            return
        cert = self.craft.certificate(votes[order[0]][0], height, block_hash, chosen)
        try:
            cert.verify(self.world.chain_id, height, block_hash, vset)
        except CertificateError:
            return
        self.forged_chain[height] = (block, cert)
        self.done.add(("mixed", height))
        self.send(self.craft.status(self.node.replica.view, height, block_hash, cert, None).to_plain())

    # ------------------------------------------------------------ what the node says

    def on_broadcast(self, message: dict[str, Any]) -> None:
        signed = parse_signed(message)
        msg = signed.msg
        if isinstance(msg, Commit):
            self.my_commits.setdefault(msg.height, (msg.view, msg.block_hash))
            self.sigs.setdefault((msg.height, msg.block_hash), {})[signed.sender] = (msg.view, msg.commit_sig)
        if isinstance(msg, ViewChange):
            self.vcs.setdefault(msg.view, {}).setdefault(signed.sender, signed)
            self._replay(msg.view)
            if "oversized" in self.on and ("oversized",) not in self.done:
                self.done.add(("oversized",))  # once a run: a replica takes ~1 s to check one in the simulator
                bare = self.craft.view_change(msg.view, msg.height, None)  # copies of a proofless one: cheap to make
                for big in self.craft.oversized(msg.view, msg.height, bare):
                    self.send(big, self.peers()[:1])
        if isinstance(msg, NewView) and self._attack_new_view(signed, msg):
            return
        if "split_votes" in self.on and isinstance(msg, (PrePrepare, Prepare, Commit)):
            self._split(msg, message)
            return
        self.forward(message)

    def on_send(self, dst: Node, message: dict[str, Any]) -> None:
        """The core's STATUS replies: with tamper_relay, the VIEW-CHANGEs in them lose their proofs."""
        signed = parse_signed(message)
        msg = signed.msg
        if "tamper_relay" in self.on and isinstance(msg, Status) and msg.view_changes:
            cut = tuple(self.craft.stripped_proof(vc) or vc for vc in msg.view_changes)
            message = self.craft.status(msg.view, msg.height, msg.head_block_hash, msg.certificate, msg.new_view, cut).to_plain()
        self.world.transmit(self.node, dst, message)

    def serve_sync(self, from_height: int, to_height: int) -> list[tuple[Block, Certificate]] | None:
        """Our forged blocks where we have them, else what our chain holds."""
        if from_height not in self.forged_chain:
            return None
        chain = self.node.app.chain
        out = []
        for h in range(from_height, to_height + 1):
            entry = self.forged_chain.get(h) or (chain[h - 1] if h <= len(chain) else None)
            if entry is None:
                break
            out.append(entry)
        return out

    def _split(self, msg: PrePrepare | Prepare | Commit, message: dict[str, Any]) -> None:
        one, other = self.halves()
        if isinstance(msg, PrePrepare):
            block = self.block(msg.block_hash)
            if block is None:
                self.forward(message)
                return
            other_block = self.craft.other_block(block)
            self.push(other_block, other)  # blocks travel beside the PRE-PREPARE that names them
            alt = self.craft.pre_prepare(msg.view, msg.height, other_block)
        else:
            known = self.block(msg.block_hash)
            alt_hash = self.craft.other_block(known).block_hash if known else self.craft.other_hash(msg.block_hash)
            alt = (self.craft.prepare if isinstance(msg, Prepare) else self.craft.commit)(msg.view, msg.height, alt_hash)
        self.send(message, one)
        self.send(alt.to_plain(), other)

    def _replay(self, view: int) -> None:
        if "replay_old_view" not in self.on:
            return
        old = [m for v, m in self.old if v < view]
        picks = old[-4:] if self.world.controlled else [self.world.rng.choice(old) for _ in range(min(4, len(old)))]
        for m in picks:
            self.send(m)

    def _attack_new_view(self, signed: Signed, msg: NewView) -> bool:
        """As primary of a view: NEW-VIEWs at a wrong height. True when the honest one is replaced."""
        vcs = self.vcs.get(msg.view, {})
        if "deflate_new_view" in self.on and msg.height > 1:
            self.send(self.craft.new_view(msg.view, msg.height - 1, msg.view_changes, None).to_plain())
        if "inflate_new_view" not in self.on:
            return False
        quorum = self.node.app.validator_set(msg.height).quorum
        chosen = tuple(sorted(vcs.values(), key=lambda vc: (vc.msg.height, vc.sender))[:quorum])
        if len(chosen) < quorum:
            return False
        low = min(vc.msg.height for vc in chosen)
        top = max(vc.msg.height for vc in chosen) + 1  # above every VIEW-CHANGE: no proof counts
        block = self._rewrite(low, msg.view, chosen)
        if block is None:
            return False
        self.done.add(("inflate", msg.view, top, low))
        self.push(block, self.peers())
        self.send(self.craft.new_view(msg.view, top, chosen, None).to_plain())
        self.send(self.craft.pre_prepare(msg.view, low, block).to_plain())
        self.send(self.craft.prepare(msg.view, low, block.block_hash).to_plain())
        self.send(self.craft.commit(msg.view, low, block.block_hash).to_plain())
        return True

    def _rewrite(self, height: int, view: int, chosen: tuple[Signed, ...]) -> Block | None:
        """A valid block at `height` in `view` proposed by us, other than any proved or committed there:
        the txs of the block proved prepared (or committed) at that height, else our pending ones."""
        app = self.node.app
        txs: list[Any] = []
        for vc in chosen:
            proof = vc.msg.prepared  # type: ignore[union-attr]
            proved = None if proof is None else self.block(proof.block_hash)
            if proved is not None and vc.msg.height == height:
                txs = list(proved.txs)
        if not txs and height <= len(app.chain):
            txs = list(app.chain[height - 1][0].txs)
        if not txs:
            txs = app.pending()[: self.world.block_txs]
        if not txs or height > len(app.chain) + 1:
            return None
        return app.build(height, view, txs, self.node.key.public, time_offset=view + 1)
