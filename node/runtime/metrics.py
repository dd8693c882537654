"""A node's Prometheus metrics (`GET /metrics`, docs/rpc.md).

Each node owns a private `CollectorRegistry`, so two nodes in one process (tests, the simulator)
never mix their figures and the process-wide default registry stays untouched. The node calls the
`on_*`/`set_*` methods from its own code paths; the RPC only calls `render()` (via
`NodeApi.metrics_text`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.runtime.memory import c_heap_bytes
from node.version import version

# Submit-to-commit latency spans a few tens of milliseconds (idle chain, one block) to minutes
# (view changes under faults); the buckets cover both ends.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class NodeMetrics:
    def __init__(self) -> None:
        # No node_id label: the scraper's `instance` label already tells nodes apart.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.height = Gauge("titlechain_height", "Height of the last committed block", registry=r)
        self.view = Gauge("titlechain_view", "Current consensus view", registry=r)
        self.txs_committed = Counter(
            "titlechain_txs_committed", "Transactions committed (receipt ok or rejected)", ["status"], registry=r
        )
        self.blocks_committed = Counter("titlechain_blocks_committed", "Blocks committed by this node", registry=r)
        self.mempool = Gauge("titlechain_mempool_txs", "Transactions waiting in the mempool", registry=r)
        self.mempool_bytes = Gauge("titlechain_mempool_bytes", "Encoded bytes of the mempool's transactions", registry=r)
        self.peers = Gauge("titlechain_peers_connected", "Validator peers with a live, authenticated connection", registry=r)
        self.consensus_frame_max = Gauge(
            "titlechain_consensus_frame_max_bytes",
            "Largest consensus message frame this node has sent (bytes); "
            "bounded by the validator count, not the block size",
            registry=r,
        )
        self._consensus_frame_max = 0
        self.commit_latency = Histogram(
            "titlechain_commit_latency_seconds",
            "Seconds from a tx's arrival at this node to its commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.evidence = Counter(
            "titlechain_evidence",
            "Equivocation records this node holds, by the validator they convict (counted from the store at start)",
            ["validator"],
            registry=r,
        )
        self.view_changes = Counter(
            "titlechain_view_changes", "Views this node moved past: each a primary that was slow, absent or faulty", registry=r
        )
        self.votes_missed = Counter(
            "titlechain_votes_missed",
            "Blocks committed here whose certificate lacks this validator's commit (a certificate holds the first "
            "quorum to arrive, so a slow validator misses some; one that climbs steadily is down or cut off)",
            ["validator"],
            registry=r,
        )
        self.observers = Gauge(
            "titlechain_observers_linked", "Observer nodes (auditors', regulators') linked to this validator", registry=r
        )
        self.observer_dropped = Counter(
            "titlechain_observer_messages_dropped",
            "Messages from observers dropped unanswered: anything but a block request (a vote, a tx, a block), "
            "or requests beyond an observer's rate; none ever reaches consensus",
            registry=r,
        )
        Info("titlechain_build", "The titlechain build this node runs", registry=r).info({"version": version()})
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds…
        r.register(_ReadAtScrape(C_HEAP, C_HEAP_HELP, "state", c_heap_bytes))  # glibc's heap: what the node does not count
        # Both label values exist from the start, so a scrape shows 0 rather than nothing.
        self.txs_committed.labels(status="ok")
        self.txs_committed.labels(status="rejected")

    def on_commit(self, height: int, n_ok: int, n_rejected: int = 0, latencies: Iterable[float] = ()) -> None:
        """A block was committed: its height, how many txs it held, and the submit->commit seconds
        of those that arrived at this node (txs gossiped from peers have no local submit time)."""
        self.height.set(height)
        self.blocks_committed.inc()
        if n_ok:
            self.txs_committed.labels(status="ok").inc(n_ok)
        if n_rejected:
            self.txs_committed.labels(status="rejected").inc(n_rejected)
        for seconds in latencies:
            self.commit_latency.observe(max(0.0, seconds))

    def on_view_change(self, views: int) -> None:
        self.view_changes.inc(views)

    def on_certificate(self, validators: Iterable[str], signed: Iterable[str]) -> None:
        """A committed block's certificate: every validator (node id) of its set, and those that signed."""
        signers = set(signed)
        for node_id in validators:
            counter = self.votes_missed.labels(validator=node_id)  # created at 0 for those that signed
            if node_id not in signers:
                counter.inc()

    def set_height(self, height: int, validators: Iterable[str] = ()) -> None:
        """At start-up, after recovering from the store (no block was committed by this run): the
        head's height, and a votes-missed series at 0 for each validator (node id) of the next
        height's set, so a scrape shows every validator before the first commit of this run."""
        self.height.set(height)
        for node_id in validators:
            self.votes_missed.labels(validator=node_id)

    def set_view(self, view: int) -> None:
        self.view.set(view)

    def set_mempool(self, n_txs: int, n_bytes: int = 0) -> None:
        self.mempool.set(n_txs)
        self.mempool_bytes.set(n_bytes)

    def on_consensus_frame(self, n_bytes: int) -> None:
        if n_bytes > self._consensus_frame_max:
            self._consensus_frame_max = n_bytes
            self.consensus_frame_max.set(n_bytes)

    def set_peers(self, connected: int) -> None:
        self.peers.set(connected)

    def on_evidence(self, validator: str, n: int = 1) -> None:
        self.evidence.labels(validator=validator).inc(n)

    def set_observers(self, linked: int) -> None:
        self.observers.set(linked)

    def on_observer_message_dropped(self) -> None:
        self.observer_dropped.inc()

    def watch_held_memory(self, held: Callable[[], Mapping[str, int]]) -> None:
        """Show what the node holds in memory by part (`titlechain_memory_held_bytes{part=…}`: its
        caches, its mempool, RocksDB's memtables, block cache and table readers), read from `held`
        at each scrape: each part has a cap an operator sets (docs/operations.md, Memory), except
        RocksDB's table readers, which grow with the store up to `db_max_open_files` tables."""
        self.registry.register(_ReadAtScrape(HELD_MEMORY, HELD_MEMORY_HELP, "part", held))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ReadAtScrape(Collector):
    """A gauge family of one label, read from `read` at each scrape (bytes by part or state): the
    figures change with every block, and a gauge set by a timer would be as old as its period.
    `read` returning None: the family is absent (a platform that cannot tell)."""

    def __init__(self, name: str, help_text: str, label: str, read: Callable[[], Mapping[str, int] | None]) -> None:
        self._name, self._help, self._label, self._read = name, help_text, label, read

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self._name, self._help, labels=[self._label])

    def collect(self) -> Iterator[Metric]:
        values = self._read()
        if values is None:
            return
        family = GaugeMetricFamily(self._name, self._help, labels=[self._label])
        for key, n in values.items():
            family.add_metric([key], n)
        yield family


C_HEAP = "titlechain_memory_c_heap_bytes"
C_HEAP_HELP = (
    "Bytes of the C heap (glibc's malloc, every arena) by state: in_use (RocksDB's memtables, block cache and "
    "table readers; Python's large objects) and free (kept for reuse, not returned to the OS)"
)

HELD_MEMORY = "titlechain_memory_held_bytes"
HELD_MEMORY_HELP = (
    "Bytes the node holds in memory, by part: its caches (estimated), its mempool's txs (encoded), "
    "RocksDB's memtables, block cache and open tables' indexes and filters (RocksDB's own counts)"
)
