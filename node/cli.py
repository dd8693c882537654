"""The `titlechain` command line (SPEC §7).

Exit codes: 0 success, 1 a check failed or the node answered an error, 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from chain.crypto import KeyFileError, KeyPair, write_key_file

EXIT_FAILED = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """titlechain: a permissioned ledger for the rights to real assets.

    A consortium of validators (banks, warehouse operators, registries, a regulator) agrees
    on every registration, transfer, pledge, freeze and redemption of an asset with a
    Byzantine fault tolerant consensus. Auditors verify the whole history offline.
    """


@main.group()
def key() -> None:
    """Ed25519 key files (an account is the hex of a public key)."""


@key.command("new")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="where to write the key file (created with mode 0600; never overwritten)")
def key_new(out: Path) -> None:
    """Create a new key file and print its account."""
    k = KeyPair.generate()
    try:
        write_key_file(out, k)
    except (KeyFileError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(k.public)
