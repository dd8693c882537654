"""The consortium load benchmark: the same as `titlechain bench` (node/devnet/bench.py), under another name.
Needs the package installed (`pip install -e .`), like every script here.

    python scripts/bench.py --txs 20000 --clients 2 --json-out bench.json
"""

from node.cli.bench import bench

if __name__ == "__main__":
    bench(prog_name="scripts/bench.py")
