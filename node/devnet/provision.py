"""`titlechain init`: a consortium directory from a seed file.

Layout written under OUT (all relative paths, so the directory can be moved whole):

    genesis.json
    consortium.json                 the manifest: nodes, key files by role, display names
    keys/validators/<node_id>.json  each validator node's key (its public key is in the genesis)
    keys/members/<node_id>.json     each institution's governance key (role `member`)
    keys/{issuers,regulators,auditors,parties}/<name>.json
    nodes/<node_id>/config.json     what `titlechain node run --config` reads
    nodes/<node_id>/data/           the node's database (RocksDB) (created when it first runs)

A validator's node key and its institution's member key are different keys on purpose: the
machine that signs consensus votes should not also hold the key that votes on governance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.crypto import KeyPair, write_key_file
from chain.encoding import H
from chain.genesis import Genesis, GenesisError
from chain.validators import NODE_ID_PATTERN
from node.errors import NodeError
from node.runtime.config import NodeConfig
from seeds import seed_path

DEFAULT_SEED = seed_path("demo.json")  # package data: found in site-packages by a plain install too

# The port layout of every local consortium (init, localnet, demo, bench), stated once here.
DEFAULT_BASE_PORT = 26600  # init, localnet and the demo
BENCH_BASE_PORT = 26800  # the bench: apart from a developer's localnet on the default
PORTS_PER_NODE = 2
PORT_LAYOUT = "node i listens for peers on P+2i and RPC on P+2i+1"


def node_ports(base_port: int, index: int) -> tuple[int, int]:
    """(peer port, RPC port) of node `index` of a consortium on base_port (PORT_LAYOUT)."""
    peer = base_port + PORTS_PER_NODE * index
    return peer, peer + 1


def consortium_ports(base_port: int, validators: int) -> range:
    """Every port a consortium of `validators` nodes on base_port listens on."""
    return range(base_port, base_port + PORTS_PER_NODE * validators)


class ProvisionError(NodeError, ValueError):
    pass


@dataclass(frozen=True)
class NodeEntry:
    node_id: str
    name: str
    config: Path
    data_dir: Path
    rpc: str


@dataclass(frozen=True)
class Consortium:
    """What `init` produced, as read back from `consortium.json`."""

    root: Path
    chain_id: str
    genesis: Path
    nodes: tuple[NodeEntry, ...]
    keys: dict[str, dict[str, Path]]  # role group -> name -> key file
    names: dict[str, str]  # account -> display name
    assets: tuple[dict[str, Any], ...]

    @classmethod
    def load(cls, root: str | Path) -> Consortium:
        root = Path(root)
        try:
            m = json.loads((root / "consortium.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ProvisionError(f"{root}: not a consortium directory (consortium.json: {e})") from None
        return cls(
            root=root,
            chain_id=m["chain_id"],
            genesis=root / m["genesis"],
            nodes=tuple(
                NodeEntry(n["node_id"], n["name"], root / n["config"], root / n["data_dir"], n["rpc"]) for n in m["nodes"]
            ),
            keys={group: {name: root / p for name, p in entries.items()} for group, entries in m["keys"].items()},
            names=m["names"],
            assets=tuple(m["assets"]),
        )

    def key_paths(self, group: str) -> list[Path]:
        return list(self.keys.get(group, {}).values())


def load_seed(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        seed = json.loads(path.read_text())
    except OSError as e:
        raise ProvisionError(f"{path}: cannot read the seed file: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ProvisionError(f"{path}: the seed file is not JSON: {e}") from None
    for field in ("chain_id", "institutions", "issuers", "regulators", "auditors"):
        if field not in seed:
            raise ProvisionError(f"{path}: the seed file lacks {field!r}")
    return seed


def _check_file_names(seed: dict[str, Any]) -> None:
    """Every seed name becomes a file name (keys/<group>/<name>.json, nodes/<node_id>/): refuse one
    that could reach outside the output dir ('../../x', '/etc/x') or is no plain name, before
    anything is written."""
    named = [("institutions", "node_id"), ("issuers", "name"), ("regulators", "name"), ("auditors", "name"),
             ("parties", "name")]
    for group, field in named:
        entries = seed.get(group, [])
        if type(entries) is not list:
            raise ProvisionError(f"the seed's {group!r} must be a list")
        for entry in entries:
            name = entry.get(field) if type(entry) is dict else None
            if not NODE_ID_PATTERN.matches(name):
                raise ProvisionError(
                    f"the seed's {group} entry {field} {name!r} is not a safe file name: 1-64 letters, digits, "
                    "'_', '.', '-', starting with a letter or digit"
                )


# The NodeConfig fields provisioning sets for each node (its identity, files and ports,
# `_write_node_config`): never a caller's `node_settings`
PROVISIONED_FIELDS = frozenset({"node_id", "genesis", "key", "data_dir", "peer_listen", "rpc_listen", "log_file"})


def init_consortium(
    out: str | Path,
    *,
    validators: int = 4,
    seed_path: str | Path = DEFAULT_SEED,
    base_port: int = DEFAULT_BASE_PORT,
    host: str = "127.0.0.1",
    node_settings: Mapping[str, Any] | None = None,
) -> Consortium:
    """Create keys, genesis and node configs for a new consortium in `out` (which must be empty);
    `node_settings` are NodeConfig fields set in every node's config (checked as the config is)."""
    if validators < 1:
        raise ProvisionError("--validators must be at least 1 (4 tolerates one faulty validator)")
    taken = sorted(PROVISIONED_FIELDS & set(node_settings or {}))
    if taken:
        raise ProvisionError(f"{', '.join(taken)}: set by provisioning for each node, not a node setting")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ProvisionError(f"{out}: exists and is not empty; refusing to overwrite a consortium")
    seed = load_seed(seed_path)
    _check_file_names(seed)
    if not 1024 <= base_port <= 65535 - 2 * validators:
        raise ProvisionError(f"--base-port {base_port}: needs {2 * validators} ports from it, within 1024..65535")
    out.mkdir(parents=True, exist_ok=True)

    institutions = list(seed["institutions"])[:validators]
    for i in range(len(institutions), validators):
        institutions.append({"node_id": f"validator-{i}", "name": f"Validator institution {i}", "role": "member"})
    keys = _KeyWriter(out)
    vals, members, nodes = [], [], []
    for i, inst in enumerate(institutions):
        vk = keys.new("validators", inst["node_id"], f"{inst['name']} (validator node)")
        mk = keys.new("members", inst["node_id"], inst["name"])
        peer, rpc = node_ports(base_port, i)
        vals.append({"node_id": inst["node_id"], "public": vk.public, "address": f"{host}:{peer}"})
        members.append(mk.public)
        nodes.append(_NodePlan(inst["node_id"], inst["name"], peer, rpc))
    genesis = _genesis(seed, vals, members, _role_keys(seed, keys))
    genesis.write(out / "genesis.json")
    manifest = {
        "chain_id": genesis.chain_id,
        "genesis": "genesis.json",  # its hash is not copied here: editing the addresses changes it
        "nodes": [_write_node_config(out, n, host, node_settings or {}) for n in nodes],
        "keys": keys.files,
        "names": keys.names,
        "assets": [_resolve_asset(a, keys.accounts) for a in seed.get("assets", [])],
    }
    (out / "consortium.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Consortium.load(out)


class _KeyWriter:
    """New key files under OUT/keys/<group>/, with what the manifest lists of them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[str, dict[str, str]] = {}  # group -> name -> key file (relative)
        self.names: dict[str, str] = {}  # account -> display name
        self.accounts: dict[str, str] = {}  # seed name -> account

    def new(self, group: str, name: str, display: str) -> KeyPair:
        k = KeyPair.generate()
        rel = Path("keys") / group / f"{name}.json"
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        write_key_file(self.out / rel, k)
        self.files.setdefault(group, {})[name] = str(rel)
        self.names[k.public] = display
        self.accounts[name] = k.public
        return k


def _role_keys(seed: dict[str, Any], keys: _KeyWriter) -> dict[str, list[dict[str, Any]]]:
    """Keys for the seed's issuers, regulators, auditors and parties; the genesis roles of the first three."""
    roles: dict[str, list[dict[str, Any]]] = {}
    for iss in seed["issuers"]:
        k = keys.new("issuers", iss["name"], iss.get("display", iss["name"]))
        roles[k.public] = [{"role": "issuer", "classes": list(iss["classes"])}]
    for group, role in (("regulators", "regulator"), ("auditors", "auditor")):
        for entry in seed[group]:
            k = keys.new(group, entry["name"], entry.get("display", entry["name"]))
            roles[k.public] = [{"role": role}]
    for party in seed.get("parties", []):
        keys.new("parties", party["name"], party.get("display", party["name"]))
    return roles


def _genesis(seed: dict[str, Any], vals: list[dict[str, str]], members: list[str], roles: dict[str, Any]) -> Genesis:
    doc: dict[str, Any] = {
        "chain_id": seed["chain_id"],
        "time": int(time.time() * 1000),
        "validators": vals,
        "members": members,
        "roles": roles,
        "gov_threshold": len(members) // 2 + 1,
    }
    if "params" in seed:
        doc["params"] = seed["params"]
    try:
        return Genesis.from_plain(doc)
    except GenesisError as e:
        raise ProvisionError(f"the seed makes a bad genesis: {e}") from None


@dataclass(frozen=True)
class _NodePlan:
    node_id: str
    name: str
    peer_port: int
    rpc_port: int


def _write_node_config(out: Path, node: _NodePlan, host: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """OUT/nodes/<node_id>/config.json; the node's entry of the manifest."""
    node_dir = Path("nodes") / node.node_id
    (out / node_dir).mkdir(parents=True, exist_ok=True)
    NodeConfig(
        node_id=node.node_id,
        genesis=Path("../../genesis.json"),
        key=Path("../../keys/validators") / f"{node.node_id}.json",
        data_dir=Path("data"),
        peer_listen=f"{host}:{node.peer_port}",
        rpc_listen=f"127.0.0.1:{node.rpc_port}",
        log_file=Path("node.log"),
        **settings,
    ).write(out / node_dir / "config.json")
    return {
        "node_id": node.node_id,
        "name": node.name,
        "config": str(node_dir / "config.json"),
        "data_dir": str(node_dir / "data"),
        "rpc": f"http://127.0.0.1:{node.rpc_port}",
    }


def _resolve_asset(a: dict[str, Any], accounts: dict[str, str]) -> dict[str, Any]:
    """A seed asset with its parties' names turned into accounts and its document into a hash."""
    for party in ("issuer", "owner"):
        if a.get(party) not in accounts:
            raise ProvisionError(f"seed asset {a.get('asset_id')!r}: unknown {party} {a.get(party)!r}")
    return {
        "asset_id": a["asset_id"],
        "class": a["class"],
        "issuer": a["issuer"],
        "issuer_account": accounts[a["issuer"]],
        "owner": a["owner"],
        "owner_account": accounts[a["owner"]],
        "doc_hash": H(a["document"].encode()).hex(),
        "document": a["document"],
        "meta": dict(a.get("meta", {})),
    }
