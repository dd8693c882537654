"""A deterministic simulated consortium for the PBFT core.

Everything that varies comes from one seeded `random.Random`; time is a virtual clock driven by
an event heap whose ties break on insertion order, so a seed reproduces a run exactly. Replicas
are real `node.consensus.pbft.Replica`s over real blocks, txs and signatures; the application is a tiny
ledger whose state root is a hash chain of committed tx ids. Messages travel as canonical msgpack
bytes, as they would between processes, and like the real transport refuse a consensus frame
above `max_frame` (recorded in `oversize`; the largest sent is `max_consensus_frame`). Blocks
travel beside the messages (`BroadcastBlock`) and are fetched by hash from peers (`FetchBlock`),
with the same drops, delays and partitions. Oracles are checked after every event: a violation
raises `Violation` with the seed in its message.

Two ways to drive a world: timed (`run_until`: the seeded rng picks delays, drops and
duplicates) and controlled (`controlled=True`: nothing is scheduled; every message, timer
expiry and sync reply waits in `pending` until an explorer picks it, see
tests/sim/sim_explore.py). The validator set may change mid-run through `GOV_OP` txs, which
take effect from the height after the block that carries them, as in the real ledger.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim_app import MAX_BLOCK_TXS, SimApp, next_validators, set_at

from chain.block import Block, Certificate, CertificateError
from chain.crypto import Domain, KeyPair, verify
from chain.devnet import Consortium, make_consortium, seeded_key
from chain.encoding import canonical, decode, hash_hex
from chain.genesis import Params
from chain.tx import Tx, sign_tx
from chain.validators import Validator, ValidatorSet
from node.consensus import messages as pbft_messages
from node.consensus import pbft

FETCH_TIMEOUT_MS = 100  # a fetch with no answer by then moves on to the next peer


class Violation(AssertionError):
    pass


# A frame is decoded once and the same plain value goes to all its recipients, so the core's
# parse of it can be shared too: `pbft.parse_signed` answers from here for exactly those values
# (by identity, the value kept alive) and parses anything else itself. Pure speed: the result is
# the one parse_signed gives; a frame that fails to parse is not remembered.
_PARSED: dict[int, tuple[Any, Any]] = {}
_parse_signed = pbft_messages.parse_signed


def _shared_parse(obj: Any, depth: int = 0) -> Any:
    hit = _PARSED.get(id(obj)) if depth == 0 else None
    if hit is not None and hit[0] is obj:
        return hit[1]
    return _parse_signed(obj, depth)


pbft.parse_signed = _shared_parse  # type: ignore[attr-defined]


@dataclass
class Node:
    idx: int
    key: KeyPair
    app: SimApp
    replica: pbft.Replica
    byzantine: frozenset[str] = frozenset()
    crashed: bool = False
    timer_gen: int = 0
    received: list[bytes] = field(default_factory=list)  # what a replaying Byzantine node may resend
    on_broadcast: Callable[[dict[str, Any]], None] | None = None  # Byzantine output
    adversary: Any = None  # a sim_adversary.Adversary: sees the node's input, rewrites its output
    on_block: Callable[[Block], None] | None = None  # Byzantine block pushes
    timers: list[tuple[int, int, int]] = field(default_factory=list)  # (view, height, ms) as set
    armed: tuple[int, int] | None = None  # controlled mode: the timer a Timeout may fire for
    checked_new_view: Any = None  # the last NEW-VIEW the S5 oracle checked
    syncs: int = 0


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 30
    until_ms: int = 0  # faults stop (partitions heal, crashed nodes restart) at this time


class World:
    def __init__(
        self,
        seed: int,
        n: int = 4,
        byzantine: dict[int, frozenset[str]] | None = None,
        faults: Faults | None = None,
        params: Params | None = None,
        standby: int = 0,
        controlled: bool = False,
        block_txs: int = MAX_BLOCK_TXS,
        idle_probe_ms: int = 0,
        max_frame: int | None = None,
        tx_pad: int = 0,
    ) -> None:
        """`max_frame`: the consensus frame cap (None: none); `tx_pad`: bytes of padding in each tx
        made by `make_txs`, to make blocks large relative to the cap."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.consortium: Consortium = make_consortium(n)
        self.genesis = self.consortium.genesis
        self.chain_id = self.genesis.chain_id
        self.vset = self.genesis.validators
        # keys that run a replica but join the set only through a GOV_OP "add"
        standby_keys = [seeded_key(f"validator-{n + j}") for j in range(standby)]
        self.standby = {
            k.public: Validator(f"v{n + j}", k.public, f"127.0.0.1:{27000 + n + j}") for j, k in enumerate(standby_keys)
        }
        self.params = params or Params(view_timeout_ms=200, max_view_timeout_ms=3200)
        self.faults = faults or Faults()
        self.controlled = controlled
        self.block_txs = block_txs
        # node/p2p/catchup.py probes a peer for blocks after IDLE_PROBE_S without a commit (a node
        # behind on an idle chain hears no consensus traffic); 0 leaves it out, as older seeds ran
        self.idle_probe_ms = idle_probe_ms
        self.pending: list[tuple[Any, ...]] = []  # controlled mode: what may happen next
        self.blocks: dict[str, Block] = {}  # controlled mode: the blocks of pending block frames
        self.max_frame = max_frame
        self.tx_pad = tx_pad
        self.max_consensus_frame = 0  # bytes, the largest consensus message sent
        self.oversize = 0  # consensus messages refused for exceeding max_frame
        self.fetches = 0  # FetchBlock actions carried out
        self.drop_filter: Callable[[Node, Node, dict[str, Any]], bool] | None = None  # tests: True drops
        self.now = 0.0
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._verified: dict[tuple[str, Domain, bytes, str], bool] = {}
        self._tx_ok: dict[str, bool] = {}
        self._decoded: dict[bytes, Any] = {}
        keys = [*self.consortium.validator_keys, *standby_keys]
        self.arrived: list[list[Tx]] = [[] for _ in keys]
        self.submitted: list[Tx] = []
        self.partition: list[set[int]] | None = None
        self.steps = 0
        # oracle state
        self.committed_hash: dict[int, str] = {}
        self.canon_valsets: list[tuple[int, ValidatorSet]] = [(1, self.vset)]  # along the committed chain
        self.votes: dict[tuple[str, str, int, int], str] = {}
        self.commit_views: dict[tuple[str, int, str], set[int]] = {}  # (signer, height, hash) -> views
        byz = byzantine or {}
        self.nodes: list[Node] = []
        for i, key in enumerate(keys):
            app = SimApp(self, i)
            node = Node(i, key, app, self._new_replica(key, app), byz.get(i, frozenset()))
            self.nodes.append(node)
        for node in self.nodes:
            if node.byzantine:
                from sim_byzantine import install

                install(self, node)
        for node in self.nodes:
            self._run(node, None)
            if idle_probe_ms and not controlled:
                self.schedule(idle_probe_ms, "probe", (node.idx, 0))

    # ------------------------------------------------------------ harness plumbing

    def _new_replica(self, key: KeyPair, app: SimApp) -> pbft.Replica:
        return pbft.Replica(key, self.chain_id, app, self.params, self.verify, app.record)

    def verify(self, public: str, domain: Domain, message: bytes, sig: str) -> bool:
        k = (public, domain, message, sig)
        ok = self._verified.get(k)
        if ok is None:
            ok = self._verified[k] = verify(public, domain, message, sig)
        return ok

    def tx_valid(self, tx: Tx) -> bool:
        ok = self._tx_ok.get(tx.tx_id + tx.sig)
        if ok is None:
            ok = self._tx_ok[tx.tx_id + tx.sig] = tx.signature_valid() and tx.chain_id == self.chain_id
        return ok

    def schedule(self, delay: float, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, kind, data))

    @property
    def faulty(self) -> bool:
        return self.now < self.faults.until_ms

    def honest(self) -> list[Node]:
        return [n for n in self.nodes if not n.byzantine]

    def by_public(self, public: str) -> Node | None:
        for n in self.nodes:
            if n.key.public == public:
                return n
        return None

    def vset_at(self, height: int) -> ValidatorSet:
        """The set of `height` along the chain the honest replicas committed."""
        return set_at(self.canon_valsets, height)

    # ------------------------------------------------------------ the network

    def _delays(self, src: Node, dst: Node) -> list[float]:
        """The delay of each copy of one frame from src to dst: none if lost, two if duplicated."""
        if src is dst:
            return []
        if self.faulty:
            if self.partition is not None and not any(src.idx in g and dst.idx in g for g in self.partition):
                return []
            if self.rng.random() < self.faults.drop:
                return []
            copies = 2 if self.rng.random() < self.faults.duplicate else 1
            max_delay = self.faults.max_delay_ms
        else:
            copies, max_delay = 1, 20
        return [1 + self.rng.random() * max_delay for _ in range(copies)]

    def transmit(self, src: Node, dst: Node, message: dict[str, Any], wire: bytes | None = None) -> None:
        body = message.get("body") if type(message) is dict else None
        if type(body) is dict and body.get("kind") == "commit":
            self._note_commit(message)
        data = wire if wire is not None else canonical(message)
        if self.max_frame is not None and len(data) > self.max_frame:
            self.oversize += 1  # the real transport refuses to frame it; the driver logs and goes on
            return
        self.max_consensus_frame = max(self.max_consensus_frame, len(data))
        if self.controlled:
            if src is not dst:
                self.pending.append(("deliver", dst.idx, data))
            return
        if self.drop_filter is not None and src is not dst and self.drop_filter(src, dst, message):
            return
        for delay in self._delays(src, dst):
            self.schedule(delay, "deliver", (dst.idx, data))

    def broadcast(self, src: Node, message: dict[str, Any]) -> None:
        wire = canonical(message)
        for dst in self.nodes:
            self.transmit(src, dst, message, wire)

    def push_block(self, src: Node, dst: Node, block: Block) -> None:
        """A block frame (not a consensus message: not capped by max_frame, like the real one)."""
        if self.controlled:
            if src is not dst:
                self.blocks[block.block_hash] = block
                self.pending.append(("block", dst.idx, src.key.public, block.block_hash))
            return
        for delay in self._delays(src, dst):
            self.schedule(delay, "block", (dst.idx, src.key.public, block))

    def _fetch(self, idx: int, block_hash: str, height: int, tried: tuple[int, ...]) -> None:
        """One attempt of a FetchBlock: ask the next untried peer; no answer in time, the next."""
        node = self.nodes[idx]
        if node.crashed or not node.replica.wants_block(block_hash):
            return
        peers = [p for p in self.nodes if p is not node and p.idx not in tried]
        if not peers:
            return  # every peer tried: give up, the core asks again after its next timeout
        peer = self.rng.choice(peers)
        self.schedule(FETCH_TIMEOUT_MS, "fetch", (idx, block_hash, height, (*tried, peer.idx)))
        if peer.crashed or "silent" in peer.byzantine or not self._delays(node, peer):
            return
        block = self._held_block(peer, block_hash, height)
        if block is not None:
            self.push_block(peer, node, block)

    @staticmethod
    def _held_block(peer: Node, block_hash: str, height: int) -> Block | None:
        block = peer.replica.block_by_hash(block_hash)
        if block is None and len(peer.app.chain) >= height:
            stored = peer.app.chain[height - 1][0]
            block = stored if stored.block_hash == block_hash else None
        return block

    def submit(self, tx: Tx) -> None:
        self.submit_many([tx])

    def submit_many(self, txs: list[Tx]) -> None:
        """Txs that reach every node's pool at once (so a proposal can take them all)."""
        self.submitted.extend(txs)
        for node in self.nodes:
            self.arrived[node.idx].extend(txs)
            if not node.crashed:
                self._run(node, pbft.TxsPending())

    def make_txs(self, count: int, start: int = 0) -> list[Tx]:
        user = seeded_key("sim-user")
        pad = {"pad": "x" * self.tx_pad} if self.tx_pad else {}
        return [
            sign_tx(user, chain_id=self.chain_id, op="asset.transfer", args={"i": start + i, **pad}, expires=10**6, nonce=f"n{start + i}")
            for i in range(count)
        ]

    # ------------------------------------------------------------ running replicas

    def _run(self, node: Node, event: pbft.Event | None) -> None:
        """Feed an event (None: start) and carry out the actions, as the real driver would."""
        queue: list[pbft.Event | None] = [event]
        while queue:
            ev = queue.pop(0)
            actions = node.replica.start() if ev is None else node.replica.handle(ev)
            for action in actions:
                self._act(node, action, queue)
            self._check_step()

    def _act(self, node: Node, action: pbft.Action, queue: list[pbft.Event | None]) -> None:
        if isinstance(action, pbft.Broadcast):
            self._check_vote(node, action.message)
            if node.adversary is not None:
                node.adversary.on_broadcast(action.message)
            elif node.on_broadcast is not None:
                node.on_broadcast(action.message)
            else:
                self.broadcast(node, action.message)
        elif isinstance(action, pbft.Send):
            dst = self.by_public(action.to)
            if dst is not None and node.adversary is not None:
                node.adversary.on_send(dst, action.message)
            elif dst is not None and "silent" not in node.byzantine:
                self.transmit(node, dst, action.message)
        elif isinstance(action, pbft.SetTimer):
            node.timer_gen += 1
            node.timers.append((action.view, action.height, action.ms))
            node.armed = (action.view, action.height)
            if not self.controlled:
                self.schedule(action.ms, "timer", (node.idx, node.timer_gen, action.view, action.height))
        elif isinstance(action, pbft.CancelTimer):
            node.timer_gen += 1
            node.armed = None
        elif isinstance(action, pbft.CommitBlock):
            self._check_commit(node, action.block, action.certificate)
            node.app.persist(action.block, action.certificate)
            queue.append(pbft.Persisted(action.block.height))
        elif isinstance(action, pbft.RequestSync):
            node.syncs += 1
            if self.controlled:
                self.pending.append(("sync", node.idx, action.from_height, action.to_height))
            else:
                self.schedule(5 + self.rng.random() * 20, "sync", (node.idx, action.from_height, action.to_height))
        elif isinstance(action, pbft.SaveVotes):
            node.app.record = action.record
        elif isinstance(action, pbft.BroadcastBlock):
            if node.on_block is not None:
                node.on_block(action.block)
            else:
                for dst in self.nodes:
                    self.push_block(node, dst, action.block)
        elif isinstance(action, pbft.FetchBlock):
            self.fetches += 1
            if self.controlled:
                self.pending.append(("fetch", node.idx, action.block_hash, action.height))
            else:
                self.schedule(5 + self.rng.random() * 20, "fetch", (node.idx, action.block_hash, action.height, ()))

    def step(self) -> bool:
        if not self._heap:
            return False
        t, _, kind, data = heapq.heappop(self._heap)
        self.now = t
        self.steps += 1
        if kind == "deliver":
            self.deliver(*data)
        elif kind == "timer":
            idx, gen, view, height = data
            node = self.nodes[idx]
            if not node.crashed and gen == node.timer_gen:
                self._run(node, pbft.Timeout(view, height))
        elif kind == "block":
            idx, sender, block = data
            node = self.nodes[idx]
            if not node.crashed:
                self._run(node, pbft.BlockReceived(sender, block))
        elif kind == "fetch":
            self._fetch(*data)
        elif kind == "sync":
            self._serve_sync(*data)
        elif kind == "probe":
            idx, height_then = data
            node = self.nodes[idx]
            if not node.crashed and len(node.app.chain) == height_then:
                self._serve_sync(idx, height_then + 1, height_then + 64)
            self.schedule(self.idle_probe_ms, "probe", (idx, len(node.app.chain)))
        elif kind == "call":
            data()
        return True

    def deliver(self, idx: int, wire: bytes) -> None:
        node = self.nodes[idx]
        if node.crashed:
            return
        if "replay" in node.byzantine and len(node.received) < 2000:
            node.received.append(wire)
        plain = self._decoded.get(wire)
        if plain is None:  # one decode per distinct frame, shared by its recipients (nobody mutates it)
            if len(self._decoded) > 4096:
                self._decoded.clear()
            plain = self._decoded[wire] = decode(wire)
            try:
                if len(_PARSED) > 4096:
                    _PARSED.clear()
                _PARSED[id(plain)] = (plain, _parse_signed(plain))
            except (pbft_messages.MessageError, RecursionError):
                pass
        if node.adversary is not None:
            node.adversary.on_receive(plain)
        self._run(node, pbft.Received(plain))

    def fire(self, event: tuple[Any, ...]) -> None:
        """Controlled mode: carry out one entry of `pending` (the caller removed it)."""
        self.steps += 1
        if event[0] == "deliver":
            self.deliver(event[1], event[2])
        elif event[0] == "timeout":
            node = self.nodes[event[1]]
            if node.armed is not None:
                view, height = node.armed
                node.armed = None
                self._run(node, pbft.Timeout(view, height))
        elif event[0] == "sync":
            self._serve_sync(*event[1:])
        elif event[0] == "block":
            node = self.nodes[event[1]]
            self._run(node, pbft.BlockReceived(event[2], self.blocks[event[3]]))
        elif event[0] == "fetch":  # answered by the first peer that holds the block
            idx, block_hash, height = event[1:]
            for peer in self.nodes:
                block = None if peer.idx == idx else self._held_block(peer, block_hash, height)
                if block is not None:
                    self.push_block(peer, self.nodes[idx], block)
                    break

    def _serve_sync(self, idx: int, from_height: int, to_height: int) -> None:
        node = self.nodes[idx]
        if node.crashed:
            return
        sources = [n for n in self.nodes if n is not node and not n.crashed and len(n.app.chain) >= from_height]
        if not sources:
            return
        # controlled runs stay free of the rng: the first source (a Byzantine one serves its own way)
        src = sources[0] if self.controlled else self.rng.choice(sources)
        served = src.adversary.serve_sync(from_height, to_height) if src.adversary is not None else None
        for block, cert in served if served is not None else src.app.chain[from_height - 1 : to_height]:
            self._run(node, pbft.SyncedBlock(block, cert))

    def at(self, time_ms: float, fn: Callable[[], None]) -> None:
        self.schedule(time_ms - self.now, "call", fn)

    def crash(self, idx: int) -> None:
        node = self.nodes[idx]
        node.crashed = True
        node.timer_gen += 1

    def restart(self, idx: int) -> None:
        node = self.nodes[idx]
        if not node.crashed:
            return
        node.crashed = False
        node.replica = self._new_replica(node.key, node.app)
        self._run(node, None)

    def heal(self) -> None:
        self.partition = None
        for node in self.nodes:
            if node.crashed:
                self.restart(node.idx)

    def run_until(self, deadline_ms: float, done: Callable[[], bool] | None = None) -> None:
        while self._heap and self._heap[0][0] <= deadline_ms:
            if done is not None and done():
                return
            self.step()

    # ------------------------------------------------------------ oracles

    def fail(self, what: str) -> None:
        raise Violation(f"seed {self.seed}, t={self.now:.1f}ms, step {self.steps}: {what}")

    def _check_vote(self, node: Node, message: dict[str, Any]) -> None:
        """An honest replica never sends two different messages of one kind for one (view, height)."""
        if node.byzantine:
            return
        body = message["body"]
        key = (node.key.public, body["kind"], body["view"], body["height"])
        digest = hash_hex(canonical(body))
        if self.votes.setdefault(key, digest) != digest:
            self.fail(f"honest v{node.idx} sent two different {body['kind']} for view {body['view']} height {body['height']}")

    def _note_commit(self, message: dict[str, Any]) -> None:
        body, signer = message["body"], message.get("sender")
        if type(body.get("view")) is int and type(body.get("height")) is int and type(signer) is str:
            self.commit_views.setdefault((signer, body["height"], str(body.get("block_hash"))), set()).add(body["view"])

    def _check_commit(self, node: Node, block: Block, cert: Certificate) -> None:
        if node.byzantine:
            return
        h = block.height
        if block.height != len(node.app.chain) + 1:
            self.fail(f"v{node.idx} committed height {h} on a chain of {len(node.app.chain)}")
        new = h not in self.committed_hash
        first = self.committed_hash.setdefault(h, block.block_hash)
        if first != block.block_hash:
            self.fail(f"two certificates/blocks at height {h}: {first[:12]} and {block.block_hash[:12]} (v{node.idx})")
        try:
            cert.verify(self.chain_id, h, block.block_hash, self.vset_at(h))
        except CertificateError as e:
            self.fail(f"v{node.idx} committed height {h} with a certificate that fails the set of its height: {e}")
        self._check_one_view(node, block, cert)
        if new:  # the first commit of h: its successor set joins the canonical record
            vset = self.vset_at(h)
            nxt = next_validators(self, vset, block.txs)
            if nxt is not vset:
                self.canon_valsets.append((h + 1, nxt))

    def _check_one_view(self, node: Node, block: Block, cert: Certificate) -> None:
        """Every certificate's signatures come from COMMITs of one view (the one it names, if any).

        A Byzantine signer may have signed any view, and a commit a test injected past the
        network was not seen, so only honest signers whose COMMITs went through it constrain it."""
        byzantine = {n.key.public for n in self.nodes if n.byzantine}
        seen = [
            self.commit_views[key]
            for signer, _ in cert.signatures
            if signer not in byzantine and (key := (signer, block.height, block.block_hash)) in self.commit_views
        ]
        claimed = getattr(cert, "view", None)
        if claimed is not None:
            mixed = any(claimed not in views for views in seen)
        else:
            mixed = bool(seen) and not set.intersection(*seen)
        if mixed:
            self.fail(
                f"v{node.idx} committed height {block.height} with a certificate mixing views "
                f"(its honest signers sent no COMMIT of one view{'' if claimed is None else f' {claimed}'} for it)"
            )

    def _check_step(self) -> None:
        for node in self.honest():
            if node.replica.height != len(node.app.chain) + 1:
                self.fail(f"v{node.idx} core at height {node.replica.height} but chain has {len(node.app.chain)}")
            settled_by = getattr(node.replica, "new_view_msg", None)
            if settled_by is not None and settled_by is not node.checked_new_view:
                node.checked_new_view = settled_by
                self._check_new_view_signed(node, settled_by)

    def _check_new_view_signed(self, node: Node, nv: Any) -> None:
        """S5: an honest replica settles a view only on a NEW-VIEW its primary really signed."""
        msg = nv.msg
        primary = node.app.validator_set(max(1, msg.height)).primary(msg.view).public
        if nv.sender != primary or not self.verify(nv.sender, Domain.CONSENSUS, nv.body_bytes, nv.sig):
            self.fail(f"v{node.idx} settled view {msg.view} on a NEW-VIEW its primary did not sign")

    def bound_to_progress(self) -> list[Node]:
        """The honest nodes liveness is owed to: validators of the latest set. A standby key that
        was never added runs a replica too, and so does a key whose seat was rotated to another
        one, but nothing obliges validators to keep either informed."""
        members = self.vset_at(max(self.committed_hash, default=0) + 1).publics
        return [n for n in self.honest() if n.key.public in members]

    def all_committed(self) -> bool:
        want = {t.tx_id for t in self.submitted}
        return all(want <= n.app.committed for n in self.bound_to_progress())

    def check_liveness(self, deadline_ms: float) -> None:
        self.run_until(deadline_ms, self.all_committed)
        if not self.all_committed():
            missing = {
                n.idx: len({t.tx_id for t in self.submitted} - n.app.committed) for n in self.bound_to_progress()
            }
            views = {n.idx: (n.replica.view, n.replica.in_view_change, n.replica.height) for n in self.nodes}
            self.fail(f"liveness: txs not committed by t={deadline_ms}: missing {missing}; (view, changing, height) {views}")

