"""Blocks read ahead for the chain audit, decoded and their tx signatures checked in worker processes.

Signature checks and the strict decoding of stored records are independent of each other and of
state, so they may run anywhere and in any order; re-execution may not, so it stays in the
caller's process, height after height. This module reads blocks ahead of the caller and hands
them back in height order, each with the indexes of its txs whose signature does not verify. The
caller reports a bad signature or an undecodable record where it meets it, so the first bad
height and its reason are the same whether the checks ran here, in one process or in many.

From a store (`fetch_raw_blocks`) the workers receive each block's records undecoded: they decode
them strictly (canonical form, every tx parsed and found at its place) and check the signatures;
the caller then decodes records a worker passed with plain msgpack (chain.txrecords.unchecked_block),
taking each tx's bytes where the worker found them, a fifth of the strict decode's cost. From another source (`fetch_blocks`, an RPC) the
blocks arrive decoded and only the signature checks go to the workers.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from chain.block import Block, BlockError
from chain.crypto import Domain, verify
from chain.encoding import EncodingError
from chain.receipt import Receipt
from chain.tx import TxError
from chain.txrecords import RawBlock, TxLayout, block_from_records, tx_layouts, unchecked_block

# a batch is sent once it holds this many txs (or BATCH_BLOCKS blocks): large enough that pickling
# and the round trip cost little beside ~60 µs per Ed25519 check, small enough to spread the work
BATCH_TXS = 2000
BATCH_BLOCKS = 256
# batches in flight per worker: keeps every worker busy while bounding the blocks held in memory
BATCHES_PER_WORKER = 3
# what reading a damaged block may raise; the caller reports it at that block's height, in order
READ_ERRORS = (BlockError, EncodingError, TxError, ValueError, TypeError, KeyError, IndexError)

SigJob = tuple[int, int, str, bytes, str]  # (height, tx index, signer, body bytes, signature)


@dataclass(frozen=True)
class Fetched:
    """One height as read: its block (None if missing), or the error reading it raised."""

    block: Block | None
    error: Exception | None
    bad_sigs: frozenset[int]  # indexes of the block's txs whose signature does not verify
    # the stored receipts, when read with the block from the same tx records (Store.read_block,
    # which checks that each record sits at its place); None: the caller asks its source
    receipts: list[Receipt] | None = None


# reads one height: (block, its stored receipts or None), or raises
BlockReader = Callable[[int], tuple[Block | None, list[Receipt] | None]]


def bad_signatures(jobs: list[SigJob]) -> list[tuple[int, int]]:
    """(height, index) of every job whose signature does not verify; runs in a worker process."""
    return [(h, i) for h, i, signer, body, sig in jobs if not verify(signer, Domain.TX, body, sig)]


def _read(read: BlockReader, height: int) -> tuple[Block | None, list[Receipt] | None, Exception | None]:
    try:
        return (*read(height), None)
    except READ_ERRORS as e:
        return None, None, e


def _jobs(height: int, block: Block | None) -> list[SigJob]:
    if block is None:
        return []
    return [(height, i, tx.signer, tx.body_bytes, tx.sig) for i, tx in enumerate(block.txs)]


def fetch_blocks(
    read: BlockReader, first: int, last: int, workers: int
) -> Iterator[tuple[int, Fetched]]:
    """(height, Fetched) for first..last in order; signatures checked by `workers` processes
    (1: here, in this process, block by block)."""
    if workers <= 1:
        for height in range(first, last + 1):
            block, receipts, error = _read(read, height)
            bad = frozenset(i for _, i in bad_signatures(_jobs(height, block)))
            yield height, Fetched(block, error, bad, receipts)
        return
    # spawn, not fork: the caller holds an open RocksDB and maybe threads, which a fork would copy
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from _pipelined(pool, read, first, last, workers * BATCHES_PER_WORKER)
    finally:
        # the caller may stop at the first bad height: drop the batches nobody will read
        pool.shutdown(wait=True, cancel_futures=True)


Read = tuple[int, Block | None, list[Receipt] | None, Exception | None]
Batch = tuple[list[Read], "Future[list[tuple[int, int]]]"]


def _pipelined(
    pool: ProcessPoolExecutor, read: BlockReader, first: int, last: int, in_flight: int
) -> Iterator[tuple[int, Fetched]]:
    pending: deque[Batch] = deque()
    height = first
    while height <= last or pending:
        while height <= last and len(pending) < in_flight:
            batch: list[Read] = []
            jobs: list[SigJob] = []
            while height <= last and len(jobs) < BATCH_TXS and len(batch) < BATCH_BLOCKS:
                batch.append((height, *_read(read, height)))
                jobs.extend(_jobs(height, batch[-1][1]))
                height += 1
            pending.append((batch, pool.submit(bad_signatures, jobs)))
        batch, future = pending.popleft()
        bad: dict[int, set[int]] = {}
        for h, i in future.result():
            bad.setdefault(h, set()).add(i)
        for h, block, receipts, error in batch:
            yield h, Fetched(block, error, frozenset(bad.get(h, ())), receipts)


# reads one height's stored records (None: no such block), or raises
RawReader = Callable[[int], RawBlock | None]
# (height, why its records are bad, bad signature indexes, where each tx sits in its record)
RawOutcome = tuple[int, Exception | None, list[int], list[TxLayout]]


def _portable(e: Exception) -> Exception:
    """The error reading a block raised, as the caller reports it whichever process met it: a
    record that is not a block (BlockError) or one that does not parse at all (ValueError). Made
    here so that it pickles (TxError's constructor takes two arguments)."""
    if isinstance(e, (BlockError, EncodingError, TxError)):
        return BlockError(str(e))
    return ValueError(f"{type(e).__name__}: {e}")


def check_raw_blocks(raws: list[tuple[int, RawBlock | None]]) -> list[RawOutcome]:
    """Decode each block's records strictly and check its signatures; runs in a worker process."""
    out: list[RawOutcome] = []
    for height, raw in raws:
        if raw is None:
            out.append((height, None, [], []))
            continue
        try:
            block, receipts = block_from_records(raw)
            layouts = tx_layouts(raw, block, receipts)
        except READ_ERRORS as e:
            out.append((height, _portable(e), [], []))
            continue
        bad = [i for i, tx in enumerate(block.txs) if not verify(tx.signer, Domain.TX, tx.body_bytes, tx.sig)]
        out.append((height, None, bad, layouts))
    return out


def _read_raw(read: RawReader, height: int) -> tuple[RawBlock | None, Exception | None]:
    try:
        return read(height), None
    except READ_ERRORS as e:  # the summary itself does not decode
        return None, _portable(e)


def fetch_raw_blocks(read: RawReader, first: int, last: int, workers: int) -> Iterator[tuple[int, Fetched]]:
    """`fetch_blocks` for a store: (height, Fetched) for first..last in order, each block with its
    stored receipts; records decoded strictly and signatures checked by `workers` processes (1:
    here, block by block)."""
    if workers <= 1:
        for height in range(first, last + 1):
            yield height, _fetched(height, *_read_raw(read, height), None)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: deque[tuple[list[tuple[int, RawBlock | None, Exception | None]], Future[list[RawOutcome]]]] = deque()
        height = first
        while height <= last or pending:
            while height <= last and len(pending) < workers * BATCHES_PER_WORKER:
                batch: list[tuple[int, RawBlock | None, Exception | None]] = []
                txs = 0
                while height <= last and txs < BATCH_TXS and len(batch) < BATCH_BLOCKS:
                    batch.append((height, *_read_raw(read, height)))
                    txs += len(batch[-1][1].records) if batch[-1][1] is not None else 0
                    height += 1
                pending.append((batch, pool.submit(check_raw_blocks, [(h, r) for h, r, _ in batch])))
            batch, future = pending.popleft()
            for (h, raw, error), outcome in zip(batch, future.result(), strict=True):
                yield h, _fetched(h, raw, error, outcome)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _fetched(height: int, raw: RawBlock | None, error: Exception | None, outcome: RawOutcome | None) -> Fetched:
    """The Fetched of one height: from a worker's outcome (records decoded unchecked here, as the
    worker passed them), or with no outcome checked here and now."""
    if error is not None or raw is None:
        return Fetched(None, error, frozenset())
    if outcome is None:
        outcome = check_raw_blocks([(height, raw)])[0]
    if outcome[1] is not None:
        return Fetched(None, outcome[1], frozenset())
    block, receipts = unchecked_block(raw, outcome[3])
    return Fetched(block, None, frozenset(outcome[2]), receipts)
