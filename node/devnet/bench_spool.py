"""The bench's signed txs, spooled to disk and read back a chunk at a time (node/devnet/bench.py).

Every tx is signed and JSON-encoded before the clock starts, so the measured phase costs a client
only its HTTP requests. Held in memory, a client's txs grew with `--txs` (about 2 KB each as
objects: 1.5 GB a client for a 1,000,000-tx run); on disk they cost ~0.6 KB each and the
client's memory stays flat, whatever the length of the run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from chain.crypto import KeyPair, load_key_file
from chain.encoding import H
from chain.tx import Tx
from node.sdk.client import sign

if TYPE_CHECKING:
    from node.devnet.bench_client import ClientJob

Chunk = list[tuple[str, bytes]]  # (tx_id, the tx as JSON)


class Spool:
    """(tx_id, JSON) lines in a file: written once, then read in chunks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._out: IO[bytes] | None = path.open("wb")

    def add(self, tx: Tx) -> None:
        assert self._out is not None, "the spool is closed for writing"
        self._out.write(b"%s\t%s\n" % (tx.tx_id.encode(), json.dumps(tx.to_plain(), separators=(",", ":")).encode()))
        self.count += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def chunks(self, size: int) -> Iterator[Chunk]:
        """The txs in the order added, `size` at a time."""
        self.close()
        chunk: Chunk = []
        with self.path.open("rb") as f:
            for line in f:
                tx_id, body = line.rstrip(b"\n").split(b"\t", 1)
                chunk.append((tx_id.decode(), body))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _register(key: KeyPair, job: ClientJob, asset_class: str, asset_id: str, owner: str) -> Tx:
    args = {"asset_id": asset_id, "class": asset_class, "owner": owner, "doc_hash": H(asset_id.encode()).hex(), "meta": {}}
    return sign(key, job.chain_id, "asset.register", args, expires=job.expires)


def plan_txs(job: ClientJob, where: Path) -> tuple[Spool, Spool]:
    """(setup, measured), spooled under `where`: setup registers the assets that the measured phase
    transfers once each; the measured phase interleaves new registrations with those transfers."""
    issuers = [(load_key_file(path), cls) for path, cls in job.issuers]
    parties = [load_key_file(path) for path in job.parties]
    prefix = f"BENCH-{job.tag}-{job.index}"
    setup, measured = Spool(where / "setup.txs"), Spool(where / "measured.txs")
    for i in range(job.transfers):
        key, cls = issuers[i % len(issuers)]
        setup.add(_register(key, job, cls, f"{prefix}-s{i}", parties[i % len(parties)].public))
    for i in range(max(job.registers, job.transfers)):
        if i < job.registers:
            key, cls = issuers[i % len(issuers)]
            measured.add(_register(key, job, cls, f"{prefix}-r{i}", parties[(i + 3) % len(parties)].public))
        if i < job.transfers:
            to = parties[(i + 1) % len(parties)].public
            measured.add(sign(parties[i % len(parties)], job.chain_id, "asset.transfer",
                              {"asset_id": f"{prefix}-s{i}", "to": to}, expires=job.expires))
    setup.close()
    measured.close()
    return setup, measured
