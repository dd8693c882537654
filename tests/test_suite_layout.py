"""The suite's own shape: pytest imports test modules by basename (the test folders are not
packages), so two modules of one name stop a whole-suite run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_no_two_test_modules_share_a_basename() -> None:
    root = Path(__file__).parent
    names = Counter(p.name for p in root.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
