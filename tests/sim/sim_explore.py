"""Systematic exploration of delivery orders: a bounded depth-first search over a controlled world.

The world (`simnet.World(controlled=True)`) schedules nothing: every consensus message and
block frame in flight, every fetch and sync reply and every armed view timer is an entry of
`world.pending`, and the search chooses which happens next. From each state it tries every
distinct pending event; a state is identified by a hash of every replica's state, every
application's chain, the adversary's memory and the set of events pending, so orders that
commute (two deliveries to different replicas) meet in one state and are explored once. The
oracles run after every event, as in the timed simulator.

The network model (`Scope.soup`, the default) is the one of the protocol's fault assumptions:
a message once sent stays in flight after it is delivered, so it may be delivered again
(duplication), in any order, or never (loss, withholding). Reductions, sound for the safety
oracles (they are properties of the replicas' states, not of what is in flight):
- a delivery that changes nothing (the replica's state, and nothing new sent) is not a new
  state, and is remembered as such for that replica state;
- loss and withholding need no events: leaving a message in flight forever is losing it.

The scope is bounded by the number of txs (one per block, so heights), by `max_view` (a timer
may fire only in a view below it: one view change when 1), by the depth and by the state and
time budgets; `Report.complete` says whether the scope was exhausted.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simnet import Node, Violation, World

from chain.block import Block, Certificate
from chain.encoding import decode
from node.consensus.messages import NewView, Signed, parse_signed

Event = tuple[Any, ...]
_SKIP_REPLICA = frozenset({"key", "app", "params", "_verify", "chain_id", "_restored", "_out"})
_SKIP_ADVERSARY = frozenset({"world", "node", "craft", "on"})
_SKIP_APP = frozenset({"world", "idx", "propose_hook"})


@dataclass(frozen=True)
class Scope:
    n: int = 4
    byzantine: tuple[tuple[int, frozenset[str]], ...] = ((1, frozenset({"inflate_new_view"})),)
    txs: int = 2  # one per block: the heights in scope
    max_view: int = 1  # timers fire only in views below this: the view changes in scope
    max_depth: int = 80
    soup: bool = True  # messages stay in flight once delivered (duplication), see the module doc

    def world(self) -> World:
        world = World(0, n=self.n, byzantine=dict(self.byzantine), controlled=True, block_txs=1)
        for tx in world.make_txs(self.txs):
            world.submit(tx)
        return world


@dataclass
class Report:
    scope: Scope
    states: int = 0
    transitions: int = 0
    pruned_noop: int = 0
    max_depth_seen: int = 0
    complete: bool = False  # every state in scope explored (no budget ran out)
    seconds: float = 0.0
    violations: list[tuple[str, list[str]]] = field(default_factory=list)  # (oracle message, schedule)
    prefix: list[str] = field(default_factory=list)  # the hand-written start the search began from


# ---------------------------------------------------------------- cloning and hashing


def _clone(v: Any) -> Any:
    """A copy of the mutable parts (containers, mutable dataclasses such as Slot); everything
    immutable (frozen dataclasses, messages, blocks, str, tuples) is shared."""
    t = type(v)
    if t is dict:
        return {k: _clone(x) for k, x in v.items()}
    if t is list:
        return [_clone(x) for x in v]
    if t is set:
        return set(v)
    if dataclasses.is_dataclass(v) and not t.__dataclass_params__.frozen and t is not Node:  # type: ignore[attr-defined]
        new = copy.copy(v)
        for f in dataclasses.fields(v):
            setattr(new, f.name, _clone(getattr(v, f.name)))
        return new
    return v


def _clone_obj(obj: Any, skip: frozenset[str]) -> Any:
    new = copy.copy(obj)
    for k, v in vars(obj).items():
        if k not in skip:
            setattr(new, k, _clone(v))
    return new


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _fields_of(t: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(t, ())
    if names == ():
        names = _FIELDS[t] = tuple(f.name for f in dataclasses.fields(t)) if dataclasses.is_dataclass(t) else None
    return names


def _fp(v: Any) -> Any:
    t = type(v)
    if t is str or t is int or t is bool or v is None or t is bytes:
        return v
    if t is Signed:
        return (v.digest, v.sender, v.sig)
    if t is tuple or t is list:
        return tuple([_fp(x) for x in v])
    if t is dict:
        return frozenset([(_fp(k), _fp(x)) for k, x in v.items()])
    if t is set or t is frozenset:
        return frozenset([_fp(x) for x in v])
    if t is Block:
        return v.block_hash
    if t is Certificate:
        return (v.height, v.block_hash, v.signatures)
    names = _fields_of(t)
    if names is not None:
        return (t.__name__, *[_fp(getattr(v, f)) for f in names])
    return t.__name__  # the world, the application, keys: the same objects in every state


def _obj_fp(obj: Any, skip: frozenset[str]) -> Any:
    return frozenset([(k, _fp(v)) for k, v in vars(obj).items() if k not in skip])


# ---------------------------------------------------------------- the explorer


@dataclass(frozen=True)
class Snap:
    """One explored state. Per-node parts are shared between a state and its children for every
    node the event did not touch (an event changes one replica and the world's bookkeeping)."""

    nodes: tuple[tuple[Any, ...], ...]
    fps: tuple[Any, ...]
    pending: tuple[Event, ...]
    oracles: tuple[Any, ...]


class Explorer:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.world = scope.world()
        self.prefix: list[str] = []  # events fired before the search (a hand-written start)
        self.last: tuple[int, list[Event]] = (0, [])  # the newest state's key and the events after the prefix
        self.loaded: list[Any] = [None] * len(self.world.nodes)  # which Snap node part each live node holds

    # -- snapshots (what an event may change) and restores

    def _node_snap(self, n: Node) -> tuple[Any, ...]:
        adversary = None if n.adversary is None else _clone_obj(n.adversary, _SKIP_ADVERSARY)
        return (_clone_obj(n.replica, _SKIP_REPLICA), _clone_obj(n.app, _SKIP_APP), adversary, n.armed, n.checked_new_view)

    def _oracles(self) -> tuple[Any, ...]:
        w = self.world
        return (dict(w.committed_hash), list(w.canon_valsets), dict(w.votes), _clone(w.commit_views))

    def root(self) -> Snap:
        nodes = tuple(self._node_snap(n) for n in self.world.nodes)
        self.loaded = [None] * len(nodes)
        return Snap(nodes, tuple(self.node_fp(n) for n in self.world.nodes), tuple(self.world.pending), self._oracles())

    def child(self, parent: Snap, idx: int, fp: Any) -> Snap:
        node = self._node_snap(self.world.nodes[idx])
        nodes = (*parent.nodes[:idx], node, *parent.nodes[idx + 1 :])
        fps = (*parent.fps[:idx], fp, *parent.fps[idx + 1 :])
        self.loaded[idx] = None
        return Snap(nodes, fps, tuple(self.world.pending), self._oracles())

    def restore(self, snap: Snap) -> None:
        w = self.world
        for i, (n, part) in enumerate(zip(w.nodes, snap.nodes)):
            if self.loaded[i] is part:
                continue
            replica, app, adversary, armed, checked = part
            n.replica = _clone_obj(replica, _SKIP_REPLICA)
            n.app = _clone_obj(app, _SKIP_APP)
            n.replica.app = n.app
            if adversary is not None:
                n.adversary = _clone_obj(adversary, _SKIP_ADVERSARY)
            n.armed, n.checked_new_view = armed, checked
            n.timers.clear()
            self.loaded[i] = part
        w.pending = list(snap.pending)
        committed, valsets, votes, commit_views = snap.oracles
        w.committed_hash, w.canon_valsets, w.votes = dict(committed), list(valsets), dict(votes)
        w.commit_views = _clone(commit_views)

    def node_fp(self, n: Node) -> Any:
        adv = None if n.adversary is None else _obj_fp(n.adversary, _SKIP_ADVERSARY)
        return hash((_obj_fp(n.replica, _SKIP_REPLICA), _obj_fp(n.app, _SKIP_APP), adv, n.armed))

    def state_key(self, fps: tuple[Any, ...]) -> int:
        if self.scope.soup:
            return hash((fps, frozenset(self.world.pending)))
        return hash((fps, frozenset(Counter(self.world.pending).items())))

    # -- events

    def enabled(self) -> list[Event]:
        w = self.world
        # the search takes events from the end: the newest message first, sync replies and timer
        # expiries last (fast consensus, slow sync and timers: where a replica decides on the
        # least information is explored first); every event is explored either way
        timers: list[Event] = [
            ("timeout", n.idx) for n in w.nodes if n.armed is not None and n.replica.view < self.scope.max_view
        ]
        distinct = list(dict.fromkeys(w.pending))
        syncs = [e for e in distinct if e[0] == "sync"]
        return [*timers, *syncs, *[e for e in distinct if e[0] != "sync"]]

    def deliver(self, to: set[int], kind: str, senders: set[int] | None = None, **fields: Any) -> int:
        """Deliver every pending message of `kind` to the nodes `to` (from `senders`, with these body
        fields), in sending order; the number delivered. For hand-written schedules and prefixes."""
        by_public = {n.key.public: n.idx for n in self.world.nodes}
        count = 0
        for event in list(dict.fromkeys(self.world.pending)):
            if event[0] != "deliver" or event[1] not in to:
                continue
            signed = parse_signed(decode(event[2]))
            if signed.msg.kind != kind or (senders is not None and by_public.get(signed.sender) not in senders):
                continue
            if any(getattr(signed.msg, k, None) != v for k, v in fields.items()):
                continue
            self._push_named_block(event[1], signed)
            self.fire(event)
            count += 1
        return count

    def _push_named_block(self, dst: int, signed: Signed) -> None:
        """Deliver the block frame a PRE-PREPARE (or a NEW-VIEW's) names just ahead of it, as the
        real link, which keeps order, delivers the push that precedes it."""
        msg = signed.msg
        pp = msg.pre_prepare if isinstance(msg, NewView) else signed
        block_hash = getattr(pp.msg, "block_hash", None) if pp is not None and pp.msg.kind == "pre_prepare" else None
        for event in list(dict.fromkeys(self.world.pending)):
            if event[0] == "block" and event[1] == dst and event[3] == block_hash:
                self.fire(event)

    def timeout(self, *idxs: int) -> None:
        for i in idxs:
            self.fire(("timeout", i))

    def fire(self, event: Event) -> None:
        """Fire one event outside the search, remembering it as part of the prefix."""
        self.prefix.append(describe(event))
        self._fire(event)

    def _fire(self, event: Event) -> None:
        w = self.world
        if event[0] != "timeout" and not self.scope.soup:
            w.pending.remove(event)
        self.loaded[event[1]] = None
        w.fire(event)
        if self.scope.soup:
            w.pending = list(dict.fromkeys(w.pending))  # a set: sending a message again adds nothing

    # -- the search

    def run(self, max_states: int, max_seconds: float, stop_at_first: bool = True,
            progress: Callable[[Report], None] | None = None) -> Report:
        report = Report(self.scope)
        report.prefix = list(self.prefix)
        began = time.perf_counter()
        root = self.root()
        seen = {self.state_key(root.fps)}
        noops: set[tuple[Any, Event]] = set()
        stack: list[tuple[Snap, list[Event], int]] = [(root, self.enabled(), 0)]
        paths: list[list[Event]] = [[]]
        report.states = 1
        while stack:
            if report.states >= max_states or time.perf_counter() - began > max_seconds:
                break
            snap, todo, depth = stack[-1]
            if not todo or depth >= self.scope.max_depth:
                stack.pop()
                paths.pop()
                continue
            event = todo.pop()
            idx = event[1]
            if (snap.fps[idx], event) in noops:
                report.pruned_noop += 1
                continue
            self.restore(snap)
            report.transitions += 1
            try:
                self._fire(event)
            except Violation as e:
                schedule = report.prefix + [describe(ev) for ev in [*paths[-1], event]]
                report.violations.append((str(e), schedule))
                if stop_at_first:
                    break
                continue
            fp = self.node_fp(self.world.nodes[idx])
            sent = len(self.world.pending) - len(snap.pending) + (0 if self.scope.soup else 1)
            if event[0] in ("deliver", "block") and fp == snap.fps[idx] and sent == 0:
                noops.add((fp, event))  # the replica's next state depends on its state and the event only
                report.pruned_noop += 1
                continue
            fps = (*snap.fps[:idx], fp, *snap.fps[idx + 1 :])
            key = self.state_key(fps)
            if key in seen:
                continue
            seen.add(key)
            report.states += 1
            report.max_depth_seen = max(report.max_depth_seen, depth + 1)
            stack.append((self.child(snap, idx, fp), self.enabled(), depth + 1))
            paths.append([*paths[-1], event])
            self.last = (key, paths[-1])
            if progress is not None and report.states % 1000 == 0:
                report.seconds = time.perf_counter() - began
                progress(report)
        report.complete = not stack and not report.violations
        report.seconds = time.perf_counter() - began
        return report


def describe(event: Event) -> str:
    """A readable name of an event that also identifies it in a replay."""
    if event[0] == "timeout":
        return f"timeout v{event[1]}"
    if event[0] == "sync":
        return f"sync v{event[1]} {event[2]}..{event[3]}"
    if event[0] == "block":
        return f"block {event[3][:8]} to v{event[1]} from {event[2][:8]}"
    if event[0] == "fetch":
        return f"fetch {event[2][:8]} for v{event[1]} at height {event[3]}"
    try:
        signed = parse_signed(decode(event[2]))
    except Exception:
        return f"deliver v{event[1]} <malformed {hashlib.blake2b(event[2], digest_size=4).hexdigest()}>"
    m = signed.msg
    extra = getattr(m, "block_hash", "")[:8] if m.kind in ("prepare", "commit", "pre_prepare") else ""
    digest = hashlib.blake2b(event[2], digest_size=4).hexdigest()
    return f"deliver v{event[1]} {m.kind}(v={m.view},h={m.height}{',' + extra if extra else ''}) from {signed.sender[:8]} #{digest}"


def replay(scope: Scope, schedule: list[str]) -> Explorer:
    """Run a schedule printed by the explorer on a fresh world (raises the Violation it found)."""
    ex = Explorer(scope)
    for name in schedule:
        match = [e for e in ex.enabled() if describe(e) == name]
        if not match:
            raise LookupError(f"no pending event {name!r}")
        ex.fire(match[0])
    return ex


def current_key(ex: Explorer) -> int:
    return ex.state_key(tuple(ex.node_fp(n) for n in ex.world.nodes))
