"""What a validator (node/runtime/validator.py) and an observer (node/runtime/observer.py) share
as processes: their start-up errors, loading genesis, key and data dir, serving the RPC, and
stopping on a fault. Their face to the RPC is node/runtime/service.py."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from chain.crypto import KeyFileError, KeyPair, load_key_file
from chain.genesis import Genesis, GenesisError
from chain.retention import Retention
from chain.store import Store, StoreError, StoreFault
from node.errors import NodeError
from node.rpc.api import NodeApi
from node.rpc.ratelimit import RateLimiter
from node.rpc.server import serve
from node.runtime.config import NodeConfig
from node.runtime.ledger import Ledger, LedgerError

log = logging.getLogger("titlechain.node")


class NodeStartError(NodeError, RuntimeError):
    """The node cannot start: a bad genesis, key, data dir or address; the message says which."""


NOT_AN_OBSERVER_KEY = ("this is a validator's node key; an observer runs with the key of an account that "
                       "holds the auditor or regulator role")


class FatalNodeError(NodeError, RuntimeError):
    """The node must stop to protect its data (a certified block its ledger refuses)."""


def load_identity(cfg: NodeConfig) -> tuple[Genesis, KeyPair]:
    """The genesis and key a config names (the node and its state sync alike); NodeStartError."""
    try:
        genesis = Genesis.load(cfg.genesis)
    except (GenesisError, OSError, ValueError) as e:
        raise NodeStartError(f"{cfg.genesis}: {e}") from None
    try:
        return genesis, load_key_file(cfg.key)
    except KeyFileError as e:
        raise NodeStartError(str(e)) from None


def load_node_files(cfg: NodeConfig, store: Store | None = None) -> tuple[Genesis, KeyPair, Ledger]:
    """Load genesis and key, open the data dir (or take `store`, open on it already: a state
    sync's); every failure a NodeStartError that says what."""
    genesis, key = load_identity(cfg)
    retention = Retention(cfg.state_retention, cfg.state_snapshot_interval)
    try:
        if store is None:
            ledger = Ledger.open(cfg.data_dir, genesis, retention, cfg.memory)
        else:
            ledger = Ledger.adopt(store, genesis, retention, cfg.memory)
    except (StoreError, LedgerError) as e:
        raise NodeStartError(str(e)) from None
    return genesis, key, ledger


async def serve_rpc(api: NodeApi, cfg: NodeConfig) -> web.AppRunner:
    """Serve the RPC as the config says; NodeStartError if its address cannot be bound."""
    ssl_context = cfg.rpc_ssl_context()  # a bad cert or key: ConfigError
    try:
        return await serve(
            api, cfg.rpc_host, cfg.rpc_port, tokens=cfg.rpc_tokens,
            rate_limiter=RateLimiter(cfg.rpc_rate_per_s, cfg.rpc_rate_burst),
            allowed_hosts=cfg.rpc_allowed_hosts, header_timeout_s=cfg.rpc_header_timeout_s,
            body_timeout_s=cfg.rpc_body_timeout_s, max_connections=cfg.rpc_max_connections,
            access_log=cfg.rpc_access_log, ssl_context=ssl_context,
        )
    except OSError as e:
        raise NodeStartError(f"cannot serve the RPC on {cfg.rpc_listen}: {e.strerror or e}") from None


class NodeProcess:
    """A running node's lifecycle pieces both kinds share: stopping on a fault, the RPC's port."""

    fatal: FatalNodeError | None
    _runner: web.AppRunner | None

    async def stop(self) -> None:
        raise NotImplementedError

    def _on_store_fault(self, fault: StoreFault) -> None:
        self._die(FatalNodeError(f"storage fault: {fault}"))

    def _die(self, error: FatalNodeError) -> None:
        if self.fatal is not None:
            return
        log.critical("%s; stopping the node", error)
        self.fatal = error
        asyncio.get_running_loop().create_task(self.stop())

    @property
    def rpc_port(self) -> int:
        """The port the RPC listens on (the config may ask for 0: any free port)."""
        assert self._runner is not None, "the node is not started"
        return int(self._runner.addresses[0][1])
