from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster.start(tmp_path / "net")
    try:
        yield c
    finally:
        c.stop()
        assert not any(c.pids(i) for i in range(len(c.nodes))), "a node process outlived localnet down"
