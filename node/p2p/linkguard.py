"""What keeps a flood of connections from isolating a validator: the inbound handshake gate, and
log lines that summarise instead of repeating.

`HandshakeGate` tracks the inbound connections whose handshake is under way:

- anonymous ones (no signed hello yet) are capped per source address (`max_per_source`) and in
  all (`max_total`). A new connection never waits and is never refused for want of a slot: at a
  cap, the OLDEST anonymous connection of its source (per-source cap), or of the source that holds
  the most (total cap), is closed instead. An attacker thus holds at most `max_per_source` slots
  per address, only until its hello deadline, and cannot keep a newcomer out: a validator's
  connection only needs to live until its hello is read, which is its first frame.
- once a connection's hello is signed by a validator key we accept, it leaves the anonymous pool
  for that key's own reserved slot, which no anonymous connection can take. One per key: a newer
  one replaces an older one still under way (as a newer link replaces an older one), so even a
  replayed hello holds the slot only until the real validator dials again.

`LogSummary` logs the first event of a quiet period in full, then at most one summary line per
`interval` (counts by reason and by source) while events go on: a flood costs a few lines a
minute, not one per connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

_MAX_KINDS = 8  # distinct reasons/sources counted one by one in a summary; the rest are "other"


class LogSummary:
    def __init__(self, logger: logging.Logger, what: str, interval: float) -> None:
        self._log = logger
        self._what = what
        self._interval = interval
        self._reasons: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def event(self, source: str, reason: str) -> None:
        if self._timer is None:  # quiet until now: say it in full, and start counting
            self._log.warning("%s (%s): %s", self._what, source, reason)
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)
            return
        self._count(self._reasons, reason)
        self._count(self._sources, source)

    @staticmethod
    def _count(counter: Counter[str], key: str) -> None:
        counter[key if key in counter or len(counter) < _MAX_KINDS else "other"] += 1

    def _flush(self) -> None:
        total = sum(self._reasons.values())
        if not total:
            self._timer = None  # quiet again: the next event is logged in full
            return
        reasons = "; ".join(f"{n} x {r}" for r, n in self._reasons.most_common())
        sources = ", ".join(f"{s} ({n})" for s, n in self._sources.most_common())
        self._log.warning("%s: %d more in the last %g s: %s; from %s", self._what, total, self._interval, reasons, sources)
        self._reasons.clear()
        self._sources.clear()
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass
class _Pending:
    source: str
    abort: Callable[[], None]
    claimed: str | None = None


class HandshakeGate:
    def __init__(self, max_total: int, max_per_source: int, on_evict: Callable[[str, str], None]) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._on_evict = on_evict  # (source, reason): for the log summary
        self._pending: dict[int, _Pending] = {}  # in arrival order: the first is the oldest
        self._tickets = itertools.count()

    def anonymous(self, source: str | None = None) -> list[int]:
        """The tickets of anonymous handshakes (of one source), oldest first."""
        return [t for t, p in self._pending.items() if p.claimed is None and (source is None or p.source == source)]

    def admit(self, source: str, abort: Callable[[], None]) -> int:
        """Register a new inbound connection, closing an older anonymous one if a cap is reached."""
        mine = self.anonymous(source)
        if len(mine) >= self.max_per_source:
            self._evict(mine[0], f"{self.max_per_source} handshakes from one address under way; closed the oldest")
        elif len(everyone := self.anonymous()) >= self.max_total:
            per_source = Counter(self._pending[t].source for t in everyone)
            busiest = per_source.most_common(1)[0][0]
            self._evict(self.anonymous(busiest)[0], f"{self.max_total} handshakes under way; closed the oldest of the busiest address")
        ticket = next(self._tickets)
        self._pending[ticket] = _Pending(source, abort)
        return ticket

    def claim(self, ticket: int, public: str) -> None:
        """The connection's hello is signed by validator `public`: move it to that key's slot."""
        for t, p in list(self._pending.items()):
            if p.claimed == public and t != ticket:
                self._evict(t, "a newer handshake from the same validator key replaced it")
        self._pending[ticket].claimed = public

    def release(self, ticket: int) -> bool:
        """Forget a finished handshake; False if the gate had already closed it (and logged why)."""
        return self._pending.pop(ticket, None) is not None

    def _evict(self, ticket: int, reason: str) -> None:
        p = self._pending.pop(ticket)
        self._on_evict(p.source, reason)
        p.abort()
