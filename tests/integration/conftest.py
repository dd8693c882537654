from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster
from solo import Solo


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path / "net")
    try:
        yield c
    finally:
        c.stop()
        assert not any(c.pids(i) for i in range(len(c.nodes))), "a node process outlived localnet down"


@pytest.fixture
def solo(tmp_path: Path) -> Iterator[Solo]:
    """One validator process's files, not started; stopped after the test if it was."""
    s = Solo(tmp_path / "solo")
    try:
        yield s
    finally:
        s.stop()
