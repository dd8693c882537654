"""The installed titlechain's version: the one in pyproject.toml, read from the package metadata.

Shown by `titlechain --version`, in `GET /v1/status` (`version`) and as the metric
`titlechain_build_info{version=...}`, so an operator can tell which build each node runs.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata

UNKNOWN = "0+unknown"  # run from a source tree that was never installed


@cache
def version() -> str:
    try:
        return metadata.version("titlechain")
    except metadata.PackageNotFoundError:
        return UNKNOWN
