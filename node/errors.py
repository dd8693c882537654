"""The root of every error node/ raises, and the exit codes of the `titlechain` command.

Exit codes (docs/cli.md): 0 success; 1 a check failed, the node answered an error or could not
be reached, or the machine refused (a port, a file); 2 a usage error. `node.cli.common.exit_on_error`
maps the three layers' error roots to them in one place.
"""

from __future__ import annotations

from chain.errors import ChainError
from contracts.errors import ContractError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class NodeError(Exception):
    """Something node/ refuses or could not do. `exit_code` is what the CLI exits with for it."""

    exit_code = EXIT_FAILED


# what a command reports as `error: …` and exit 1 (or the error's own exit_code) rather than a traceback
LAYER_ERRORS: tuple[type[Exception], ...] = (ChainError, ContractError, NodeError, OSError)
