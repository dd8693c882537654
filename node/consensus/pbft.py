"""The PBFT consensus core: one replica as a plain object, fed events, returning actions.

Theory of operation
-------------------
The replica never awaits, reads a clock, touches a socket or draws a random number. The driver
(node/runtime/validator.py, or the simulator in tests/sim/) feeds it `Event`s through `handle()` and
carries out the `Action`s it returns, in order. Every consensus rule lives in this file, and the
replica does not know whether a message is its own: what it broadcasts it first feeds to itself
through the same handler a peer's message takes. docs/consensus.md states the rules; each
`_upon_*` method below is one of them.

Normal case, per height h in view v: the primary (validators[v mod n]) asks the application for
a block, hands it to the driver to push to every peer (`BroadcastBlock`, a data frame, not a
consensus message) and broadcasts PRE-PREPARE(v, h, block_hash); a replica that holds the block
named by that hash and finds it valid broadcasts
PREPARE(v, h, hash); with a quorum of matching prepares (the pre-prepare stands for the
primary's) it is *prepared* and broadcasts COMMIT(v, h, hash, commit_sig); with a quorum of
matching commits the commit signatures form a `chain.block.Certificate` and the replica emits
`CommitBlock`. The driver persists it and answers `Persisted`, and only then does the replica
look at height h+1, so the application is never asked about a height whose parent it lacks.

One `Slot` per (view, height) holds the proposal and the votes for it; slots below the
committed height are dropped (each committed block is a stable checkpoint).

Blocks: no consensus message carries one, so none grows with the block size. The replica keeps
the blocks it may still need in a bounded cache (`_wanted_hashes`: those named by the current
view's pre-prepares at h and h+1, its prepared proof, its own PREPAREs at h, and hashes a commit
quorum names), plus at most one unreferenced block per sender and height (a block that arrived
before its pre-prepare). A block it needs and lacks it asks the driver for (`FetchBlock`); the
driver asks peers, which answer from `block_by_hash` or their store, and feeds `BlockReceived`;
the replica keeps it only if its hash is one it wants and its tx root checks.

View change: with work outstanding (pending txs, or a proposal not yet committed) a timer runs;
when it fires, or the primary is caught misbehaving, the replica moves to v+1 and broadcasts
VIEW-CHANGE(v+1, h, its highest prepared proof at h). The primary of v+1 gathers a quorum whose
heights are at most its own height H and broadcasts NEW-VIEW with them and, if any of them holds a
prepared proof for H, a PRE-PREPARE re-proposing the block of the highest-view proof. Replicas
check the NEW-VIEW before entering the view. Timeouts double on each failed view, capped; a
commit takes that back, but a view left although its primary had proposed leaves the next
heights a timer twice as long, until enough clean commits shorten it again. Each wait of a view
(for a quorum of VIEW-CHANGEs, for the NEW-VIEW, for a commit) gets a full period, so a replica
out of phase with the others cannot leave every view alone just after it settles. A replica
changing views moves on only once a quorum asked for its view or a later one. f+1 VIEW-CHANGEs for higher views make a lagging replica join the lowest view
that f+1 of them ask for; a replica that asks for a view the others already hold gets a STATUS
carrying the NEW-VIEW that established it and the certificate of their head.

Catch-up: messages from f+1 validators for heights above ours, a quorum of commits for a block we
never saw, or a STATUS with a verified certificate above our head make the replica emit
`RequestSync`; the driver feeds back `SyncedBlock`s, accepted only with a certificate that
verifies against the validator set of their height.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from chain.block import Block, BlockError, Certificate, CertificateError, commit_message, sign_commit
from chain.crypto import Domain, KeyPair, verify
from chain.encoding import canonical, canonical_map
from chain.genesis import Params
from chain.validators import ValidatorSet
from node.consensus.messages import (
    Commit,
    Message,
    MessageError,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    Signed,
    Status,
    ViewChange,
    is_kind,
    parse_prepared_proof,
    parse_signed,
    parse_signed_as,
)

HEIGHT_WINDOW = 8  # messages for heights further ahead than this are refused (memory bound)
VIEW_WINDOW = 64  # likewise for views
BLOCK_HEIGHTS = 2  # blocks are kept for heights h .. h+BLOCK_HEIGHTS-1 only (memory bound)
# The view timer's learned length (`_timeout_ms`): a view left although its primary had proposed
# says the base timeout is shorter than the consortium's heights take (large blocks on slow
# machines), so the heights after get twice as long, up to 2**MAX_PATIENCE times; it comes back
# down one step after PATIENCE_RELAX commits in a row without a view change. A view whose primary
# never proposed (stopped, or faulty) says nothing of the heights' length and teaches nothing.
# Without it, blocks just longer than the base made every other height change views
# (docs/consensus.md, Timers).
MAX_PATIENCE = 4
PATIENCE_RELAX = 32
VOTE_RECORD_VERSION = 2  # 2: the prepared proof names its block by hash; the block is kept beside it

VerifyFn = Callable[[str, Domain, bytes, str], bool]


# ---------------------------------------------------------------- the application seam


@dataclass(frozen=True)
class ChainHead:
    height: int  # 0 before the first block
    block_hash: str  # the genesis hash at height 0
    certificate: Certificate | None  # of the head block; None at height 0


class Application(Protocol):
    """What the core asks of the ledger; every call is synchronous and deterministic."""

    def head(self) -> ChainHead: ...

    def validator_set(self, height: int) -> ValidatorSet: ...

    def propose(self, height: int, view: int) -> Block | None:
        """A block for `height` on the current head, or None when there is nothing to propose."""

    def validate(self, block: Block) -> bool:
        """Full check of a proposal on the current head: chain.validity.check_block (chain, height,
        parent, validator set, limits, txs, signatures), admission, re-execution, roots."""

    def has_pending(self) -> bool: ...


# ---------------------------------------------------------------- events and actions


@dataclass(frozen=True)
class Received:
    message: Any  # a plain value as decoded from a frame; nothing about it is trusted


@dataclass(frozen=True)
class TxsPending:
    pass


@dataclass(frozen=True)
class Timeout:
    view: int
    height: int


@dataclass(frozen=True)
class Persisted:
    height: int


@dataclass(frozen=True)
class SyncedBlock:
    block: Block
    certificate: Certificate


@dataclass(frozen=True)
class BlockReceived:
    """A block a peer pushed (after its proposal) or sent in answer to a fetch; untrusted."""

    sender: str  # the validator the transport authenticated
    block: Block


Event = Received | TxsPending | Timeout | Persisted | SyncedBlock | BlockReceived


@dataclass(frozen=True)
class Broadcast:
    message: dict[str, Any]  # to every other validator


@dataclass(frozen=True)
class Send:
    to: str
    message: dict[str, Any]


@dataclass(frozen=True)
class SetTimer:
    view: int
    height: int
    ms: int  # replaces any timer set before


@dataclass(frozen=True)
class CancelTimer:
    pass


@dataclass(frozen=True)
class CommitBlock:
    block: Block
    certificate: Certificate


@dataclass(frozen=True)
class RequestSync:
    from_height: int
    to_height: int


@dataclass(frozen=True)
class BroadcastBlock:
    """Push a proposed block to every other validator, as a data frame, before its PRE-PREPARE."""

    block: Block


@dataclass(frozen=True)
class FetchBlock:
    """Ask peers (any validator, one after another) for the block with this hash, and feed it back
    as `BlockReceived`. May give up silently: the core asks again after its next timeout."""

    block_hash: str
    height: int


@dataclass(frozen=True)
class VoteRecord:
    """What a replica must remember across a restart so that it never votes twice.

    `view` is the highest view it entered, `prepared` its best prepared proof at the height
    after its head, `view_change` the VIEW-CHANGE it sent for `view` while that view is not
    yet settled. A restarted replica resumes changing to `view` with that same message if it
    has one (it voted nothing else there), else in view+1, where it has never voted; either
    way it still reports its proof (the proof is what makes view changes safe). `block` is the
    block the proof names, so that a restarted replica can still serve it to the peers that
    must re-propose or prepare it. It is not compared: the proof's hash determines it.
    """

    view: int
    prepared: PreparedProof | None
    view_change: Signed[ViewChange] | None = None
    block: Block | None = field(default=None, compare=False)

    def to_plain(self) -> dict[str, Any]:
        return {
            "version": VOTE_RECORD_VERSION,
            "view": self.view,
            "prepared": None if self.prepared is None else self.prepared.to_plain(),
            "view_change": None if self.view_change is None else self.view_change.to_plain(),
            "block": None if self.block is None else self.block.to_plain(),
        }

    def encode(self) -> bytes:
        """canonical(self.to_plain()), reusing the block's own encoding (it may be megabytes)."""
        none = canonical(None)
        return canonical_map(
            {
                "version": canonical(VOTE_RECORD_VERSION),
                "view": canonical(self.view),
                "prepared": none if self.prepared is None else canonical(self.prepared.to_plain()),
                "view_change": none if self.view_change is None else self.view_change.encode(),
                "block": none if self.block is None else self.block.encode(),
            }
        )

    @classmethod
    def from_plain(cls, obj: Any) -> VoteRecord:
        version = obj.get("version", 1) if type(obj) is dict else None
        if version != VOTE_RECORD_VERSION:
            raise MessageError(f"vote record version {version!r}, this titlechain reads version {VOTE_RECORD_VERSION}")
        if set(obj) != {"version", "view", "prepared", "view_change", "block"} or type(obj["view"]) is not int:
            raise MessageError('a vote record is {"version", "view": int, "prepared", "view_change", "block"}')
        prepared = None if obj["prepared"] is None else parse_prepared_proof(obj["prepared"])
        try:
            vc = None if obj["view_change"] is None else parse_signed_as(obj["view_change"], ViewChange)
        except MessageError as e:
            raise MessageError(f"vote record: view_change: {e}") from None
        try:
            block = None if obj["block"] is None else Block.from_plain(obj["block"])
        except (BlockError, ValueError) as e:
            raise MessageError(f"vote record: block: {e}") from None
        if block is not None and (prepared is None or block.block_hash != prepared.block_hash):
            raise MessageError("vote record: the block is not the one its prepared proof names")
        return cls(obj["view"], prepared, vc, block)


@dataclass(frozen=True)
class SaveVotes:
    """Write the record durably before carrying out any later action of the same step."""

    record: VoteRecord


Action = Broadcast | Send | SetTimer | CancelTimer | CommitBlock | RequestSync | SaveVotes | BroadcastBlock | FetchBlock
V = TypeVar("V", Prepare, Commit)  # the votes a slot counts
K = TypeVar("K", bound=Message)


@dataclass(frozen=True)
class Evidence:
    """Two conflicting messages signed by one validator for the same (kind, view, height)."""

    sender: str
    kind: str
    view: int
    height: int
    first: Signed[Message]
    second: Signed[Message]


# ---------------------------------------------------------------- the log


@dataclass
class Slot:
    pre_prepare: Signed[PrePrepare] | None = None
    valid: bool | None = None  # the application's verdict, once asked
    prepares: dict[str, Signed[Prepare]] = field(default_factory=dict)
    commits: dict[str, Signed[Commit]] = field(default_factory=dict)
    sent_prepare: bool = False
    sent_commit: bool = False
    proposed: bool = False
    reproposal: str | None = None  # block hash a NEW-VIEW obliges the primary to propose

    @property
    def block_hash(self) -> str | None:
        return None if self.pre_prepare is None else self.pre_prepare.msg.block_hash

    @staticmethod
    def votes_for(votes: dict[str, Signed[V]], block_hash: str) -> dict[str, Signed[V]]:
        return {s: m for s, m in votes.items() if m.msg.block_hash == block_hash}


class Replica:
    def __init__(
        self,
        key: KeyPair,
        chain_id: str,
        app: Application,
        params: Params,
        verify_fn: VerifyFn = verify,
        record: VoteRecord | None = None,
    ) -> None:
        self.key = key
        self.chain_id = chain_id
        self.app = app
        self.params = params
        self._verify = verify_fn
        head = app.head()
        self.height = head.height + 1  # the next height to commit
        self.prev_hash = head.block_hash
        self.last_certificate = head.certificate
        self.view = 0
        self.in_view_change = False
        self.ready = True  # False between CommitBlock and Persisted
        self.slots: dict[tuple[int, int], Slot] = {}
        self.view_changes: dict[int, dict[str, Signed[ViewChange]]] = {}
        self.best_prepared: PreparedProof | None = None  # highest-view prepared proof at self.height
        self.new_view_msg: Signed[NewView] | None = None  # the NEW-VIEW that established self.view
        self.pending_new_views: dict[int, Signed[NewView]] = {}  # NEW-VIEWs for heights we have not reached
        self.sent_new_view: set[int] = set()
        self.failed_views = 0  # view changes since the last commit
        self.left_a_proposal = False  # since the last commit: a view left although its primary had proposed
        self.patience = 0  # the timer's learned exponent (MAX_PATIENCE)
        self.clean_commits = 0  # commits in a row without a view change
        self.peer_heights: dict[str, int] = {}
        self.sync_requested: tuple[int, int] = (0, 0)
        self.timer: tuple[int, int] | None = None
        self.evidence: list[Evidence] = []
        self._seen: dict[tuple[str, str, int, int], Signed[Message]] = {}
        self._convicted: set[tuple[str, str, int, int]] = set()  # keys that have their evidence
        self._out: list[Action] = []
        self._record_saved: VoteRecord | None = None
        self._my_view_change: Signed[ViewChange] | None = None
        self._restored = record
        self.blocks: dict[str, Block] = {}  # the blocks we may still need, by hash (`_wanted_hashes`)
        self._loose: dict[tuple[str, int], Block] = {}  # (sender, height) -> a block no message named yet
        self._fetching: set[str] = set()  # hashes asked of the driver since the last timeout
        self._needed: dict[str, int] = {}  # hash -> height: named by a commit quorum
        self._proof_blocks: set[str] = set()  # as the next primary: blocks of the VIEW-CHANGEs' proofs

    # ------------------------------------------------------------ entry point

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; return the actions the driver must carry out, in order."""
        self._out = []
        if isinstance(event, Received):
            self._on_wire(event.message)
        elif isinstance(event, TxsPending):
            self._upon_txs_pending()
        elif isinstance(event, Timeout):
            self._upon_timeout(event.view, event.height)
        elif isinstance(event, Persisted):
            self._upon_persisted(event.height)
        elif isinstance(event, SyncedBlock):
            self._upon_synced_block(event.block, event.certificate)
        elif isinstance(event, BlockReceived):
            self._upon_block(event.sender, event.block)
        out, self._out = self._out, []
        return out

    def start(self) -> list[Action]:
        """The first actions of a replica on its persisted head and vote record, if any.

        A replica with a record may have voted in any view up to record.view at our next
        height: it starts by changing to the view after it, carrying its prepared proof.
        """
        self._out = []
        rec = self._restored
        if rec is not None:
            self._record_saved = rec
            if rec.prepared is not None and rec.prepared.pre_prepare.msg.height == self.height:
                self.best_prepared = rec.prepared
                if rec.block is not None and rec.block.block_hash == rec.prepared.block_hash:
                    self.blocks[rec.block.block_hash] = rec.block  # so that we can serve it again
            self.view = rec.view
            vc = rec.view_change
            if vc is not None and vc.msg.view == rec.view:
                self.in_view_change = True
                self._my_view_change = vc
                self._out.append(Broadcast(vc.to_plain()))
                self._on_signed(vc)
                self._arm_timer()
            else:
                self._start_view_change(rec.view + 1)
        else:
            self._upon_txs_pending()
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ helpers

    def vset(self, height: int | None = None) -> ValidatorSet:
        return self.app.validator_set(max(1, self.height if height is None else height))

    def primary(self, view: int, height: int | None = None) -> str:
        return self.vset(height).primary(view).public

    def _set_known(self, height: int) -> bool:
        """Whether the application knows the validator set of `height` for certain.

        The set of height h follows from block h-1 (governance may change it there), so it is
        known for every height up to our next one once our head is persisted. For later heights
        `vset` returns a guess (today's set), good enough to buffer a message but never to count
        it: a validator removed at our head would still be in the guess.
        """
        return height < self.height or (height == self.height and self.ready)

    def _members(self) -> frozenset[str]:
        """The validators of the height being decided: the only senders whose votes count."""
        return self.vset().publics

    def slot(self, view: int, height: int) -> Slot:
        return self.slots.setdefault((view, height), Slot())

    def _broadcast(self, msg: K) -> Signed[K]:
        signed = Signed.sign(self.key, msg)
        if is_kind(signed, ViewChange):
            pending_vc: Signed[ViewChange] | None = signed
        elif self.in_view_change and not isinstance(msg, NewView):
            pending_vc = self._my_view_change
        else:
            pending_vc = None  # the view is settled (a NEW-VIEW settles it for its sender)
        best = self.best_prepared
        record = VoteRecord(self.view, best, pending_vc, None if best is None else self.blocks.get(best.block_hash))
        if record != self._record_saved:
            self._record_saved = record
            self._out.append(SaveVotes(record))
        self._out.append(Broadcast(signed.to_plain()))
        self._on_signed(signed)
        return signed

    def _timeout_ms(self) -> int:
        ms = self.params.view_timeout_ms << min(self.patience + self.failed_views, 30)
        return min(ms, self.params.max_view_timeout_ms)

    def _arm_timer(self, restart: bool = False) -> None:
        """Run the view timer iff this view owes us progress.

        In a settled view that is whenever there is work (pending txs or an uncommitted
        proposal). While changing views it always runs: see `_upon_timeout`. The timer keeps
        running while (view, height) stays the same, unless `restart` asks for a full period
        from now: a new wait began (`_upon_view_change_quorum_formed`, `_upon_new_view`).
        """
        if self.in_view_change:
            work = True
        else:
            slot = self.slots.get((self.view, self.height))
            work = self.ready and (self.app.has_pending() or (slot is not None and slot.pre_prepare is not None))
        if not work:
            if self.timer is not None:
                self.timer = None
                self._out.append(CancelTimer())
        elif restart or self.timer != (self.view, self.height):
            self.timer = (self.view, self.height)
            self._out.append(SetTimer(self.view, self.height, self._timeout_ms()))

    def _authentic(self, signed: Signed[Message], height: int) -> bool:
        vset = self.vset(height)
        return signed.sender in vset.publics and self._verify(
            signed.sender, Domain.CONSENSUS, signed.body_bytes, signed.sig
        )

    def _record(self, signed: Signed[Message]) -> bool:
        """False for a duplicate; equivocation is recorded as evidence and also refused."""
        msg = signed.msg
        key = (signed.sender, msg.kind, msg.view, msg.height)
        if key not in self._seen:
            self._seen[key] = signed
            return True
        self._witness(signed)
        return False

    def _witness(self, signed: Signed[Message]) -> None:
        """Record evidence if an authentic `signed` conflicts with what its sender sent us directly.

        Called for every message taken (`_record`) and for the authentic messages inside prepared
        proofs: a primary that sent each peer another PRE-PREPARE is caught when a peer's proof
        shows us the one we did not get. One piece of evidence per (sender, kind, view, height)
        is proof enough; more conflicting copies would only let a faulty validator grow our memory.
        """
        msg = signed.msg
        key = (signed.sender, msg.kind, msg.view, msg.height)
        first = self._seen.get(key)
        if first is None or first.digest == signed.digest or key in self._convicted:
            return
        if msg.kind in ("pre_prepare", "prepare", "commit"):
            self._convicted.add(key)
            self.evidence.append(Evidence(signed.sender, msg.kind, msg.view, msg.height, first, signed))

    def take_evidence(self) -> list[Evidence]:
        """The evidence found since the last call (the driver stores it; the core forgets it)."""
        out, self.evidence = self.evidence, []
        return out

    # ------------------------------------------------------------ messages in

    def _on_wire(self, plain: Any) -> None:
        try:
            signed = parse_signed(plain)
        except (MessageError, RecursionError):
            return
        if signed.sender == self.key.public:
            return  # our own messages were handled when we sent them
        self._on_signed(signed)

    def _on_signed(self, signed: Signed[Message]) -> None:
        msg = signed.msg
        if not self._authentic(signed, self._buffer_height(msg.height)):
            return
        self._note_peer_height(signed.sender, msg.height)
        if is_kind(signed, Status):
            self._upon_status(signed.msg)
            return
        if is_kind(signed, NewView):
            self._upon_new_view(signed)
            return
        if msg.height < self.height and not isinstance(msg, ViewChange):
            return  # below our stable checkpoint
        if msg.height > self.height + HEIGHT_WINDOW or msg.view > self.view + VIEW_WINDOW:
            return
        if is_kind(signed, ViewChange):
            self._upon_view_change(signed)
            return
        if msg.view < self.view or not self._record(signed):
            return
        slot = self.slot(msg.view, msg.height)
        if is_kind(signed, PrePrepare):
            if signed.sender != self.primary(msg.view, msg.height) or slot.pre_prepare is not None:
                return
            slot.pre_prepare = signed
        elif is_kind(signed, Prepare):
            slot.prepares[signed.sender] = signed
        elif is_kind(signed, Commit):
            vote = signed.msg
            if not self._verify(signed.sender, Domain.COMMIT, _commit_bytes(self.chain_id, vote), vote.commit_sig):
                return
            slot.commits[signed.sender] = signed
        self._progress(msg.view, msg.height)

    def _buffer_height(self, height: int) -> int:
        """The height whose (perhaps guessed) set admits a message for `height` to our buffers.

        Far-future heights have no set at all yet; their senders are judged by today's. Either
        way this only admits a message: a vote counts only once its height is the one being
        decided, against that height's known set (`_members`).
        """
        return height if height <= self.height + HEIGHT_WINDOW else self.height

    def _note_peer_height(self, sender: str, height: int) -> None:
        if height <= self.peer_heights.get(sender, 0):
            return
        self.peer_heights[sender] = height
        ahead = sorted((h for h in self.peer_heights.values() if h > self.height), reverse=True)
        f = self.vset().f
        if len(ahead) > f:
            # f+1 validators work above our height, so at least one honest one committed up to there
            self._request_sync(ahead[f] - 1)

    # ------------------------------------------------------------ blocks

    def block_by_hash(self, block_hash: str) -> Block | None:
        """A block we hold and may still need, for a peer that asks (pure: changes nothing)."""
        return self.blocks.get(block_hash)

    def wants_block(self, block_hash: str) -> bool:
        """Whether we asked for this block and still lack it (pure: for the driver's fetch loop)."""
        return block_hash in self._fetching and block_hash not in self.blocks

    def _wanted_hashes(self) -> set[str]:
        """The hashes of the blocks we may still need; nothing else is kept (memory bound).

        At most: the current view's pre-prepare at h and at h+1, our prepared proof (an honest
        replica must be able to serve the block its VIEW-CHANGE vouches for), the hashes a commit
        quorum names, and, as the primary of the view we are changing to, the blocks of the
        proofs in its VIEW-CHANGEs (one per validator).
        """
        top = self.height + BLOCK_HEIGHTS - 1
        wanted = {
            h for (v, height), slot in self.slots.items()
            if v == self.view and self.height <= height <= top and (h := slot.block_hash) is not None
        }
        if self.best_prepared is not None:
            wanted.add(self.best_prepared.block_hash)
        wanted.update(self._needed)
        wanted.update(self._proof_blocks)
        return wanted

    def _prune_blocks(self) -> None:
        wanted = self._wanted_hashes()
        self.blocks = {h: b for h, b in self.blocks.items() if h in wanted}
        top = self.height + BLOCK_HEIGHTS - 1
        self._loose = {k: b for k, b in self._loose.items() if self.height <= k[1] <= top}

    def _upon_block(self, sender: str, block: Block) -> None:
        """Upon a block from a peer: keep it if a message we hold names it, or else as the one
        block this sender may have waiting for its pre-prepare at that height."""
        height = block.height
        if not self.height <= height < self.height + BLOCK_HEIGHTS or sender not in self.vset(height).publics:
            return
        block_hash = block.block_hash
        if block_hash in self.blocks:
            return
        try:
            block.check_tx_root()  # the hash covers the header only: the txs must be the header's
        except BlockError:
            return
        if block_hash not in self._wanted_hashes():
            self._loose[(sender, height)] = block
            return
        self.blocks[block_hash] = block
        if height == self.height:
            self._progress(self.view, self.height)
            self._upon_view_change_quorum()  # a proof's block we waited for, as the next primary

    def _block(self, block_hash: str, height: int) -> Block | None:
        """The block with this hash, from the cache or the loose blocks; if we hold neither,
        ask the driver to fetch it (once until the next timeout). Call only for wanted hashes."""
        block = self.blocks.get(block_hash)
        if block is not None:
            return block
        for key, loose in self._loose.items():
            if loose.block_hash == block_hash:
                del self._loose[key]
                self.blocks[block_hash] = loose
                return loose
        if block_hash not in self._fetching:
            self._fetching.add(block_hash)
            self._out.append(FetchBlock(block_hash, height))
        return None

    def _request_sync(self, to_height: int) -> None:
        if to_height < self.height or self.sync_requested >= (self.height, to_height):
            return
        self.sync_requested = (self.height, to_height)
        self._out.append(RequestSync(self.height, to_height))

    # ------------------------------------------------------------ the normal case

    def _progress(self, view: int, height: int) -> None:
        """Apply every normal-case rule that the slot (view, height) now enables."""
        def current() -> bool:
            return (view, height) == (self.view, self.height) and self.ready

        if not current():
            return
        slot = self.slot(view, height)
        block_hash = slot.block_hash
        if block_hash is not None and slot.valid is None and not self.in_view_change:
            block = self._block(block_hash, height)
            if block is not None:
                self._upon_pre_prepare(slot, block)
        # each rule may commit or change view, after which this slot is no longer ours
        if current() and slot.valid and not self.in_view_change:
            self._upon_prepare_quorum(slot)
        if current():
            self._upon_commit_quorum(slot)

    def _upon_pre_prepare(self, slot: Slot, block: Block) -> None:
        """Upon a PRE-PREPARE from the primary for our (view, height) and the block it names: validate, PREPARE."""
        assert slot.pre_prepare is not None and block.block_hash == slot.block_hash
        header = block.header
        vset = self.vset()
        if slot.pre_prepare.sender != vset.primary(self.view).public:
            slot.pre_prepare = None  # admitted under a guessed set: not this height's primary
            return
        # which primary proposes in which view is ours to check; everything else about the block
        # (its chain, height, parent, limits, txs, roots) is the application's (chain/validity.py)
        proposer_ok = header.view == self.view and header.proposer == vset.primary(self.view).public
        ok = (proposer_ok if slot.reproposal is None else block.block_hash == slot.reproposal) and self.app.validate(
            block
        )
        slot.valid = ok
        if not ok:
            self._start_view_change(self.view + 1)  # the primary proposed something invalid
            return
        self._arm_timer()
        if not self.in_view_change and not slot.sent_prepare and slot.pre_prepare.sender != self.key.public:
            slot.sent_prepare = True
            self._broadcast(Prepare(self.view, self.height, block.block_hash))

    def _upon_prepare_quorum(self, slot: Slot) -> None:
        """Upon a quorum of PREPAREs matching the pre-prepare (which counts as one): COMMIT."""
        block_hash = slot.block_hash
        assert block_hash is not None and slot.pre_prepare is not None
        primary = slot.pre_prepare.sender
        members = self._members()
        prepares = {s: m for s, m in slot.votes_for(slot.prepares, block_hash).items() if s != primary and s in members}
        if len(prepares) + 1 < self.vset().quorum:
            return
        proof = PreparedProof(slot.pre_prepare, tuple(prepares[s] for s in sorted(prepares)))
        if self.best_prepared is None or self.best_prepared.view < self.view:
            self.best_prepared = proof
        if not slot.sent_commit:
            slot.sent_commit = True
            sig = sign_commit(self.key, self.chain_id, self.height, self.view, block_hash)
            self._broadcast(Commit(self.view, self.height, block_hash, sig))

    def _upon_commit_quorum(self, slot: Slot) -> None:
        """Upon a quorum of matching COMMITs: the signatures are the certificate; commit."""
        by_hash: dict[str, dict[str, str]] = {}
        members = self._members()
        for sender, signed in slot.commits.items():
            if sender not in members:
                continue  # admitted under a guessed set (e.g. before its removal was committed)
            by_hash.setdefault(signed.msg.block_hash, {})[sender] = signed.msg.commit_sig
        quorum = self.vset().quorum
        for block_hash in sorted(by_hash):
            sigs = by_hash[block_hash]
            if len(sigs) < quorum:
                continue
            self._needed[block_hash] = self.height
            block = self._block(block_hash, self.height)
            if block is None:
                # a quorum certified a block we do not hold: fetch it by hash (a peer that committed
                # it serves it from its store), and sync in case they have moved on already
                self._request_sync(self.height)
                return
            self._commit(block, Certificate.build(self.height, self.view, block_hash, sigs))
            return

    def _commit(self, block: Block, certificate: Certificate) -> None:
        self._out.append(CommitBlock(block, certificate))
        self.height += 1
        self.prev_hash = block.block_hash
        self.last_certificate = certificate
        self.ready = False
        self.best_prepared = None
        self._learn_patience()
        self.slots = {k: s for k, s in self.slots.items() if k[1] >= self.height}
        self._seen = {k: s for k, s in self._seen.items() if k[3] >= self.height}
        self._convicted = {k for k in self._convicted if k[3] >= self.height}
        self._proof_blocks = set()
        self._needed = {h: height for h, height in self._needed.items() if height >= self.height}
        self._fetching = set()
        self._prune_blocks()
        if self.timer is not None:
            self.timer = None
            self._out.append(CancelTimer())

    def _learn_patience(self) -> None:
        """At a commit: a height whose primary proposed and was still left lengthens the next
        heights' timer one step; PATIENCE_RELAX commits in a row without a view change shorten it
        one step."""
        if self.left_a_proposal:
            self.patience = min(self.patience + 1, MAX_PATIENCE)
        if self.failed_views:
            self.clean_commits = 0
        else:
            self.clean_commits += 1
            if self.clean_commits >= PATIENCE_RELAX and self.patience:
                self.patience -= 1
                self.clean_commits = 0
        self.failed_views = 0
        self.left_a_proposal = False

    def _upon_persisted(self, height: int) -> None:
        """Upon the driver having persisted our head: take up the next height."""
        if height != self.height - 1 or self.ready:
            return
        self.ready = True
        self._upon_pending_new_views()
        self._progress(self.view, self.height)
        self._upon_view_change_quorum()
        self._maybe_propose()
        self._arm_timer()

    def _upon_txs_pending(self) -> None:
        self._maybe_propose()
        self._arm_timer()

    def _maybe_propose(self) -> None:
        """Upon being the primary of a settled view with nothing proposed at this height: propose."""
        if not self.ready or self.in_view_change or self.primary(self.view) != self.key.public:
            return
        slot = self.slot(self.view, self.height)
        if slot.proposed or slot.pre_prepare is not None:
            return
        block = self.app.propose(self.height, self.view)
        if block is None:
            return
        slot.proposed = True
        self.blocks[block.block_hash] = block
        self._out.append(BroadcastBlock(block))  # ahead of the PRE-PREPARE on every link
        self._broadcast(PrePrepare(self.view, self.height, block.block_hash))

    def _upon_synced_block(self, block: Block, certificate: Certificate) -> None:
        """Upon a fetched block for our next height whose certificate verifies: commit it."""
        if not self.ready or block.height != self.height or block.header.prev_hash != self.prev_hash:
            return
        try:
            certificate.verify(self.chain_id, block.height, block.block_hash, self.vset(block.height))
            block.check_tx_root()
        except (CertificateError, ValueError):
            return
        self._commit(block, certificate)

    # ------------------------------------------------------------ view change

    def _upon_timeout(self, view: int, height: int) -> None:
        """Upon the view timer firing for the current (view, height): give up on the view.

        While changing views, the replica gives up on the new view w only once a quorum asked
        for w or a later view (else one replica that timed out alone would run ahead of the
        others); short of that it sends its VIEW-CHANGE again, since messages may have been lost.
        A VIEW-CHANGE for a view above w counts: its sender left w-1 as surely as one asking for
        w, and it will never ask for w again (if it restarted, it no longer even holds the
        VIEW-CHANGEs for w that it could have relayed), so waiting for it would wait forever.
        """
        if (view, height) != self.timer:
            return
        self.timer = None
        self.sync_requested = (0, 0)  # a sync that came to nothing may be asked for again
        self._fetching = set()  # likewise a block fetch
        if self.in_view_change and len(self._asked_for_view_or_later(self.view)) < self.vset().quorum:
            mine = self._my_view_change
            if mine is not None and mine.msg.height < self.height and self.key.public in self._members():
                # we asked for this view at an earlier height, then committed that height (by
                # sync): the others count VIEW-CHANGEs of this height only, and a validator that
                # joined the set at this height is needed for the quorum (found by the simulator
                # with a rotated seat: both new keys re-sent a stale message forever)
                self._my_view_change = self._broadcast(ViewChange(self.view, self.height, self.best_prepared))
            elif mine is not None:
                self._out.append(Broadcast(mine.to_plain()))
            self._arm_timer()
            return
        self._start_view_change(self.view + 1)

    def _asked_for_view_or_later(self, view: int) -> set[str]:
        """The validators whose VIEW-CHANGEs we hold for `view` or a later view."""
        members = self._members()
        return {s for v, votes in self.view_changes.items() if v >= view for s in votes if s in members}

    def _start_view_change(self, view: int) -> None:
        if view <= self.view:
            return
        self.failed_views += 1
        left = self.slots.get((self.view, self.height))
        if not self.in_view_change and left is not None and left.pre_prepare is not None:
            self.left_a_proposal = True
        self.view = view
        self.in_view_change = True
        self._proof_blocks = set()
        self._prune_blocks()
        self._my_view_change = self._broadcast(ViewChange(view, self.height, self.best_prepared))
        self._arm_timer()

    def _valid_view_change(self, msg: ViewChange) -> bool:
        proof = msg.prepared
        if proof is None:
            return True
        return self._valid_proof(proof, msg.height) and proof.view < msg.view

    def _valid_proof(self, proof: PreparedProof, height: int) -> bool:
        pp = proof.pre_prepare
        msg = pp.msg
        if msg.height != height:
            return False
        vset = self.vset(height)
        if pp.sender != vset.primary(msg.view).public or not self._authentic(pp, height):
            return False
        self._witness(pp)
        senders: set[str] = set()
        for p in proof.prepares:
            m = p.msg
            if (m.view, m.height, m.block_hash) != (msg.view, height, msg.block_hash):
                return False
            if p.sender in senders or p.sender == pp.sender or not self._authentic(p, height):
                return False
            self._witness(p)
            senders.add(p.sender)
        return len(senders) + 1 >= vset.quorum

    def _upon_view_change(self, signed: Signed[ViewChange], reply: bool = True) -> None:
        """Upon a VIEW-CHANGE: help a lagging sender, join f+1, or (as new primary) gather a quorum.

        `reply` is False for VIEW-CHANGEs relayed inside a STATUS, so help never begets help.
        """
        msg = signed.msg
        reply = reply and signed.sender != self.key.public
        if msg.view < self.view or (msg.view == self.view and not self.in_view_change):
            if reply:
                self._send_status(signed.sender, msg.view)
            return
        if msg.height < self.height and reply:
            self._send_status(signed.sender, msg.view)
        if not self._valid_view_change(msg):
            return
        votes = self.view_changes.setdefault(msg.view, {})
        if signed.sender in votes:
            return
        votes[signed.sender] = signed
        self._upon_f_plus_one_view_changes()
        self._upon_view_change_quorum()
        self._upon_view_change_quorum_formed(msg.view)
        self._arm_timer()

    def _upon_f_plus_one_view_changes(self) -> None:
        """Upon f+1 validators asking for views above ours: move to the lowest view they all pass."""
        highest: dict[str, int] = {}
        members = self._members()
        for view, votes in self.view_changes.items():
            if view > self.view:
                for sender in votes:
                    if sender in members:
                        highest[sender] = max(highest.get(sender, 0), view)
        f = self.vset().f
        if len(highest) > f:
            self._start_view_change(sorted(highest.values(), reverse=True)[f])

    def _upon_view_change_quorum_formed(self, view: int) -> None:
        """Upon the q-th VIEW-CHANGE for the view we are changing to: restart the view timer.

        From here on we wait for the NEW-VIEW, and that wait gets a full period: a replica that
        entered the view long before the others joined it must not give up on it the moment
        they do, while the NEW-VIEW is still on its way (it would then be alone a view ahead).
        """
        members = self._members()
        if view == self.view and self.in_view_change and len(self.view_changes.get(view, {}).keys() & members) == self.vset().quorum:
            self._arm_timer(restart=True)

    def _upon_view_change_quorum(self) -> None:
        view = self.view
        if not self.ready or not self.in_view_change or view in self.sent_new_view or self.primary(view) != self.key.public:
            return
        members = self._members()
        votes = {s: v for s, v in self.view_changes.get(view, {}).items() if s in members}
        usable = {s: v for s, v in votes.items() if v.msg.height <= self.height}
        quorum = self.vset().quorum
        if len(usable) < quorum:
            if len(votes) >= quorum:
                self._request_sync(max(v.msg.height for v in votes.values()) - 1)
            return
        chosen = self._choose_view_changes(usable, quorum)
        proof = _highest_proof(chosen, self.height)
        pre_prepare = None
        if proof is not None:
            block = self.blocks.get(proof.block_hash)
            if block is None:
                return  # we fetch the proofs' blocks; each arrival brings us back here
            pre_prepare = Signed.sign(self.key, PrePrepare(view, self.height, proof.block_hash))
            self._out.append(BroadcastBlock(block))  # ahead of the NEW-VIEW; we can serve it, too
        self.sent_new_view.add(view)
        self._broadcast(NewView(view, self.height, chosen, pre_prepare))

    def _choose_view_changes(
        self, usable: dict[str, Signed[ViewChange]], quorum: int
    ) -> tuple[Signed[ViewChange], ...]:
        """q of the usable VIEW-CHANGEs, those whose proof's block we hold first; ask for the rest.

        Any q valid VIEW-CHANGEs make a safe NEW-VIEW (every quorum holds a proof of whatever may
        have been committed, see "Why it is safe"), so the choice is free. Preferring the proofs
        whose blocks we hold means we re-propose only a block we can serve, and a Byzantine
        VIEW-CHANGE whose proof names a block nobody gives us is left out once q others are here:
        an honest sender keeps the block of its proof (persisted with its vote record), so the
        blocks of the honest VIEW-CHANGEs all arrive.
        """
        def held(vc: Signed[ViewChange]) -> bool:
            m = vc.msg
            return m.prepared is None or m.height != self.height or m.prepared.block_hash in self.blocks

        for vc in usable.values():
            m = vc.msg
            if not held(vc) and m.prepared is not None:
                self._proof_blocks.add(m.prepared.block_hash)
                self._block(m.prepared.block_hash, self.height)  # from the loose blocks, or fetched
        order = sorted(usable, key=lambda s: (not held(usable[s]), s))
        return tuple(usable[s] for s in order[:quorum])

    def _check_new_view(self, signed: Signed[NewView]) -> bool:
        """Whether a NEW-VIEW for a height whose set we know proves that view `msg.view` may start.

        Its own signature is checked here, whatever path brought it (a relay inside a STATUS
        is no less a claim of the primary's than a direct message).
        """
        msg = signed.msg
        vset = self.vset(msg.height)
        if signed.sender != vset.primary(msg.view).public or not self._authentic(signed, msg.height):
            return False
        senders: set[str] = set()
        for vc in msg.view_changes:
            m = vc.msg
            if m.view != msg.view or m.height > msg.height:
                return False
            if vc.sender in senders or not self._authentic(vc, msg.height) or not self._valid_view_change(m):
                return False
            senders.add(vc.sender)
        if len(senders) < vset.quorum:
            return False
        proof = _highest_proof(msg.view_changes, msg.height)
        pp = msg.pre_prepare
        if pp is None:
            return proof is None
        if (pp.msg.view, pp.msg.height) != (msg.view, msg.height) or pp.sender != signed.sender:
            return False
        if not self._authentic(pp, msg.height):
            return False
        return proof is None or pp.msg.block_hash == proof.block_hash

    def _upon_new_view(self, signed: Signed[NewView]) -> None:
        """Upon a valid NEW-VIEW for a view above ours (or the one we are changing to): enter it."""
        msg = signed.msg
        if msg.view < self.view or (msg.view == self.view and not self.in_view_change):
            return
        if msg.view > self.view + VIEW_WINDOW or self._defer_new_view(signed):
            return
        if not self._check_new_view(signed):
            return
        self.view = msg.view
        self.in_view_change = False
        self._proof_blocks = set()  # the re-proposal, if any, is now the pre-prepare of our slot
        self.new_view_msg = signed
        self.view_changes = {v: s for v, s in self.view_changes.items() if v > self.view}
        self.pending_new_views = {v: s for v, s in self.pending_new_views.items() if v > self.view}
        # only the view being changed to is ever looked up: one entry per view change would
        # otherwise stay for the process's life
        self.sent_new_view = {v for v in self.sent_new_view if v > self.view}
        if msg.pre_prepare is not None and msg.height == self.height:
            slot = self.slot(msg.view, msg.height)
            proof = _highest_proof(msg.view_changes, msg.height)
            slot.reproposal = None if proof is None else proof.block_hash
            if self._record(msg.pre_prepare):
                slot.pre_prepare = msg.pre_prepare
                slot.proposed = True
        self._prune_blocks()
        self._arm_timer(restart=True)  # the settled view gets a full period, not the change's remainder
        self._progress(self.view, self.height)
        self._maybe_propose()
        self._arm_timer()

    def _defer_new_view(self, signed: Signed[NewView]) -> bool:
        """Hold a NEW-VIEW for a height beyond ours until we have committed up to it.

        A NEW-VIEW for height H says that every height below H is decided; its VIEW-CHANGEs'
        prepared proofs are looked at for H only. Entering its view at a lower height would let
        its primary propose afresh at a height where a block may already be committed (its
        proofs, at heights below H, ignored). So the replica fetches the certified blocks up to
        H-1 first, and checks the NEW-VIEW only then, against the set of H, which it knows by
        then. It stays in its view change meanwhile: no proposal of that view counts for it.
        """
        msg = signed.msg
        if self._set_known(msg.height):
            return False
        if self._verify(signed.sender, Domain.CONSENSUS, signed.body_bytes, signed.sig):
            self.pending_new_views[msg.view] = signed
            self._request_sync(msg.height - 1)
        return True

    def _upon_pending_new_views(self) -> None:
        """Upon our head reaching the height of a held NEW-VIEW: check it now (`_defer_new_view`)."""
        for view in sorted(self.pending_new_views):
            signed = self.pending_new_views[view]
            if view < self.view or self._set_known(signed.msg.height):
                del self.pending_new_views[view]
                if view >= self.view:
                    self._upon_new_view(signed)

    def _send_status(self, to: str, their_view: int) -> None:
        head_hash = self.prev_hash if self.last_certificate is not None else None
        # the VIEW-CHANGEs for the view it is stuck in: they moved us on, so they can move it on
        votes = self.view_changes.get(their_view, {}) if their_view < self.view else {}
        relayed = tuple(votes[s] for s in sorted(votes) if s != to)
        status = Status(self.view, self.height - 1, head_hash, self.last_certificate, self.new_view_msg, relayed)
        self._out.append(Send(to, Signed.sign(self.key, status).to_plain()))

    def _upon_status(self, msg: Status) -> None:
        """Upon a STATUS: take its VIEW-CHANGEs, adopt the view its NEW-VIEW proves, sync to its head."""
        for vc in msg.view_changes:
            if self._authentic(vc, self._buffer_height(vc.msg.height)):
                self._upon_view_change(vc, reply=False)
        if msg.new_view is not None:
            self._upon_new_view(msg.new_view)
        cert = msg.certificate
        if cert is None or msg.head_block_hash is None or msg.height < self.height:
            return
        try:
            cert.verify(self.chain_id, msg.height, msg.head_block_hash, self.vset(msg.height))
        except CertificateError:
            return
        self._request_sync(msg.height)


def _commit_bytes(chain_id: str, msg: Commit) -> bytes:
    return commit_message(chain_id, msg.height, msg.view, msg.block_hash)


def _highest_proof(view_changes: tuple[Signed[ViewChange], ...], height: int) -> PreparedProof | None:
    """The prepared proof of the highest view among those for `height` (ties: lowest block hash)."""
    best: PreparedProof | None = None
    for vc in view_changes:
        m = vc.msg
        if m.height != height or m.prepared is None:
            continue
        p = m.prepared
        if best is None or (p.view, best.block_hash) > (best.view, p.block_hash):
            best = p
    return best
