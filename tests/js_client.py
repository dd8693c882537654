"""Running tests/js/client.mjs (the protocol's proof of sufficiency) under Node.js.

Where Node.js is absent the tests say so: they skip with a loud reason on a developer's machine
and fail when the environment variable CI is set, so a CI image without Node.js cannot pass
by skipping them. Nothing is installed: the client uses only Node.js's own modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CLIENT = Path(__file__).resolve().parent / "js" / "client.mjs"
MIN_NODE_MAJOR = 20  # String.prototype.isWellFormed, global fetch


def node_binary() -> str:
    """The `node` executable (>= 20), or a skip (a failure under CI) saying why there is none."""
    node = shutil.which("node")
    why = None
    if node is None:
        why = "Node.js (`node`) is not on PATH"
    else:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        major = int(out.lstrip("v").split(".")[0]) if out.startswith("v") else 0
        if major < MIN_NODE_MAJOR:
            why = f"Node.js {out or '?'} is older than {MIN_NODE_MAJOR}"
    if why is None:
        return node  # type: ignore[return-value]
    message = f"{why}: the JavaScript client (tests/js/client.mjs) was NOT checked against the protocol"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this is a failure)")
    pytest.skip(message)


def run_client(*args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    """(exit code, its JSON report, stderr)."""
    r = subprocess.run([node_binary(), str(CLIENT), *args], capture_output=True, text=True, timeout=timeout)
    try:
        report = json.loads(r.stdout) if r.stdout.strip() else {}
    except json.JSONDecodeError:
        report = {"unparsed": r.stdout}
    return r.returncode, report, r.stderr
