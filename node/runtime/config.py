"""A validator node's configuration file (`titlechain node run --config FILE`).

JSON; relative paths are relative to the file's own directory, so a consortium directory can be
moved or copied whole. Unknown fields are refused: a misspelt option must not be silently ignored.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chain.database import BLOCK_CACHE_BYTES, MAX_OPEN_FILES, MIN_OPEN_FILES, WRITE_BUFFER_BYTES, DbMemory
from chain.patterns import WholePattern
from chain.retention import SNAPSHOT_INTERVAL
from chain.validators import ADDRESS_PATTERN, dial_address_problem
from node.errors import EXIT_FAILED, NodeError
from node.p2p.observers import DEFAULT_MAX_OBSERVERS
from node.rpc.base import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_CONNECTIONS
from node.rpc.models import MAX_BATCH_TXS, RpcToken
from node.rpc.ratelimit import DEFAULT_BURST, DEFAULT_RATE_PER_S
from node.runtime.ledger import STANDING_CACHE_BYTES, TREE_NODE_CACHE_BYTES, LedgerMemory
from node.runtime.mempool import DEFAULT_MAX_BYTES, DEFAULT_MAX_PER_SIGNER, DEFAULT_MAX_TXS

HOST_NAME = WholePattern(r"^[A-Za-z0-9.:-]{1,253}$")  # a DNS name or an IPv4/IPv6 address, no port


class ConfigError(NodeError, ValueError):
    """A config file that cannot be used. The file was given as asked and what it says fails a
    check, so `node run` exits 1 (docs/cli.md); 2 is kept for a command line that is wrong."""

    exit_code = EXIT_FAILED


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


class NodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_id: str
    genesis: Path
    key: Path = Field(
        description="this validator's key file (its public key is in the genesis); for an observer, the key file "
        "of an account that holds the auditor or regulator role"
    )
    data_dir: Path
    observer: bool = Field(
        False, description="follow the chain from the validators without voting (docs/operations.md, Observer nodes)"
    )
    peer_listen: str | None = Field(None, description="host:port the peer transport binds; a validator's only (required)")
    rpc_listen: str = Field("127.0.0.1:26657", description="host:port of the RPC; loopback unless tokens protect it")
    rpc_tokens: tuple[RpcToken, ...] = ()
    peer_addresses: dict[str, str] = Field(
        default_factory=dict,
        description="node_id -> host:port to dial instead of the genesis address (a relay, NAT or moved host); "
        "links stay bound to the genesis keys, whatever address answers",
    )
    peers: tuple[str, ...] = Field(
        (),
        max_length=64,
        description="host:port of a few running validators, dialed whatever key answers while this node's key "
        "is not in the validator set it knows: how a validator added by governance finds the consortium",
    )
    rpc_tls_cert: Path | None = Field(
        None, description="PEM certificate chain; with rpc_tls_key the RPC serves HTTPS only (TLS 1.2 or later)"
    )
    rpc_tls_key: Path | None = Field(None, description="PEM private key of rpc_tls_cert; mode 0600")
    rpc_allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names served besides loopback when no tokens are set"
    )
    rpc_header_timeout_s: float = Field(HEADER_TIMEOUT_S, gt=0, le=3600, description="to deliver a request head")
    rpc_body_timeout_s: float = Field(BODY_TIMEOUT_S, gt=0, le=3600, description="to deliver a request body")
    rpc_max_connections: int = Field(MAX_CONNECTIONS, gt=0, le=1_000_000, description="open RPC connections; more are closed")
    rpc_access_log: bool = Field(True, description="log every request (with the token's name, never its value)")
    mempool_max_txs: int = Field(DEFAULT_MAX_TXS, gt=0)
    mempool_max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    mempool_max_per_signer: int = Field(
        DEFAULT_MAX_PER_SIGNER, gt=0, description="txs one signer may have pending here; beyond, 429 quota_exceeded"
    )
    rpc_rate_per_s: float = Field(
        DEFAULT_RATE_PER_S, gt=0, allow_inf_nan=False,
        description="units a second each bearer token (or, with no tokens, each client address) may spend: "
        "one per request, one per submitted tx",
    )
    rpc_rate_burst: int = Field(
        DEFAULT_BURST, ge=MAX_BATCH_TXS, description="units a client may spend at once; at least a full batch"
    )
    observers_max: int = Field(
        DEFAULT_MAX_OBSERVERS, ge=0, le=1000, description="observer accounts linked at once; 0 accepts no observers"
    )
    observer_requests_per_s: float = Field(
        20.0, gt=0, le=10_000, allow_inf_nan=False, description="block requests one observer may make a second"
    )
    observer_request_burst: int = Field(40, gt=0, le=100_000, description="block requests one observer may make at once")
    state_retention: int | None = Field(
        None, ge=1,
        description="keep the state trees of this many latest heights (and of the two latest snapshot heights "
        "a joining node may sync from); older versions are pruned as blocks commit. null: an archive, every "
        "version kept (docs/operations.md, Retention)",
    )
    state_snapshot_interval: int = Field(
        SNAPSHOT_INTERVAL, ge=1, le=1_000_000_000,
        description="with state_retention: snapshot heights are the multiples of this, and the two latest below "
        "the head are kept, so a joining node's state sync has at least this many heights to finish before "
        "its base is pruned (docs/operations.md, Retention)",
    )
    cache_tree_nodes_bytes: int = Field(
        TREE_NODE_CACHE_BYTES, ge=0, le=1 << 40,
        description="state-tree nodes that committed blocks wrote, kept in memory (estimated bytes) in "
        "generations of heights of an eighth of it each, the oldest dropped whole as the young need room; a commit "
        "drops those its block replaced; 0 reads every node from the store",
    )
    cache_standing_bytes: int = Field(
        STANDING_CACHE_BYTES, ge=0, le=1 << 40, description="accounts remembered as known to the ledger (estimated bytes)"
    )
    huge_pages: bool = Field(
        True, description="collapse the node's dense heap into 2 MiB pages where the host's transparent huge pages are "
        "`madvise` (Linux 6.1 and later): fewer TLB misses, ~1/8 more resident memory at most (docs/operations.md, "
        "Memory)",
    )
    db_write_buffer_bytes: int = Field(
        WRITE_BUFFER_BYTES, ge=1 << 20, le=1 << 34,
        description="RocksDB's memtable; two may be held while one is flushed",
    )
    db_block_cache_bytes: int = Field(
        BLOCK_CACHE_BYTES, ge=1 << 20, le=1 << 40,
        description="RocksDB's block cache: the table blocks read (the tables' indexes and bloom filters are "
        "held beside it, ~2 % of the store)",
    )
    db_max_open_files: int = Field(
        MAX_OPEN_FILES, ge=MIN_OPEN_FILES, le=1_000_000,
        description="RocksDB's table cache: tables held open (a file descriptor each); a store with more "
        "reopens tables on its reads",
    )
    log_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("peer_listen", "rpc_listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None and not ADDRESS_PATTERN.matches(v):
            raise ValueError("must be host:port")
        return v

    @field_validator("peer_addresses")
    @classmethod
    def _peer_host_ports(cls, v: dict[str, str]) -> dict[str, str]:
        for node_id, address in v.items():
            if not ADDRESS_PATTERN.matches(address):
                raise ValueError(f"{node_id}: must be host:port")
        return v

    @field_validator("peers")
    @classmethod
    def _dialable(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for address in v:
            if (problem := dial_address_problem(address)) is not None:
                raise ValueError(f"{address!r}: {problem}")
        return v

    @field_validator("rpc_allowed_hosts")
    @classmethod
    def _host_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not HOST_NAME.matches(name):
                raise ValueError(f"{name!r} is not a host name (letters, digits, '.', '-', or an IP address)")
        return v

    @model_validator(mode="after")
    def _peer_listen_for_validators(self) -> NodeConfig:
        # an observer only dials; a validator must be reachable by the validators its key sorts below
        if not self.observer and self.peer_listen is None:
            raise ValueError("peer_listen is required for a validator (only an observer, which only dials, goes without)")
        return self

    @model_validator(mode="after")
    def _rpc_exposed_only_with_tokens(self) -> NodeConfig:
        # an RPC reachable from other hosts without tokens would let anyone flood the mempool or
        # stream every block; on loopback the host's own access control stands in for tokens
        if not self.rpc_tokens and not is_loopback(self.rpc_host):
            raise ValueError(f"rpc_listen {self.rpc_listen} is not a loopback address: list rpc_tokens to expose the RPC")
        return self

    @model_validator(mode="after")
    def _tls_cert_with_key(self) -> NodeConfig:
        # one without the other is a half-made setup: serving plain HTTP then would be a silent downgrade
        if (self.rpc_tls_cert is None) != (self.rpc_tls_key is None):
            raise ValueError("rpc_tls_cert and rpc_tls_key go together: give both (HTTPS) or neither (HTTP)")
        return self

    def rpc_ssl_context(self) -> ssl.SSLContext | None:
        """The RPC's TLS server context (TLS 1.2 minimum), or None to serve plain HTTP."""
        if self.rpc_tls_cert is None or self.rpc_tls_key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.rpc_tls_cert, self.rpc_tls_key)
        except OSError as e:  # ssl.SSLError is an OSError too
            what = e.strerror or getattr(e, "reason", None) or str(e)
            raise ConfigError(
                f"rpc_tls_cert {self.rpc_tls_cert} / rpc_tls_key {self.rpc_tls_key}: cannot load: {what} "
                "(both must be PEM, and the key must be the certificate's)"
            ) from None
        return context

    @property
    def memory(self) -> LedgerMemory:
        """The byte caps of the ledger's caches and its database (docs/operations.md, Memory)."""
        return LedgerMemory(
            tree_node_bytes=self.cache_tree_nodes_bytes,
            standing_bytes=self.cache_standing_bytes,
            db=DbMemory(self.db_write_buffer_bytes, self.db_block_cache_bytes, self.db_max_open_files),
        )

    @property
    def rpc_url(self) -> str:
        """The RPC's URL as this node serves it (https:// with rpc_tls_cert)."""
        return f"{'https' if self.rpc_tls_cert is not None else 'http'}://{self.rpc_listen}"

    @property
    def rpc_host(self) -> str:
        return self.rpc_listen.rsplit(":", 1)[0]

    @property
    def rpc_port(self) -> int:
        return int(self.rpc_listen.rsplit(":", 1)[1])

    @property
    def peer_host(self) -> str:
        assert self.peer_listen is not None, "an observer listens for no peer"
        return self.peer_listen.rsplit(":", 1)[0]

    @property
    def peer_port(self) -> int:
        assert self.peer_listen is not None, "an observer listens for no peer"
        return int(self.peer_listen.rsplit(":", 1)[1])

    @classmethod
    def load(cls, path: str | Path, *, observer: bool = False) -> NodeConfig:
        """`observer`: as if the file said `"observer": true` (`node run --observer`)."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            raw = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not JSON: {e}") from None
        if observer and isinstance(raw, dict):
            raw["observer"] = True
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "$"
            raise ConfigError(f"{path}: {where}: {first['msg']}") from None
        if cfg.rpc_tokens and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{path}: holds rpc_tokens but is accessible by group or others "
                f"(mode {oct(mode & 0o777)}); chmod 600 it"
            )
        base = path.resolve().parent
        resolved = {
            name: base / getattr(cfg, name)
            for name in ("genesis", "key", "data_dir", "log_file", "rpc_tls_cert", "rpc_tls_key")
            if getattr(cfg, name) is not None and not getattr(cfg, name).is_absolute()
        }
        cfg = cfg.model_copy(update=resolved)
        if cfg.rpc_tls_key is not None:
            _check_private(cfg.rpc_tls_key, "rpc_tls_key")
            cfg.rpc_ssl_context()  # an unreadable or mismatched pair fails here, before the node opens anything
        return cfg

    def with_peers(self, peers: tuple[str, ...]) -> NodeConfig:
        """This config with other bootstrap `peers` (the command line's --peers), checked as the file's are."""
        try:
            return self.model_validate({**self.model_dump(), "peers": peers})
        except ValidationError as e:
            raise ConfigError(f"--peers: {e.errors()[0]['msg']}") from None

    def write(self, path: str | Path) -> None:
        """Write the config with mode 0600: it may hold RPC tokens, and names the key file."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_TRUNC
            f.write(self.model_dump_json(indent=2, exclude_defaults=False) + "\n")


def _check_private(path: Path, field: str) -> None:
    """Refuse a secret file that others on the host may read, as key files and token configs are."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(f"{field} {path}: cannot read: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{field} {path}: the TLS private key is accessible by group or others (mode {oct(mode & 0o777)}); chmod 600 it"
        )
