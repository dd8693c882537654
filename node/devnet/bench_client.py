"""The consortium benchmark's client processes: each signs its share of txs up front (into a file,
node/devnet/bench_spool.py, so that its memory does not grow with --txs), submits them in
batches over a bounded window of txs in flight, and follows the event stream to time each commit.
node/devnet/bench.py starts them, one process per client, and sums up."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from node.devnet.bench_spool import Chunk, Spool, plan_txs
from node.errors import NodeError
from node.sdk.client import AsyncClient

PROGRESS_EVERY_S = 0.25


class BenchError(NodeError, RuntimeError):
    """The run failed; the message says why (exit 1)."""


# ---------------------------------------------------------------------------- the client side


@dataclass(frozen=True)
class ClientJob:
    """Everything a client process needs; picklable (it crosses to a spawned process)."""

    index: int
    chain_id: str
    rpcs: tuple[str, ...]
    events_rpc: str
    issuers: tuple[tuple[str, str], ...]  # (key file, asset class)
    parties: tuple[str, ...]  # key files of asset holders
    registers: int  # measured registrations
    transfers: int  # measured transfers, each of an asset registered in setup
    expires: int
    tag: str  # unique per run, so asset ids never collide with an earlier run's
    chunk: int
    window: int  # txs in flight in the measured phase
    deadline_s: float
    spool_dir: str  # where this client spools its signed txs: the parent's, which removes it also
    # when it had to terminate or kill the client (a client's own temp dir outlived a stopped run)
    setup_window: int = 0  # txs in flight in the setup phase; 0: `window`


@dataclass(frozen=True)
class SetupResult:
    """How this client's setup went (not measured, but its pace decides how long a long run takes)."""

    index: int
    first_submit: float  # CLOCK_MONOTONIC
    last_commit: float
    committed: int
    start_height: int  # the head before the setup's first submission


@dataclass
class ClientResult:
    index: int
    latencies: list[float]  # seconds, submit to commit, measured phase only
    first_submit: float
    last_commit: float
    submitted: int
    committed: int
    rejected: dict[str, int]  # receipt error code -> count
    refused: dict[str, int]  # RPC refusal code -> count (never entered a mempool)
    cpu_s: float  # this client's CPU during the measured phase (it competes with the nodes for the cores)


class _Tracker:
    """This client's txs in flight, resolved by the block events of one node."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sent: dict[str, float] = {}  # tx_id -> monotonic time of the POST that carried it
        self.latencies: list[float] = []
        self.rejected: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.committed = 0
        self.last_commit = 0.0
        self.room = asyncio.Event()  # set when the window has space again
        self.block_seen = asyncio.Event()  # set on every block event (retry pacing)
        self.all_done = asyncio.Event()
        self.expected = 0
        self.retries: deque[Chunk] = deque()  # chunks a full node handed back, sent again before new ones

    def start_phase(self, expected: int, window: int) -> None:
        self.latencies, self.committed, self.expected, self.window = [], 0, expected, window
        self.retries.clear()
        self.rejected.clear()
        self.refused.clear()
        self.all_done.clear()
        self.room.set()
        self._check_done()

    def on_block(self, receipts: Sequence[dict[str, Any]], now: float) -> None:
        for r in receipts:
            sent = self.sent.pop(r["tx_id"], None)
            if sent is None:
                continue
            self.latencies.append(now - sent)
            self.committed += 1
            self.last_commit = now
            if r["status"] != "ok":
                self.rejected[(r.get("error") or {}).get("code", r["status"])] += 1
        self.room.set()
        self.block_seen.set()
        self._check_done()

    def give_up(self, tx_id: str, code: str) -> None:
        """A tx the RPC refused for good: it will never commit."""
        if self.sent.pop(tx_id, None) is not None:
            self.refused[code] += 1
            self.expected -= 1
            self.room.set()
            self._check_done()

    def _check_done(self) -> None:
        if self.committed >= self.expected and not self.sent:
            self.all_done.set()

    async def wait_room(self, n: int) -> None:
        while len(self.sent) + n > self.window and self.sent:
            self.room.clear()
            await self.room.wait()


async def _follow(client: AsyncClient, from_height: int, tracker: _Tracker) -> None:
    async for ev in client.events(from_height=from_height):
        if ev.get("event") == "block":
            tracker.on_block(ev["data"]["receipts"], time.monotonic())


def _batch_body(encoded: Sequence[bytes]) -> bytes:
    return b'{"txs":[' + b",".join(encoded) + b"]}"


RETRY_CODES = frozenset({"mempool_full", "quota_exceeded", "not_ready", "rate_limited"})


async def _submit_chunk(http: httpx.AsyncClient, chunk: list[tuple[str, bytes]], tracker: _Tracker) -> list[tuple[str, bytes]]:
    """POST one chunk; returns the txs to retry (mempool full, node busy)."""
    now = time.monotonic()
    for tx_id, _ in chunk:
        tracker.sent[tx_id] = now
    try:
        r = await http.post("/v1/txs/batch", content=_batch_body([b for _, b in chunk]), headers={"Content-Type": "application/json"})
    except httpx.HTTPError:
        results = [{"error": {"code": "not_ready"}}] * len(chunk)
    else:
        if r.status_code == 202:
            results = r.json()["results"]
        else:
            results = [{"error": {"code": _error_code(r)}}] * len(chunk)
    retry = []
    for (tx_id, body), res in zip(chunk, results, strict=True):
        code = (res.get("error") or {}).get("code")
        if code is None or code == "duplicate":  # duplicate: an earlier attempt got it in
            continue
        if code in RETRY_CODES:
            tracker.sent.pop(tx_id, None)
            retry.append((tx_id, body))
        else:
            tracker.give_up(tx_id, code)
    return retry


def _error_code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{r.status_code}"


async def _submitter(http: httpx.AsyncClient, take: Callable[[], Chunk | None], tracker: _Tracker) -> None:
    while True:
        chunk = take()
        if chunk is None:  # nothing left to send but retries another submitter may hand back
            tracker.block_seen.clear()
            await tracker.block_seen.wait()
            continue
        await tracker.wait_room(len(chunk))
        retry = await _submit_chunk(http, chunk, tracker)
        if retry:
            tracker.block_seen.clear()
            await tracker.block_seen.wait()  # the node is full: retry once a block has drained it
            tracker.retries.append(retry)


async def _drive(
    https: Sequence[httpx.AsyncClient], txs: Spool, tracker: _Tracker, chunk: int, window: int, deadline_s: float,
    progress: Callable[[int], None],
) -> None:
    """Submit txs over all nodes, at most `window` in flight; return once every one committed (or
    raise). The txs are read from their spool as they go, so memory does not grow with their number."""
    tracker.start_phase(txs.count, window)
    chunks = txs.chunks(chunk)

    def take() -> Chunk | None:
        return tracker.retries.popleft() if tracker.retries else next(chunks, None)

    tasks = [asyncio.create_task(_submitter(h, take, tracker)) for h in https]
    deadline = time.monotonic() + deadline_s
    try:
        while not tracker.all_done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(tracker.all_done.wait(), min(left, PROGRESS_EVERY_S))
            except TimeoutError:
                pass
            progress(tracker.committed)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        progress(tracker.committed)


async def _client(job: ClientJob, go: Any, out: Any) -> None:
    setup, measured = plan_txs(job, Path(job.spool_dir))
    await _run_client(job, go, out, setup, measured)


async def _run_client(job: ClientJob, go: Any, out: Any, setup: Spool, measured: Spool) -> None:
    async with AsyncClient(job.events_rpc) as ev_client:
        start_height = int((await ev_client.status())["height"])
        tracker = _Tracker(job.window)
        follower = asyncio.create_task(_follow(ev_client, start_height + 1, tracker))
        https = [httpx.AsyncClient(base_url=rpc, timeout=60.0) for rpc in job.rpcs]
        try:
            def report(phase: str) -> Callable[[int], None]:
                sent = 0  # measured latencies already reported (the parent's intervals need them)

                def send(n: int) -> None:
                    nonlocal sent
                    new = tracker.latencies[sent:] if phase == "run" else []
                    sent += len(new)
                    out.put(("progress", job.index, phase, n, new))

                return send

            setup_first = time.monotonic()
            await _drive(https, setup, tracker, job.chunk, job.setup_window or job.window, job.deadline_s, report("setup"))
            if tracker.committed < setup.count or tracker.rejected or tracker.refused:
                raise BenchError(
                    f"client {job.index}: setup committed {tracker.committed} of {setup.count} registrations"
                    f" (rejected {dict(tracker.rejected)}, refused {dict(tracker.refused)})"
                )
            out.put(("ready", job.index, SetupResult(
                job.index, setup_first, tracker.last_commit if setup.count else setup_first, tracker.committed, start_height,
            )))
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, go.wait, job.deadline_s):
                raise BenchError(f"client {job.index}: no start signal")
            first, cpu0 = time.monotonic(), time.process_time()
            await _drive(https, measured, tracker, job.chunk, job.window, job.deadline_s, report("run"))
            out.put(("done", job.index, ClientResult(
                job.index, tracker.latencies, first, tracker.last_commit, measured.count, tracker.committed,
                dict(tracker.rejected), dict(tracker.refused), time.process_time() - cpu0,
            )))
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            for h in https:
                await h.aclose()


def client_main(job: ClientJob, go: Any, out: Any) -> None:
    """A client process. Ctrl-C is the parent's to handle: it stops us with SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_client(job, go, out))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the run
        out.put(("error", job.index, f"{type(e).__name__}: {e}"))
