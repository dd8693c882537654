"""`titlechain ceremony …` and `titlechain genesis …`: forming a consortium without one key holder.

Each institution runs `ceremony request` on its own machines (its keys never leave them), a
coordinator runs `ceremony assemble` on the public requests alone, each institution checks the
result with `genesis verify` and compares `genesis hash` out of band, then writes its node's
config with `ceremony node-config`. The rules live in chain/ceremony.py; this module reads and
writes the files. The procedure is in docs/operations.md, the options in docs/cli.md.

Exit codes (docs/cli.md): 0 success; 1 a request, manifest or genesis was refused (the message
says why); 2 a usage error, including a file that cannot be read or is not JSON.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from chain.ceremony import (
    MAX_MANIFEST_BYTES,
    MAX_REQUEST_BYTES,
    CeremonyError,
    ConsortiumParams,
    Manifest,
    MembershipRequest,
    assemble,
    canonical_roles,
    load_manifest,
    request_hash,
    verify_genesis,
)
from chain.crypto import KeyFileError, KeyPair, load_key_file, write_key_file
from chain.genesis import Genesis, GenesisError, Grant
from node.cli.common import fail

ACCOUNT_KEY = "account.json"  # the institution's key: signs its request, holds its roles and vote
NODE_KEY = "validator.json"  # its validator node's key, if it runs one; lives on the node machine
FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
NEW_FILE = click.Path(dir_okay=False, path_type=Path)
ROLE_HELP = "member | validator | regulator | auditor | issuer:CLASS[,CLASS…]; repeat for each role"


def read_json(path: Path, max_bytes: int, what: str) -> Any:
    """A JSON file no larger than max_bytes; anything else is a usage error (exit 2)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise click.BadParameter(f"{path}: cannot read {what}: {e.strerror}") from None
    if len(data) > max_bytes:
        raise click.BadParameter(f"{path}: larger than {max_bytes} bytes; not a {what}")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"{path}: {what} is not JSON: {e}") from None


def write_new(path: Path, obj: Any) -> None:
    """Write a public JSON file; never replaces an existing one (a second ceremony's output must
    not silently replace the first's)."""
    try:
        with open(path, "x") as f:
            f.write(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except FileExistsError:
        fail(f"{path}: already exists; refusing to overwrite it")
    except OSError as e:
        fail(f"{path}: cannot write: {e.strerror}")


def load_request(path: Path) -> MembershipRequest:
    try:
        return MembershipRequest.from_plain(read_json(path, MAX_REQUEST_BYTES, "membership request"))
    except CeremonyError as e:
        fail(f"{path}: {e}")


def parse_roles(values: tuple[str, ...]) -> tuple[list[Grant], bool]:
    """--role values as genesis grants, and whether `validator` was among them."""
    grants: list[dict[str, Any]] = []
    validator = False
    for v in values:
        role, _, classes = v.partition(":")
        if role == "validator" and not classes:
            validator = True
        elif role == "issuer" and classes:
            grants.append({"role": "issuer", "classes": classes.split(",")})
        elif role in ("member", "regulator", "auditor") and not classes:
            grants.append({"role": role})
        else:
            raise click.BadParameter(f"{v!r}: {ROLE_HELP}", param_hint="--role")
    try:
        return canonical_roles(grants), validator
    except GenesisError as e:
        raise click.BadParameter(str(e).removeprefix("genesis."), param_hint="--role") from None


def own_key(keys_dir: Path, name: str) -> tuple[KeyPair, bool]:
    """The key in keys_dir/name: created (mode 0600) if absent, else loaded; never overwritten."""
    path = keys_dir / name
    if path.exists():
        try:
            return load_key_file(path), False
        except KeyFileError as e:
            raise click.BadParameter(str(e), param_hint="--keys-dir") from None
    key = KeyPair.generate()
    try:
        write_key_file(path, key)
    except (KeyFileError, OSError) as e:
        fail(str(e))
    return key, True


@click.group()
def ceremony() -> None:
    """Form a consortium's genesis from its institutions' signed requests (no one holds every key)."""


@ceremony.command("request")
@click.option("--chain-id", required=True, help="the consortium's agreed chain id (the request is valid for it only)")
@click.option("--name", required=True, help="the institution's name as tables will show it")
@click.option("--role", "roles", multiple=True, required=True, metavar="ROLE", help=ROLE_HELP)
@click.option("--node-id", default=None, help="with --role validator: the node's id, e.g. bank-a")
@click.option(
    "--address", default=None, metavar="HOST:PORT",
    help="with --role validator: where the other validators reach the node",
)
@click.option(
    "--keys-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help=f"this institution's private directory: {ACCOUNT_KEY} and {NODE_KEY} are created there"
    " (mode 0600) or reused, never overwritten",
)
@click.option("--out", required=True, type=NEW_FILE, help="where to write the request (public; never overwritten)")
def request_cmd(
    chain_id: str,
    name: str,
    roles: tuple[str, ...],
    node_id: str | None,
    address: str | None,
    keys_dir: Path,
    out: Path,
) -> None:
    """Create this institution's keys and its signed membership request.

    The request holds only public parts (name, account, roles, and for a validator its node id,
    node key and address), signed by the account key and by the node key. Send it to the
    coordinator; keep KEYS_DIR on your own machines.
    """
    grants, validator = parse_roles(roles)
    if validator != (node_id is not None) or validator != (address is not None):
        raise click.UsageError("--role validator goes with --node-id and --address, and they only with it")
    if out.exists():
        fail(f"{out}: already exists; refusing to overwrite it")
    try:  # every check on the request's fields first, with throwaway keys, so a typo creates no key
        MembershipRequest.create(
            chain_id=chain_id, name=name, account=KeyPair.generate(), roles=grants,
            node=KeyPair.generate() if validator else None, node_id=node_id, address=address,
        )
    except CeremonyError as e:
        raise click.UsageError(str(e)) from None
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{keys_dir}: cannot create: {e.strerror}")
    account, new_account = own_key(keys_dir, ACCOUNT_KEY)
    node, new_node = own_key(keys_dir, NODE_KEY) if validator else (None, False)
    try:
        req = MembershipRequest.create(
            chain_id=chain_id, name=name, account=account, roles=grants, node=node, node_id=node_id, address=address
        )
    except CeremonyError as e:  # only a reused key can fail here: the account key reused as the node key
        fail(str(e))
    write_new(out, req.to_plain())
    click.echo(f"membership request of {name!r} for chain {chain_id} written to {out}")
    click.echo(f"  account   {account.public}  ({'new' if new_account else 'existing'} key {keys_dir / ACCOUNT_KEY})")
    if node is not None:
        click.echo(f"  node key  {node.public}  ({'new' if new_node else 'existing'} key {keys_dir / NODE_KEY})")
    click.echo(f"  request fingerprint {request_hash(req)}")


def parse_params(values: tuple[str, ...]) -> dict[str, int] | None:
    params: dict[str, int] = {}
    for v in values:
        k, eq, n = v.partition("=")
        if not eq or not (n.isascii() and n.isdigit()) or k in params:
            raise click.BadParameter(f"{v!r}: NAME=POSITIVE_INTEGER, each name once", param_hint="--param")
        params[k] = int(n)
    return params or None


@ceremony.command("assemble")
@click.option(
    "--request", "requests", multiple=True, required=True,
    type=FILE,
    help="an institution's request file; repeat for each",
)
@click.option("--chain-id", required=True, help="the consortium's chain id; every request must name it")
@click.option(
    "--time", "time_ms", default=None, type=click.IntRange(0),
    help="the genesis time, ms since the epoch (default: now)",
)
@click.option(
    "--gov-threshold", default=None, type=click.IntRange(1),
    help="approvals a governance proposal needs (default: a majority of the members at the time)",
)
@click.option(
    "--param", "params", multiple=True, metavar="NAME=N",
    help="a genesis parameter, e.g. view_timeout_ms=2000 (docs/protocol.md, Genesis)",
)
@click.option(
    "--allow-fewer-validators", is_flag=True,
    help="accept fewer than 4 validators (tolerates no faulty one: for tests only)",
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="a new or empty directory for genesis.json and manifest.json",
)
def assemble_cmd(
    requests: tuple[Path, ...],
    chain_id: str,
    time_ms: int | None,
    gov_threshold: int | None,
    params: tuple[str, ...],
    allow_fewer_validators: bool,
    out: Path,
) -> None:
    """Assemble the genesis and its manifest from the institutions' requests (no private key needed)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"{out}: exists and is not an empty directory; refusing to overwrite a ceremony's output")
    loaded = [load_request(p) for p in requests]
    when = int(time.time() * 1000) if time_ms is None else time_ms
    cp = ConsortiumParams(chain_id, when, gov_threshold, parse_params(params))
    try:
        manifest = assemble(loaded, cp, min_validators=1 if allow_fewer_validators else 4)
    except CeremonyError as e:
        fail(str(e))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{out}: cannot create: {e.strerror}")
    write_new(out / "genesis.json", manifest.genesis.doc)
    write_new(out / "manifest.json", manifest.to_plain())
    click.echo(f"genesis of {chain_id} written to {out / 'genesis.json'}, its manifest to {out / 'manifest.json'}")
    show_consortium(manifest)
    click.echo("Send both files to every institution; each runs `titlechain genesis verify` and compares the hash.")


def grant_text(grant: dict[str, Any]) -> str:
    """A grant as `--role` spells it: issuer:CLASS,CLASS or the role's name."""
    return f"issuer:{','.join(grant['classes'])}" if grant["role"] == "issuer" else grant["role"]


def show_consortium(manifest: Manifest) -> None:
    g = manifest.genesis
    click.echo(f"  {'name':<32} {'member':<6} {'node_id':<20} {'address':<28} grants")
    for row in manifest.institutions():
        grants = ", ".join(grant_text(gr) for gr in row["grants"])
        member = "yes" if row["member"] else "no"
        node_id, address = row["node_id"] or "-", row["address"] or "-"
        click.echo(f"  {row['name']:<32} {member:<6} {node_id:<20} {address:<28} {grants or '-'}")
    n, f = g.validators.n, g.validators.f
    warning = "  WARNING: not one faulty validator is tolerated" if f == 0 else ""
    click.echo(f"  {n} validators: tolerates {f} faulty{warning}")
    click.echo(f"  {len(g.members)} members, governance threshold {g.doc.get('gov_threshold', 'a majority')}")
    click.echo(f"genesis hash {g.hash}")


@ceremony.command("node-config")
@click.option(
    "--keys-dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
    help=f"this institution's key directory (holds {NODE_KEY})",
)
@click.option("--genesis", "genesis_path", required=True, type=FILE, help="the verified genesis.json")
@click.option("--rpc-port", required=True, type=click.IntRange(1, 65535), help="the node's RPC port, on 127.0.0.1")
@click.option(
    "--peer-listen", default=None, metavar="HOST:PORT",
    help="what the node binds for its peers (default: its genesis address; e.g. 0.0.0.0:PORT behind NAT)",
)
@click.option(
    "--data-dir", default="data", show_default=True, help="the node's data dir, relative to the config's directory",
)
@click.option("--out", required=True, type=NEW_FILE, help="the config file to write (mode 0600; never overwritten)")
def node_config_cmd(
    keys_dir: Path,
    genesis_path: Path,
    rpc_port: int,
    peer_listen: str | None,
    data_dir: str,
    out: Path,
) -> None:
    """Write this institution's node config from its own node key and the genesis."""
    from node.runtime.config import NodeConfig

    genesis = load_genesis(genesis_path)
    try:
        key = load_key_file(keys_dir / NODE_KEY)
    except KeyFileError as e:
        raise click.BadParameter(f"{e} (only a validator institution runs a node)", param_hint="--keys-dir") from None
    me = genesis.validators.by_public.get(key.public)
    if me is None:
        fail(f"the node key {key.public} in {keys_dir / NODE_KEY} is not a validator of this genesis")
    if out.exists():
        fail(f"{out}: already exists; refusing to overwrite a node config")
    base = out.resolve().parent
    try:
        cfg = NodeConfig(
            node_id=me.node_id,
            genesis=Path(os.path.relpath(genesis_path.resolve(), base)),
            key=Path(os.path.relpath((keys_dir / NODE_KEY).resolve(), base)),
            data_dir=Path(data_dir),
            peer_listen=peer_listen or me.address,
            rpc_listen=f"127.0.0.1:{rpc_port}",
            log_file=Path("node.log"),
        )
    except ValueError as e:  # pydantic's ValidationError is one
        raise click.BadParameter(str(e).splitlines()[-1], param_hint="--peer-listen") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        cfg.write(out)
    except OSError as e:
        fail(f"{out}: cannot write: {e.strerror}")
    click.echo(f"node {me.node_id}: config written to {out}; start it with `titlechain node run --config {out}`")


def load_genesis(path: Path) -> Genesis:
    doc = read_json(path, MAX_MANIFEST_BYTES, "genesis")
    try:
        return Genesis.from_plain(doc)
    except GenesisError as e:
        raise click.BadParameter(f"{path}: not a usable genesis: {e}", param_hint="--genesis") from None


@click.group("genesis")
def genesis_group() -> None:
    """Check a genesis: its hash, and that a ceremony's manifest makes it."""


@genesis_group.command("hash")
@click.argument("path", type=FILE)
def genesis_hash_cmd(path: Path) -> None:
    """Print the genesis hash of FILE, to compare with the other institutions out of band."""
    click.echo(load_genesis(path).hash)


@genesis_group.command("verify")
@click.option("--genesis", "genesis_path", required=True, type=FILE, help="the genesis.json the coordinator sent")
@click.option("--manifest", "manifest_path", required=True, type=FILE, help="the manifest.json the coordinator sent")
@click.option(
    "--request", "request_path", default=None, type=FILE,
    help="your own request file: checks you are in the genesis exactly as you asked",
)
def genesis_verify_cmd(genesis_path: Path, manifest_path: Path, request_path: Path | None) -> None:
    """Check that GENESIS is exactly what the manifest's signed requests and parameters make.

    Every request's signatures, the genesis re-derived from them, and (with --request) that your
    own request is there as you signed it. Exit 0 and the hash to compare out of band, or exit 1.
    """
    genesis = load_genesis(genesis_path)
    manifest_obj = read_json(manifest_path, MAX_MANIFEST_BYTES, "manifest")
    own = load_request(request_path) if request_path is not None else None
    try:
        manifest = load_manifest(manifest_obj)
        verify_genesis(genesis, manifest, own)
    except CeremonyError as e:
        click.echo(f"genesis INVALID: {e}")
        raise SystemExit(1) from None
    count = len(manifest.requests)
    click.echo(f"genesis ok: {genesis_path} is what the {count} signed requests of {manifest_path} make")
    if own is not None:
        click.echo(f"  your request ({own.name!r}) is in it exactly as you signed it")
    else:
        click.echo("  (no --request given: your own entries were not checked)")
    show_consortium(manifest)

