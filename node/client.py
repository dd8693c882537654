"""The SDK's first import path, kept for programs written against it: use `node.sdk` now."""

from node.sdk import *  # noqa: F403 (the SDK's public names, listed in node.sdk.__all__)
from node.sdk import __all__  # noqa: F401
