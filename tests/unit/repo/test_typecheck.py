"""The type checker over chain/, contracts/ and node/, as configured in pyproject.toml ([tool.mypy]):
strict for the protocol layers and the consensus core, the default checks for the rest of node/."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_mypy_finds_no_errors() -> None:
    # a fresh cache dir per run would cost ~10 s more; mypy keys its cache on file contents
    env = {**os.environ, "MYPY_CACHE_DIR": str(ROOT / ".mypy_cache")}
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, f"mypy found type errors:\n{run.stdout}{run.stderr}"
