"""Blocks read ahead for the chain audit, their tx signatures checked in worker processes.

Signature checks are independent of each other and of state, so they may run anywhere and in any
order; re-execution may not, so it stays in the caller's process, height after height. This
module reads blocks ahead of the caller, sends their txs' (signer, body, signature) in batches to
a process pool, and hands the blocks back in height order, each with the indexes of its txs whose
signature does not verify. The caller reports a bad signature where it meets it, so the first bad
height and its reason are the same whether the checks ran here, in one process or in many.
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
    # spawn, not fork: the caller holds an open LevelDB and maybe threads, which a fork would copy
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
