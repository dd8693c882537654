"""Per-client rate limits for the RPC: a token bucket per bearer token, or per client address
when the node has no tokens.

Each client's bucket holds up to `burst` units and refills at `rate` units a second. A request
costs one unit; a submission costs one unit per tx it carries (a 10,000-tx batch costs 10,000),
so a client's tx rate is bounded whether it sends one tx per request or full batches. A request
the bucket cannot pay for is refused whole, nothing taken, with the seconds after which it could
be paid (`Retry-After`). The burst must hold a full batch, or such a batch could never pass.

Time is injected (`clock`), so tests drive it without sleeping. The table of buckets is bounded:
beyond `max_clients` the least recently seen client's bucket is dropped (it comes back full,
which gives a client that rotates addresses nothing it could not have by using them at once).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from node.errors import NodeError

# Defaults of the node config (node/runtime/config.py); a consortium bench runs about 1,700 tx/s over all
# its clients on one address, so these leave honest load alone and stop a runaway client.
DEFAULT_RATE_PER_S = 5_000.0
DEFAULT_BURST = 20_000
MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    level: float
    updated: float


class RateLimited(NodeError):
    def __init__(self, retry_after_s: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.message = message


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        burst: int = DEFAULT_BURST,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)) or burst <= 0 or max_clients <= 0:
            raise ValueError("rate, burst and max_clients must be positive and finite")
        self.rate = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str, cost: int = 1) -> None:
        """Charge `cost` units to `client`, or raise RateLimited (charging nothing)."""
        now = self._clock()
        bucket = self._bucket(client, now)
        bucket.level = min(self.burst, bucket.level + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if cost <= bucket.level:
            bucket.level -= cost
            return
        if cost > self.burst:
            wait = math.ceil(cost / self.rate)
            raise RateLimited(wait, f"{cost} units exceed this client's burst of {self.burst}; send fewer txs at once")
        wait = max(1, math.ceil((cost - bucket.level) / self.rate))
        raise RateLimited(wait, f"rate limit of {self.rate:g} units/s (burst {self.burst}) reached; retry in {wait} s")

    def _bucket(self, client: str, now: float) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[client] = bucket
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket
