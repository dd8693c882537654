"""Run many random (and --byzantine adversarial) simulation schedules: `python scripts/sim_soak.py --help`.

The simulator is test code (tests/sim/, not installed with the package), and its runner lives
beside it as tests/sim/soak.py; long soaks and attacks are run from scripts/, so this runs that
runner in a child Python with the same arguments and exits with its status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "tests" / "sim" / "soak.py"

if __name__ == "__main__":
    if not RUNNER.is_file():
        sys.exit(f"{RUNNER}: not found; this script runs from a checkout of the repository")
    sys.exit(subprocess.call([sys.executable, str(RUNNER), *sys.argv[1:]]))
