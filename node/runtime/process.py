"""`titlechain node run`: one validator or observer process, from its config to its exit code."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from chain.database import raise_fd_limit
from node.runtime.config import NodeConfig
from node.runtime.hugepages import start_huge_page_sweeper
from node.runtime.join import Joined, join
from node.runtime.logs import setup_logging
from node.runtime.memory import keep_freed_heap
from node.runtime.node_common import load_node_files
from node.runtime.observer import Observer
from node.runtime.validator import Validator

log = logging.getLogger("titlechain.node")

Node = Validator | Observer


def open_node(cfg: NodeConfig, joined: Joined | None = None) -> Node:
    """The validator, or with `observer` in the config the observer, over its files (opened here);
    every failure a NodeStartError that says what. `joined`: a state sync's links and store, taken over."""
    genesis, key, ledger = load_node_files(cfg, joined.store if joined is not None else None)
    transport = joined.transport if joined is not None else None
    try:
        return Observer(cfg, genesis, key, ledger, transport) if cfg.observer else Validator(cfg, genesis, key, ledger, transport)
    except BaseException:
        ledger.close()
        raise


async def _serve_until_signalled(cfg: NodeConfig, announce: Callable[[Node], None] | None, state_sync: bool) -> int:
    joined = await join(cfg) if state_sync else None  # --state-sync: the data dir from the peers first
    try:
        node = open_node(cfg, joined)
    except BaseException:
        if joined is not None:
            await joined.transport.close()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException:
        node.ledger.close()
        raise
    if announce is not None:
        announce(node)
    stop_wait = loop.create_task(stop.wait())
    died = loop.create_task(node.stopped.wait())
    await asyncio.wait({stop_wait, died}, return_when=asyncio.FIRST_COMPLETED)
    for t in (stop_wait, died):
        t.cancel()
    if not node.stopped.is_set():
        log.info("signal received: stopping")
        await node.stop()
    return 1 if node.fatal is not None else 0


def collect_cycles_rarely() -> None:
    """Fewer, larger passes of Python's cyclic garbage collector, for a process that replays or
    applies blocks. Every tx allocates a few dozen short-lived dicts and strings; with the default
    gen-0 threshold of 700 the collector ran dozens of times per block for nothing (a ledger's data
    holds no reference cycles worth collecting quickly), and each pass of the older generations
    walks the whole heap: the full-chain audit took 5-12 % longer with the default thresholds
    (docs/performance.md, "The audit holds the current tree")."""
    gc.set_threshold(50_000, 20, 20)


def run_node(cfg: NodeConfig, announce: Callable[[Node], None] | None = None, state_sync: bool = False) -> int:
    """Run one node until SIGTERM/SIGINT; the process exit code. `announce(node)` runs once the
    node serves its peers and RPC (the CLI's one-line start-up message). `state_sync`: an empty
    data dir is made by state sync first (node/runtime/join.py)."""
    setup_logging(cfg.log_level, cfg.log_file, cfg.node_id)
    collect_cycles_rarely()
    not_kept = keep_freed_heap()  # before the store's memtables are allocated
    if not_kept is not None:
        log.warning("the resident set will swing with RocksDB's memtables: %s", not_kept)
    if cfg.huge_pages:
        started = start_huge_page_sweeper()  # a daemon thread: it ends with the process
        log.log(logging.WARNING if started.small_pages else logging.INFO, "huge pages: %s", started.how)
    # before any store opens: the open-files limit must allow RocksDB's table cache
    shortfall = raise_fd_limit(cfg.memory.db)
    if shortfall is not None:
        log.warning("%s", shortfall)
    return asyncio.run(_serve_until_signalled(cfg, announce, state_sync))
