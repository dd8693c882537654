"""Consortium seed files shipped with titlechain (read through importlib.resources).

`demo.json` is the default seed of `titlechain init`, `localnet up` and `demo`; it is package
data so that a plain (non-editable) install finds it in site-packages, not in a source tree.
"""

from importlib import resources
from pathlib import Path


def seed_path(name: str = "demo.json") -> Path:
    """The file system path of a shipped seed (setuptools installs package data as plain files)."""
    return Path(str(resources.files(__name__).joinpath(name)))
