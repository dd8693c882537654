"""scripts/store_tree_reads.py on a real store: a tree of a few thousand keys written as a block writes it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from chain import smt
from chain.database import open_db

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "store_tree_reads.py"


def _store_with_a_tree(path: Path, keys: int) -> int:
    """A store holding a tree of `keys` keys written over three heights; the depth of its deepest leaf."""
    db = open_db(path, create=True)
    root = smt.EMPTY_REF_ROOT
    try:
        for height, part in enumerate((range(keys // 2), range(keys // 2, keys), range(0, keys, 3)), start=1):
            changes: dict[bytes, bytes | None] = {b"s/k%d" % i: b"v%d.%d" % (i, height) for i in part}
            root_hex, writes = smt.update(root, changes, db.get, height)
            with db.write_batch() as batch:
                for k, v in writes.items():
                    batch.put(k, v)
            root = smt.root_at(db.get, height)
            assert root[0].hex() == root_hex
        return max(len(smt.prove(root, b"s/k%d" % i, db.get).levels) for i in range(keys))
    finally:
        db.close()


def test_it_reads_back_the_lower_nodes_of_the_newest_tree(tmp_path: Path) -> None:
    store = tmp_path / "store"
    deepest = _store_with_a_tree(store, 3000)
    r = subprocess.run([sys.executable, str(SCRIPT), str(store), "--paths", "200", "--min-depth", "2",
                        "--block-cache-mib", "2", "--passes", "2"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    head = re.search(r"height 3: ([\d,]+) nodes at depth >= 2 on 200 random paths \(([\d.]+) a path\); block cache 2 MiB", r.stdout)
    assert head, r.stdout
    per_path = float(head.group(2))
    # every path of a ~3,000-leaf tree passes depth 2 and ends at its leaf, no deeper than the deepest
    assert 1 <= per_path <= deepest - 2 + 1
    assert len(re.findall(r"pass \d: +[\d.]+ us of CPU a read; block cache holds [\d,]+ MiB", r.stdout)) == 2
    assert "a block-cache hit" in r.stdout and "absent keys" in r.stdout


def test_a_tree_shallower_than_asked_or_a_dir_without_a_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _store_with_a_tree(store, 50)
    r = subprocess.run([sys.executable, str(SCRIPT), str(store), "--paths", "20", "--min-depth", "200"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "the tree is shallower" in r.stderr
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "no CURRENT file" in r.stderr
