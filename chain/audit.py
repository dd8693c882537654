"""Verification that trusts nothing but the genesis: whole chains, and ownership and absence proofs.

`verify_chain` replays a store from the genesis and compares everything the store holds with
what replay yields. Re-execution is the contracts' business and chain/ may not import them, so
the caller injects it (contracts.apply.reexecute). `verify_ownership_proof` needs no store and
no contracts at all: hashes, signatures and the state tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chain import smt
from chain.audit_tree import TreeRecords
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
from chain.txrecords import TX_INDEX_PREFIX, TX_RECORD_PREFIX, decode_tx_entry, tx_index_key, tx_place
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
    """What the audit reads: a Store, or anything holding blocks the same way (an RPC's answers).

    `iterate` is only read when the source's apply-path records are compared (`records=True`).
    """

    genesis_hash: str

    @property
    def height(self) -> int: ...

    def get_block(self, height: int) -> Block | None: ...

    def get_certificate(self, height: int) -> Certificate | None: ...

    def get_receipts(self, height: int) -> list[Receipt] | None: ...

    def height_of(self, block_hash: str) -> int | None: ...

    def tx_location(self, tx_id: str) -> tuple[int, int] | None: ...

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


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
    as a node's RPC. Everything the blocks and certificates commit to is still checked.
    With `workers` above 1, tx signatures are checked ahead in that many processes
    (chain/sigcheck.py); everything else, re-execution above all, stays here and in order, so
    the report is the same for any number of workers.
    """
    if store.genesis_hash != genesis.hash:
        return AuditReport(False, 0, "the store belongs to another genesis")
    blocks = txs = 0
    replay: dict[bytes, bytes | None] = {}
    written_at = _Writers()
    seen_tx: dict[str, tuple[int, int]] = {}
    base = store.base_height if isinstance(store, Store) else 0
    state_from = store.state_from if isinstance(store, Store) else 0
    head = store.height
    tree = _tree_records(store, records, max(state_from, base), head)
    read = tree.reader(replay.get)
    try:
        root, vset, prev = _start(store, genesis, reexecute, replay, written_at, seen_tx, base_rules, tree)
        for height, fetched in _fetch(store, base + 1, head, workers):
            try:
                block, result = _check_height(store, genesis, reexecute, read, seen_tx, fetched, height, prev, vset, root)
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
            _prune_replay(replay, written_at, state_from)
            if base:  # the window's txs (at or below the base) have ids (w/), not records or i/ pointers
                seen_tx = {tx_id: where for tx_id, where in seen_tx.items() if where[0] > base}
            # a Store's blocks were read from their t/ records (read_block), each decoded in full
            # and checked to sit at its place: the same bytes need not be decoded again here
            _check_indexes(store, replay, written_at, seen_tx, head, tree, placed=isinstance(store, Store))
            versions = (min(state_from, head), head)
    except _Bad as bad:
        return AuditReport(False, bad.height, bad.reason, blocks, txs, base=base)
    return AuditReport(True, None, "", blocks, txs, root, versions, base=base)


def _tree_records(store: ChainSource, records: bool, kept_from: int, head: int) -> TreeRecords:
    """The replay's state tree; a Store's tree records of the heights above `kept_from` (where it
    keeps every state version whole) compared with it block by block, when records are."""
    if not (records and isinstance(store, Store)):
        return TreeRecords(None, None, head)
    return TreeRecords(store.records, kept_from, head)


def _start(
    store: ChainSource,
    genesis: Genesis,
    reexecute: Reexecute,
    replay: dict[bytes, bytes | None],
    written_at: _Writers,
    seen_tx: dict[str, tuple[int, int]],
    base_rules: Any,
    tree: TreeRecords,
) -> tuple[str, ValidatorSet, str]:
    """The replay's starting point: the genesis state, or a synced store's checked base.
    Returns (state root, validator set of the next height, hash of the block before it)."""
    if not isinstance(store, Store) or store.base is None:
        g = reexecute(replay.get, genesis, None, smt.EMPTY_ROOT)
        _absorb(replay, written_at, g, 0, tree)
        return g.state_root, g.next_validators, genesis.hash
    from chain import audit_base  # it builds on this module's proof checks: imported when used

    if base_rules is None:
        raise _Bad(store.base.height, "a state-synced data dir: the audit needs the contracts' base rules")
    start = audit_base.base_start(store, genesis, base_rules)  # raises _Bad naming the base height
    replay.update(start.records)
    written_at.blocks.append((start.height, start.records))
    tree.keep(start.records)  # its tree's nodes and leaf data, among the contracts' records
    seen_tx.update(start.window)
    return start.state_root, start.next_validators, start.block_hash


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
    seen_tx: dict[str, tuple[int, int]],
    fetched: Fetched,
    height: int,
    prev: str,
    vset: ValidatorSet,
    root: str,
) -> tuple[Block, Replay]:
    block = _check_block(store, genesis, fetched, height, prev, vset, seen_tx)
    for index, tx in enumerate(block.txs):
        seen_tx[tx.tx_id] = (height, index)
    try:
        result = reexecute(read, genesis, block, root)
    except TxError as e:
        raise _Bad(height, f"a tx the contracts refuse ({e.code}): {e.message}") from None
    _check_results(store, fetched, block, result)
    return block, result


def _absorb(replay: dict[bytes, bytes | None], written_at: _Writers, result: Replay, height: int, tree: TreeRecords) -> None:
    replay.update(result.records)  # a dict-level update, no Python loop: a block writes thousands of records
    written_at.blocks.append((height, result.records))
    kept = tree.absorb(height, result.tree, replay)  # compared with the store now, or kept for the end
    written_at.blocks.append((height, kept))


class _Writers:
    """Which height last wrote a record: asked only to report a difference, so each block's writes
    are kept as they are and searched then, rather than indexed key by key as they come (a second
    dict of every record cost the audit as much as the replay itself)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, Mapping[bytes, bytes | None]]] = []

    def get(self, key: bytes, default: int) -> int:
        for height, writes in reversed(self.blocks):
            if key in writes:
                return height
        return default


def _check_block(
    store: ChainSource,
    genesis: Genesis,
    fetched: Fetched,
    height: int,
    prev: str,
    vset: ValidatorSet,
    seen_tx: dict[str, tuple[int, int]],
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
            committed_at=lambda tx_id: seen_tx[tx_id][0] if tx_id in seen_tx else None,
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


def _check_indexes(
    store: ChainSource,
    replay: dict[bytes, bytes | None],
    written_at: _Writers,
    seen_tx: dict[str, tuple[int, int]],
    head: int,
    tree: TreeRecords,
    *,
    placed: bool = False,
) -> None:
    """Every apply-path record and tx index entry the store holds, against replay (the tree records
    `tree` compared block by block aside, with their differences); first bad height wins.

    `placed`: the t/ records of the blocks' txs were already checked to sit at their places."""
    compared = tree.excluded_ranges()
    if not tree.differences and placed and isinstance(store, Store) and _records_match(store, replay, seen_tx, compared):
        return
    bad: list[tuple[int, str]] = list(tree.differences)
    stored_keys = set()
    places = {tx_place(*where): tx_id for tx_id, where in seen_tx.items()}
    indexed = 0
    for key, value in store.iterate(b""):
        if key.startswith(RESERVED_PREFIXES):
            if key.startswith((TX_RECORD_PREFIX, TX_INDEX_PREFIX)):
                indexed += _check_tx_key(key, value, places, seen_tx, head, bad, placed)
            continue
        if tree.is_compared_key(key):
            continue
        stored_keys.add(key)
        if replay.get(key) != value:
            where = written_at.get(key, head)
            what = "altered" if replay.get(key) is not None else "not written by any block"
            bad.append((where, f"stored record {key[:48]!r} is {what}"))
    for key, replayed in replay.items():
        if replayed is not None and key not in stored_keys:
            bad.append((written_at.get(key, head), f"record {key[:48]!r} is missing from the store"))
    if indexed < len(seen_tx):  # a committed tx that its id no longer finds
        found = {k[len(TX_INDEX_PREFIX) :].decode(errors="replace") for k, _ in store.iterate(TX_INDEX_PREFIX)}
        for tx_id, (height, index) in seen_tx.items():
            if tx_id not in found:
                bad.append((height, f"tx index (i/) of tx {index} ({tx_id[:16]}…) is missing"))
    if bad:
        height, reason = min(bad)
        raise _Bad(height, reason)


def _records_match(
    store: Store,
    replay: dict[bytes, bytes | None],
    seen_tx: dict[str, tuple[int, int]],
    compared: list[tuple[bytes, bytes]],
) -> bool:
    """Whether the store's records are exactly the replay's, its tx records at the committed places
    and its tx pointers right: one comparison of whole dicts and sets (C loops, a few seconds for
    millions of records where a Python loop over them took tens). False sends the caller to the
    record-by-record comparison, which says what differs and where. The key ranges `compared`
    (tree records compared block by block) are skipped."""
    stored: dict[bytes, bytes] = {}
    skipped = sorted([(p, _after(p)) for p in RESERVED_PREFIXES] + compared)
    starts = [b"", *(hi for _, hi in skipped)]
    for lo, hi in zip(starts, [*(lo for lo, _ in skipped), None], strict=True):  # every key outside them
        stored.update(store.iterate(b"", start=lo, stop=hi))
    if len(stored) != len(replay) - list(replay.values()).count(None) or not stored.items() <= replay.items():
        return False
    places = {tx_place(*where) for where in seen_tx.values()}
    if {key[len(TX_RECORD_PREFIX) :] for key, _ in store.iterate(TX_RECORD_PREFIX)} != places:
        return False
    pointers = {tx_index_key(tx_id): tx_place(*where) for tx_id, where in seen_tx.items()}
    return dict(store.iterate(TX_INDEX_PREFIX)) == pointers


def _after(prefix: bytes) -> bytes:
    """The first key after every key that starts with prefix (prefixes here end in '/')."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _check_tx_key(
    key: bytes,
    value: bytes,
    places: dict[bytes, str],
    seen_tx: dict[str, tuple[int, int]],
    head: int,
    bad: list[tuple[int, str]],
    placed: bool,
) -> int:
    """A t/ record must sit at a block's tx place; an i/ pointer must name its tx's place. Returns 1
    for a sound i/ pointer (the caller counts them against the committed txs)."""
    if key.startswith(TX_RECORD_PREFIX):
        place = key[len(TX_RECORD_PREFIX) :]
        if place not in places:
            bad.append((head, f"tx record (t/) at {place[:40]!r} is the place of no block's tx"))
        elif not placed and _location(value) != seen_tx[places[place]]:
            bad.append((seen_tx[places[place]][0], f"tx record (t/) at {place!r} is altered"))
        return 0
    tx_id = key[len(TX_INDEX_PREFIX) :].decode(errors="replace")
    where = seen_tx.get(tx_id)
    if where is None:
        bad.append((head, f"tx index (i/) names a tx {tx_id[:16]}… in no block"))
        return 0
    if value != tx_place(*where):
        bad.append((where[0], f"tx index (i/) of {tx_id[:16]}… does not point at its place"))
        return 0
    return 1


def _location(raw: bytes) -> tuple[int, int] | None:
    """(height, index) of a t/ record, None for one that does not decode as a record."""
    try:
        entry = decode_tx_entry(raw)
    except (EncodingError, ValueError):
        return None
    return entry.height, entry.index


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


