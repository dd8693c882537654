"""The `titlechain` command line (docs/cli.md).

Exit codes (node/errors.py): 0 success, 1 a check failed or the node answered an error, 2 usage
error. Every command runs under `LayerErrorsGroup`, which turns the layers' errors into them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from chain.crypto import KeyPair, write_key_file
from node.cli.audit import audit
from node.cli.ceremony import ceremony, genesis_group
from node.cli.common import LayerErrorsGroup
from node.cli.explore import explore
from node.cli.tx import tx_cmd
from node.devnet.provision import DEFAULT_BASE_PORT, PORT_LAYOUT
from node.version import version

INIT_WARNING = (
    "every key in one directory: for a demo or a local test consortium only; "
    "a real consortium uses the ceremony: docs/operations.md"
)


if TYPE_CHECKING:
    from node.runtime.observer import Observer
    from node.runtime.validator import Validator

@click.group(cls=LayerErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", "-V", prog_name="titlechain", message="%(prog)s %(version)s")
def main() -> None:
    """titlechain: a permissioned ledger for the rights to real assets.

    A consortium of validators (banks, warehouse operators, registries, a regulator) agrees
    on every registration, transfer, pledge, freeze and redemption of an asset with a
    Byzantine fault tolerant consensus. Auditors verify the whole history offline.
    """


@main.command("demo")
@click.option("--keep", is_flag=True, help="leave the consortium running at the end (stop it with `titlechain localnet down --dir D`)")
@click.option("--base-port", default=DEFAULT_BASE_PORT, show_default=True, type=int, help=PORT_LAYOUT)
@click.option("--dir", "workdir", default=None, type=click.Path(file_okay=False, path_type=Path), help="a new or empty directory for the consortium, kept afterwards (default: a temp dir, removed)")
def demo_cmd(keep: bool, base_port: int, workdir: Path | None) -> None:
    """The whole story on a local four-validator consortium from seeds/demo.json.

    Registrations, sales, a pledge and its release, a double-spend settled by consensus, a
    court-ordered freeze and transfer, a refused duplicate document, an ownership proof and a proof
    of absence checked offline, and an audit of every node. Exit 0 only if every expected outcome happened.
    """
    from node.devnet.demo import run_demo

    sys.exit(run_demo(keep=keep, workdir=workdir, base_port=base_port))


main.add_command(tx_cmd)
main.add_command(explore)
main.add_command(audit)
main.add_command(ceremony)
main.add_command(genesis_group)


@main.group()
def key() -> None:
    """Ed25519 key files (an account is the hex of a public key)."""


@key.command("new")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="where to write the key file (created with mode 0600; never overwritten)")
def key_new(out: Path) -> None:
    """Create a new key file and print its account."""
    k = KeyPair.generate()
    write_key_file(out, k)
    click.echo(k.public)


@key.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def key_show(file: Path) -> None:
    """Print the account of key file FILE (checked: mode 0600, halves agree); never the private half."""
    from chain.crypto import load_key_file

    click.echo(load_key_file(file).public)  # a KeyFileError exits 1 (LayerErrorsGroup)


@main.command("init")
@click.option("--validators", default=4, show_default=True, type=click.IntRange(1, 100), help="how many validator nodes (n = 3f+1 tolerates f faulty)")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="an empty or new directory for the consortium")
@click.option("--seed", "seed", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path), help="the consortium seed file (default: seeds/demo.json)")
@click.option("--base-port", default=DEFAULT_BASE_PORT, show_default=True, type=int, help=PORT_LAYOUT)
def init_cmd(validators: int, out: Path, seed: Path | None, base_port: int) -> None:
    """A demo or local test consortium: genesis, every key, node configs, in one directory.

    Writes every key in one directory: for a demo or a local test consortium only; a real
    consortium uses the ceremony: docs/operations.md (`titlechain ceremony`). Whoever holds OUT
    holds every member key, and with them every governance vote.

    Writes OUT/genesis.json, OUT/consortium.json (the manifest), OUT/keys/<role>/*.json (mode 0600)
    and OUT/nodes/<node_id>/config.json for `titlechain node run --config`.
    """
    from node.devnet.provision import DEFAULT_SEED, init_consortium

    c = init_consortium(out, validators=validators, seed_path=seed or DEFAULT_SEED, base_port=base_port)
    click.echo(f"consortium {c.chain_id} in {c.root}: {len(c.nodes)} validators")
    click.echo(INIT_WARNING)
    for n in c.nodes:
        click.echo(f"  {n.node_id:<24} {n.rpc:<26} titlechain node run --config {n.config}")
    click.echo(
        f"before any node starts: set each validators[].address in {c.genesis} to the host:port where the "
        f"other validators reach that node (now all 127.0.0.1, right for one machine only), and each node's "
        f"peer_listen to match; the genesis hash covers the addresses, so every node, client and auditor "
        f"must then hold that same final file (compare `titlechain genesis hash {c.genesis}`)"
    )


@main.group()
def node() -> None:
    """Run a validator or an observer node."""


@node.command("run")
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path), help="the node's config.json (from `titlechain init`)")
@click.option("--peers", default=None, metavar="HOST:PORT,...", help="running validators to catch up from while this node's key is not in the set it knows (a validator added by governance); replaces the config's `peers`")
@click.option("--observer", is_flag=True, help="run as an observer (as the config's `observer: true` does): follow the validators, never vote")
@click.option("--state-sync", "state_sync", is_flag=True, help="with an empty data dir: join (a validator) or start following (an observer) from a certified recent state fetched from the validators instead of replaying from the genesis (docs/operations.md)")
def node_run(config: Path, peers: str | None, observer: bool, state_sync: bool) -> None:
    """Run one validator, or one observer, until SIGTERM or SIGINT.

    A validator recovers from its own data dir, catches up from peers, takes part in consensus and
    serves the RPC. A validator added by governance starts from the genesis with --peers (or the
    config's `peers`): it catches up and votes from the height whose validator set includes its
    key. An observer (--observer; its key is an auditor's or a regulator's account key) follows the
    chain from the validators, checking every block's certificate and re-executing it, and serves
    the read RPC; it refuses writes (403 read_only). On SIGTERM either finishes the block it is
    writing, closes the database and exits 0. Prints one line on stderr once it serves (its logs go
    to the config's log_file). Exit 1 if the config, genesis, key or data dir is unusable (a failed
    check), 2 on a usage error. With --state-sync and an empty data dir, a validator or an observer
    first fetches and verifies the state at a recent height from the validators, then follows the
    chain from there (a validator also votes).
    """
    from node.runtime.config import NodeConfig
    from node.runtime.process import run_node

    cfg = NodeConfig.load(config, observer=observer)  # a ConfigError or a NodeStartError exits 1 (LayerErrorsGroup)
    if peers is not None:
        cfg = cfg.with_peers(tuple(p.strip() for p in peers.split(",") if p.strip()))
    sys.exit(run_node(cfg, announce=lambda node: click.echo(started_line(node), err=True), state_sync=state_sync))


def started_line(node: Validator | Observer) -> str:
    """The one line a foreground `node run` prints when it serves: where, what, and where its logs go."""
    cfg = node.cfg
    logs = f"logs to {cfg.log_file}" if cfg.log_file is not None else "logs on stderr"
    state = "ready" if node.service.ready else f"not ready yet: {node.service.not_ready_reason()}"
    where = "follows the validators as an observer" if node.role == "observer" else f"peers on {cfg.peer_listen}"
    return (
        f"titlechain {version()}: node {cfg.node_id} of {node.genesis.chain_id} at height {node.ledger.height}; {where}, "
        f"RPC on {cfg.rpc_url}; {state}; {logs}"
    )


@main.group()
def localnet() -> None:
    """A local consortium as background processes, for development and demos."""


@localnet.command("up")
@click.option("--dir", "root", required=True, type=click.Path(file_okay=False, path_type=Path), help="the consortium directory (created with `init` on first use)")
@click.option("--validators", default=4, show_default=True, type=click.IntRange(1, 100), help="how many validator nodes, on first use (n = 3f+1 tolerates f faulty)")
@click.option("--base-port", default=DEFAULT_BASE_PORT, show_default=True, type=int, help=f"on first use: {PORT_LAYOUT}")
@click.option("--seed", "seed", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path), help="the consortium seed file (default: seeds/demo.json)")
def localnet_up(root: Path, validators: int, base_port: int, seed: Path | None) -> None:
    """Start every validator of DIR; return once all answer ready; write DIR/localnet.json."""
    from node.devnet.localnet import up

    up(root, validators=validators, base_port=base_port, seed=seed, say=click.echo)
    click.echo(f"localnet running; {root / 'localnet.json'} lists the nodes and key files")


@localnet.command("down")
@click.option("--dir", "root", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path), help="the consortium directory given to `localnet up`")
def localnet_down(root: Path) -> None:
    """Stop the validators listed in DIR/localnet.json (SIGTERM, then SIGKILL after 15 s)."""
    from node.devnet.localnet import down

    down(root, say=click.echo)


# `titlechain bench` lives in its own module (node/cli/bench.py); it imports the bench only when run.
from node.cli.bench import bench as _bench  # noqa: E402 (after the groups it joins)

main.add_command(_bench)
