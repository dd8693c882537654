"""The consortium load benchmark: the same as `titlechain bench` (node/bench.py), for running from a checkout.

    python scripts/bench.py --txs 20000 --clients 2 --json-out bench.json
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.bench_cli import bench  # noqa: E402

if __name__ == "__main__":
    bench(prog_name="scripts/bench.py")
