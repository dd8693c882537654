"""`titlechain node run --state-sync`: make the data dir by state sync before the node starts.

The sync runs over a transport of the node's own kind (node/p2p/state_sync.py): a validator's on
its peer address (peers with a lower key dial in, at once on its knock: node/p2p/transport.py), an
observer's dialing every validator of the genesis set with its account key (a validator serves
state sync to a linked observer as to a peer). It ends with a data dir at a base height S. The
node then takes the transport over, links and all (a reconnect would cost seconds of the peers'
dial backoff) and the store the sync wrote, open (reopening it would replay the import's whole
database log: half a second for 40,000 leaves), and starts as on any restart: its catch-up
follows the blocks from S + 1 and, a validator, it votes; an observer follows. A data dir that
already holds a chain is started as it is: state sync is only for joining.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from chain.crypto import KeyPair
from chain.genesis import Genesis
from chain.store import Store, StoreError
from contracts.state_sync import StateSync
from node.p2p.handshake import OBSERVER, VALIDATOR
from node.p2p.state_sync import StateSyncClient, StateSyncError
from node.p2p.sync_wire import is_sync_message
from node.p2p.transport import Transport
from node.runtime.config import NodeConfig
from node.runtime.node_common import NOT_AN_OBSERVER_KEY, NodeStartError, load_identity

log = logging.getLogger("titlechain.statesync")


class JoinError(StateSyncError):
    pass


@dataclass
class Joined:
    """What a state sync hands the node: its links to the peers and the store it wrote, both open."""

    transport: Transport
    store: Store


async def join(cfg: NodeConfig) -> Joined | None:
    """`join_by_state_sync` from the node's config; every failure a JoinError that says what."""
    try:
        genesis, key = load_identity(cfg)
    except NodeStartError as e:
        raise JoinError(str(e)) from None
    if cfg.observer and key.public in genesis.validators.publics:
        raise JoinError(f"{cfg.key}: {NOT_AN_OBSERVER_KEY}")  # before a sync that would be wasted
    if not cfg.observer and key.public not in genesis.validators.publics and not cfg.peers:
        raise JoinError(f"{cfg.key}: this key is not a validator of the genesis: state sync needs --peers "
                        "(or the config's `peers`) to reach the running validators")
    try:
        return await join_by_state_sync(cfg, genesis, key)
    except StoreError as e:
        raise JoinError(str(e)) from None


def needs_sync(data_dir: Path) -> bool:
    """Whether the data dir is empty (or absent, or an unfinished sync's): a chain is started as is."""
    if not data_dir.exists() or not any(data_dir.iterdir()):
        return True
    from chain.store import Store  # opened only to ask; closed at once

    try:
        Store.open_read_only(data_dir).close()
    except StoreError as e:
        if "unfinished state sync" in str(e):
            return True
        raise
    return False


async def join_by_state_sync(cfg: NodeConfig, genesis: Genesis, key: KeyPair) -> Joined | None:
    """Sync cfg.data_dir from the peers (if it holds no chain yet); raises JoinError on failure.
    Returns the sync's transport, still linked to the peers, and its store, for the node to take
    over (None if no sync was needed)."""
    if not needs_sync(cfg.data_dir):
        log.info("state sync: %s already holds a chain; starting from it", cfg.data_dir)
        return None
    by_node_id = {v.node_id: v.public for v in genesis.validators.validators if v.public != key.public}
    names = {public: node_id for node_id, public in by_node_id.items()}
    client: StateSyncClient | None = None

    def on_message(peer: str, msg: object) -> None:
        if client is not None and is_sync_message(msg):
            client.on_message(peer, msg)
        # anything else (consensus traffic, gossip, head notices) is for the node once it runs

    transport = Transport(
        key, chain_id=genesis.chain_id, genesis_hash=genesis.hash, validators=genesis.validators,
        on_message=on_message, role=OBSERVER if cfg.observer else VALIDATOR,
        addresses={by_node_id[n]: address for n, address in cfg.peer_addresses.items() if n in by_node_id},
        bootstrap=() if cfg.observer else cfg.peers,
    )

    def connected() -> list[str]:
        return [p.public for p in transport.peer_status() if p.connected]

    client = StateSyncClient(transport.send, connected, genesis, lambda: StateSync(cfg.data_dir, genesis, cfg.memory.db), names)
    started = time.monotonic()
    try:
        if cfg.observer:
            transport.dial()  # an observer listens for no one
        else:
            await transport.start(cfg.peer_host, cfg.peer_port)
    except OSError as e:
        raise JoinError(f"cannot listen for peers on {cfg.peer_listen}: {e.strerror or e}") from None
    try:
        store = await client.run()
    except BaseException:
        await transport.close()
        raise
    log.info("state sync: %s holds the state at height %d after %.1f s; starting the node", cfg.data_dir,
             store.height, time.monotonic() - started)
    return Joined(transport, store)
