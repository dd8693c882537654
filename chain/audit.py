"""Verification that trusts nothing but the genesis: whole chains, and ownership and absence proofs.

`verify_chain` replays a store from the genesis and compares everything the store holds with
what replay yields. Re-execution is the contracts' business and chain/ may not import them, so
the caller injects it (contracts.apply.reexecute). `verify_ownership_proof` needs no store and
no contracts at all: hashes, signatures and the state tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from chain import smt
from chain.audit_tree import TreeRecords
from chain.audit_txids import TxIds
from chain.block import Block, BlockError, Certificate, CertificateError
from chain.encoding import EncodingError
from chain.genesis import Genesis

# The proof check's first import path (docs/sdk.md showed it), kept for programs written against it.
from chain.proofcheck import ProofResult as ProofResult
from chain.proofcheck import verify_ownership_proof as verify_ownership_proof
from chain.receipt import Receipt
from chain.sigcheck import BlockReader, Fetched, fetch_blocks, fetch_raw_blocks
from chain.store import RESERVED_PREFIXES, Store, StoreError
from chain.tx import TxError
from chain.validators import ValidatorSet
from chain.validity import BlockInvalid, Parent, check_block

Reader = Callable[[bytes], bytes | None]


class Replay(Protocol):
    # read-only members, so that a frozen dataclass (contracts.apply.ApplyResult) satisfies it
    @property
    def records(self) -> Mapping[bytes, bytes | None]: ...  # what the block writes but its state tree
    @property
    def tree(self) -> smt.TreeWrites: ...  # the state tree's records (chain/smt.py)
    @property
    def receipts(self) -> list[Receipt]: ...
    @property
    def state_root(self) -> str: ...
    @property
    def receipts_root(self) -> str: ...
    @property
    def next_validators(self) -> ValidatorSet: ...


# (reader of the replayed store at height-1, genesis, block or None for the genesis state,
#  previous state root) -> what the block writes; raises on a tx the contracts refuse
Reexecute = Callable[[Reader, Genesis, Block | None, str], Replay]
Progress = Callable[[int, int, int], None]  # (height done, head height, txs done)


class ChainSource(Protocol):
    """What the audit reads: a Store, or anything holding blocks the same way (an RPC's answers),
    whose records are then not compared (`records=False`)."""

    genesis_hash: str

    @property
    def height(self) -> int: ...

    def get_block(self, height: int) -> Block | None: ...

    def get_certificate(self, height: int) -> Certificate | None: ...

    def get_receipts(self, height: int) -> list[Receipt] | None: ...

    def height_of(self, block_hash: str) -> int | None: ...

    def tx_location(self, tx_id: str) -> tuple[int, int] | None: ...


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    height: int | None  # the first bad height (0: genesis state or store identity), None if ok
    reason: str
    blocks: int = 0
    txs: int = 0
    state_root: str = ""
    # the heights whose state trees were compared node for node with the store's (a pruned store
    # keeps them from its m/state_from on); None when records were not compared. Every height's
    # root is re-computed from the genesis either way.
    state_versions: tuple[int, int] | None = None
    base: int = 0  # the height the audit started from: 0 (the genesis), or a synced store's base

    @property
    def coverage(self) -> str:
        if self.state_versions is None:
            return "the store's own records were not compared (blocks, certificates and receipts were)"
        first, last = self.state_versions
        pruned = f"; those of heights 0..{first - 1} were pruned from it" if first > 0 else ""
        if self.base:
            pruned = f"; the store holds none below its base {self.base} (state sync)"
        return f"state versions of heights {first}..{last} compared with the store{pruned}"


class _Bad(Exception):
    def __init__(self, height: int, reason: str) -> None:
        super().__init__(reason)
        self.height = height
        self.reason = reason


def verify_chain(
    store: ChainSource,
    genesis: Genesis,
    reexecute: Reexecute,
    progress: Progress | None = None,
    *,
    records: bool = True,
    workers: int = 1,
    base_rules: Any = None,
) -> AuditReport:
    """Check every block of store from the genesis; the report names the first bad height.

    A store made by state sync holds no block below its base S: its base is checked from the
    genesis instead (chain/audit_base.py, with the contracts' `base_rules`) and the blocks from
    S + 1 on as usual; the report's `base` says so.

    With `records` false the store's own apply-path records (state, history, indexes) are not
    compared with replay: for a source that holds only blocks, certificates and receipts, such
    as a node's RPC (only a Store's records can be compared). Everything the blocks and
    certificates commit to is still checked.
    With `workers` above 1, tx signatures are checked ahead in that many processes
    (chain/sigcheck.py); everything else, re-execution above all, stays here and in order, so
    the report is the same for any number of workers.
    """
    if records and not isinstance(store, Store):
        raise TypeError("only a Store's records can be compared: audit another source with records=False")
    if store.genesis_hash != genesis.hash:
        return AuditReport(False, 0, "the store belongs to another genesis")
    blocks = txs = 0
    replay: dict[bytes, bytes | None] = {}
    written_at = _Writers(track=records)
    base = store.base_height if isinstance(store, Store) else 0
    state_from = store.state_from if isinstance(store, Store) else 0
    head = store.height
    tree = _tree_records(store, records, max(state_from, base), head)
    read = tree.reader(replay.get)
    try:
        root, vset, prev, window = _start(store, genesis, reexecute, replay, written_at, base_rules, tree)
        ids = TxIds(base, window)
        for height, fetched in _fetch(store, base + 1, head, workers):
            try:
                block, result = _check_height(store, genesis, reexecute, read, ids, fetched, height, prev, vset, root)
            except (EncodingError, ValueError, TypeError, KeyError, IndexError) as e:
                # a record altered into something that does not even parse
                raise _Bad(height, f"unreadable record: {type(e).__name__}: {e}") from None
            _absorb(replay, written_at, result, height, tree)
            root, vset, prev = result.state_root, result.next_validators, block.block_hash
            blocks += 1
            txs += len(block.txs)
            if progress is not None:
                progress(height, head, txs)
        versions = None
        if records:
            assert isinstance(store, Store)
            _prune_replay(replay, written_at, state_from)
            _check_records(store, replay, written_at, ids, head, tree)
            versions = (min(state_from, head), head)
    except _Bad as bad:
        # a difference already found below the height that stopped the replay comes first
        height, reason = min([d for d in tree.differences if d[0] < bad.height], default=(bad.height, bad.reason))
        return AuditReport(False, height, reason, blocks, txs, base=base)
    return AuditReport(True, None, "", blocks, txs, root, versions, base=base)


def _tree_records(store: ChainSource, records: bool, kept_from: int, head: int) -> TreeRecords:
    """The replay's state tree; a Store's tree records of the heights above `kept_from` (where it
    keeps every state version whole) compared with it block by block, when records are."""
    if not (records and isinstance(store, Store)):
        return TreeRecords(None, None, head, at_end=records)
    return TreeRecords(store.records, kept_from, head)


def _start(
    store: ChainSource,
    genesis: Genesis,
    reexecute: Reexecute,
    replay: dict[bytes, bytes | None],
    written_at: _Writers,
    base_rules: Any,
    tree: TreeRecords,
) -> tuple[str, ValidatorSet, str, dict[str, tuple[int, int]]]:
    """The replay's starting point: the genesis state, or a synced store's checked base.
    Returns (state root, validator set of the next height, hash of the block before it, the
    tx ids committed before it that the store holds no pointer to: a synced store's window)."""
    if not isinstance(store, Store) or store.base is None:
        g = reexecute(replay.get, genesis, None, smt.EMPTY_ROOT)
        _absorb(replay, written_at, g, 0, tree)
        return g.state_root, g.next_validators, genesis.hash, {}
    from chain import audit_base  # it builds on this module's proof checks: imported when used

    if base_rules is None:
        raise _Bad(store.base.height, "a state-synced data dir: the audit needs the contracts' base rules")
    start = audit_base.base_start(store, genesis, base_rules)  # raises _Bad naming the base height
    replay.update(start.records)
    written_at.note(start.height, start.records)
    tree.keep(start.records)  # its tree's nodes and leaf data, among the contracts' records
    return start.state_root, start.next_validators, start.block_hash, start.window


def _prune_replay(replay: dict[bytes, bytes | None], written_at: _Writers, state_from: int) -> None:
    """Drop from the replay what a store pruned to `state_from` no longer holds (chain/store.py,
    `_prune`): the nodes retired at or below it, their marks, and the roots below it. What stays
    must then match the store exactly, as for an archive."""
    if state_from <= 0:
        return
    stale = [k for k in replay if k.startswith(smt.STALE_PREFIX) and smt.stale_height(k) <= state_from]
    doomed = stale + [node for k in stale for node in smt.retired_keys(replay[k] or b"")]
    doomed += [smt.root_key(h) for h in range(state_from)]
    for key in doomed:
        replay.pop(key, None)


def _fetch(store: ChainSource, first: int, head: int, workers: int) -> Iterator[tuple[int, Fetched]]:
    """A store's blocks come as their records, decoded and checked with their signatures in the
    workers, with their receipts; another source's (an RPC's) block by block, decoded here, its
    receipts asked for later."""
    if isinstance(store, Store):
        return fetch_raw_blocks(store.read_raw_block, first, head, workers)
    read: BlockReader = lambda height: (store.get_block(height), None)
    return fetch_blocks(read, first, head, workers)


def _check_height(
    store: ChainSource,
    genesis: Genesis,
    reexecute: Reexecute,
    read: Reader,
    ids: TxIds,
    fetched: Fetched,
    height: int,
    prev: str,
    vset: ValidatorSet,
    root: str,
) -> tuple[Block, Replay]:
    block = _check_block(store, genesis, fetched, height, prev, vset, ids)
    ids.add(height, block)
    try:
        result = reexecute(read, genesis, block, root)
    except TxError as e:
        raise _Bad(height, f"a tx the contracts refuse ({e.code}): {e.message}") from None
    _check_results(store, fetched, block, result)
    return block, result


def _absorb(replay: dict[bytes, bytes | None], written_at: _Writers, result: Replay, height: int, tree: TreeRecords) -> None:
    replay.update(result.records)  # a dict-level update, no Python loop: a block writes thousands of records
    written_at.note(height, result.records)
    kept = tree.absorb(height, result.tree, replay)  # compared with the store now, or kept for the end
    written_at.note(height, kept)


class _Writers:
    """Which height last wrote each record the replay holds, asked only to report a difference.

    One entry per record key, not per write: the dict shares its keys with the replay, and each
    block's keys go in with one C-level pass (`dict.fromkeys`) under one int for the height. Keeping
    each block's writes instead, to search them only on a difference, kept every version of every
    record the chain ever wrote alive: most of the audit's memory on a long chain, growing with its
    length rather than with the store (docs/performance.md, "The audit's memory beyond the tree").
    `None` (`track=False`): nothing is compared at the end, nothing is noted."""

    def __init__(self, track: bool = True) -> None:
        self.heights: dict[bytes, int] | None = {} if track else None

    def note(self, height: int, keys: Iterable[bytes]) -> None:
        if self.heights is not None:
            self.heights.update(dict.fromkeys(keys, height))

    def get(self, key: bytes, default: int) -> int:
        return default if self.heights is None else self.heights.get(key, default)


def _check_block(
    store: ChainSource,
    genesis: Genesis,
    fetched: Fetched,
    height: int,
    prev: str,
    vset: ValidatorSet,
    ids: TxIds,
) -> Block:
    if isinstance(fetched.error, (BlockError, EncodingError, TxError)):
        raise _Bad(height, f"block does not decode: {fetched.error}")
    if fetched.error is not None:
        raise fetched.error  # reported by the caller as an unreadable record, as any other
    block = fetched.block
    if block is None:
        raise _Bad(height, "block is missing")
    try:
        check_block(
            block,
            Parent(genesis.chain_id, height - 1, prev),
            vset,
            genesis.params,
            signature_ok=lambda index, _: index not in fetched.bad_sigs,  # checked ahead (chain/sigcheck.py)
            committed_at=ids.committed_at,
        )
    except BlockInvalid as e:
        raise _Bad(height, str(e)) from None
    try:
        cert = store.get_certificate(height)
    except (CertificateError, EncodingError) as e:
        raise _Bad(height, f"certificate does not decode: {e}") from None
    if cert is None:
        raise _Bad(height, "certificate is missing")
    try:
        cert.verify(genesis.chain_id, height, block.block_hash, vset)
    except CertificateError as e:
        raise _Bad(height, f"certificate: {e}") from None
    if store.height_of(block.block_hash) != height:
        raise _Bad(height, "block-hash index (x/) does not point at this height")
    return block


def _check_results(store: ChainSource, fetched: Fetched, block: Block, result: Replay) -> None:
    h = block.header
    height = block.height
    if result.state_root != h.state_root:
        raise _Bad(height, "state_root differs from re-execution")
    if result.receipts_root != h.receipts_root:
        raise _Bad(height, "receipts_root differs from re-execution")
    if result.next_validators.hash != h.next_validators_hash:
        raise _Bad(height, "next_validators_hash differs from re-execution")
    stored: list[Receipt] | None = fetched.receipts
    if stored is None:
        try:
            stored = store.get_receipts(height)
        except (ValueError, KeyError, TypeError) as e:  # a damaged summary or tx record
            raise _Bad(height, f"stored receipts (tx records, t/) do not decode: {e}") from None
    if stored != result.receipts:
        raise _Bad(height, "stored receipts differ from re-execution")
    if fetched.receipts is not None:
        return  # read from the same records as the block, each checked to sit at its place
    for index, tx in enumerate(block.txs):
        try:
            location = store.tx_location(tx.tx_id)
        except (EncodingError, ValueError) as e:
            raise _Bad(height, f"tx record (t/) of tx {index} does not decode: {e}") from None
        if location != (height, index):
            raise _Bad(height, f"tx record (t/) of tx {index} does not point at it")


def _check_records(
    store: Store,
    replay: dict[bytes, bytes | None],
    written_at: _Writers,
    ids: TxIds,
    head: int,
    tree: TreeRecords,
) -> None:
    """Every apply-path record the store holds against replay, and its tx records and pointers
    against the replayed txs; with the tree records' differences found block by block, the first
    bad height wins."""
    compared = tree.excluded_ranges()
    bad = [*tree.differences, *ids.store_differences(store, head)]
    if not bad and _records_match(store, replay, compared):
        return
    stored_keys = set()
    for key, value in _apply_records(store, compared):
        stored_keys.add(key)
        if replay.get(key) != value:
            where = written_at.get(key, head)
            what = "altered" if replay.get(key) is not None else "not written by any block"
            bad.append((where, f"stored record {key[:48]!r} is {what}"))
    for key, replayed in replay.items():
        if replayed is not None and key not in stored_keys:
            bad.append((written_at.get(key, head), f"record {key[:48]!r} is missing from the store"))
    if bad:
        height, reason = min(bad)
        raise _Bad(height, reason)


# records compared a chunk at a time: whole dicts (C loops, a few seconds for millions of records
# where a Python loop over them took tens), but never a copy of the whole store in memory
_CHUNK = 65_536


def _records_match(store: Store, replay: dict[bytes, bytes | None], compared: list[tuple[bytes, bytes]]) -> bool:
    """Whether the store's apply-path records are exactly the replay's. False sends the caller to
    the record-by-record comparison, which says what differs and where."""
    stored = 0
    records = _apply_records(store, compared)
    while chunk := dict(islice(records, _CHUNK)):
        if not chunk.items() <= replay.items():
            return False
        stored += len(chunk)
    return stored == len(replay) - list(replay.values()).count(None)


def _apply_records(store: Store, compared: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """The store's records outside its own (RESERVED_PREFIXES) and the key ranges `compared`
    (tree records compared block by block), in key order."""
    skipped = sorted([(p, _after(p)) for p in RESERVED_PREFIXES] + compared)
    starts = [b"", *(hi for _, hi in skipped)]
    for lo, hi in zip(starts, [*(lo for lo, _ in skipped), None], strict=True):  # every key outside them
        yield from store.iterate(b"", start=lo, stop=hi)


def _after(prefix: bytes) -> bytes:
    """The first key after every key that starts with prefix (prefixes here end in '/')."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def audit_data_dir(
    path: Any, genesis: Genesis, reexecute: Reexecute, progress: Progress | None = None, workers: int = 1,
    base_rules: Any = None,
) -> AuditReport:
    """Audit a data dir through a private read-only copy (safe while its node runs)."""
    try:
        store = Store.open_read_only(path, genesis.hash)
    except StoreError as e:
        return AuditReport(False, 0, str(e))
    try:
        return verify_chain(store, genesis, reexecute, progress, workers=workers, base_rules=base_rules)
    finally:
        store.close()


