"""Each connection's fair share of a worker's threads, so one slow CRM cannot starve the others.

A worker runs ``concurrency`` deliveries at once and holds up to ``capacity`` rows (running,
and ready to start). Rows used to go to a FIFO thread pool in the order they were due: a CRM
that hung took every thread, and the rows of every other CRM waited behind it (a healthy CRM's
deliveries were 7 s late behind one that hung). Now:

* a connection runs at most ``run_cap`` rows at once: all threads but a reserve of a quarter
  (at least one), which is left to the other connections;
* a connection holds at most ``held_cap`` rows (``capacity`` less a quarter, the smallest
  batch the worker claims, or less the reserve when that is more): the claim skips connections
  that hold as many and takes no more than each has room for, so a batch of the others' rows
  can always be claimed;
* a free thread starts the oldest ready row whose connection is under ``run_cap``.

A connection alone may use the reserve too (every thread: a single CRM's drain is not cut by
a quarter) while it has shown itself fast: its last attempt finished within ``SLOW_SECONDS``,
none of its running attempts has run longer, and no other connection has rows running or
ready. A worker's first rows of a connection, a connection whose attempts have turned slow,
and any moment another connection has work keep the reserve free. What this leaves open: a
CRM that was fast and then hangs all at once can hold every thread until its attempts time
out (the connection's timeout, 10 s by default), once; after that its attempts count as slow.
With ``concurrency`` 1 there is nothing to share. Rows without a connection (queued mail)
count as one connection of their own. Not thread-safe: the worker calls it under its lock.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# An attempt that runs longer than this marks its connection slow: it keeps to its share.
SLOW_SECONDS = 1.5


def reserve_for(concurrency: int) -> int:
    """Threads one connection leaves to the others: a quarter, at least one (none alone)."""
    return max(1, concurrency // 4) if concurrency > 1 else 0


@dataclass
class ClaimRoom:
    """What a claim may take, per connection: ``full`` connections none, others ``room(id)``."""

    full: list[int]
    held: dict[int | None, int]
    held_cap: int

    def room(self, connection_id: int | None) -> int:
        return max(0, self.held_cap - self.held.get(connection_id, 0))

    def trim(self, rows: list[tuple[int, int | None]]) -> list[int]:
        """The ids among ``rows`` (id, connection id; oldest due first) that fit each room."""
        taken: Counter[int | None] = Counter()
        kept = []
        for row_id, connection_id in rows:
            if taken[connection_id] < self.room(connection_id):
                taken[connection_id] += 1
                kept.append(row_id)
        return kept


@dataclass
class FairShare:
    concurrency: int
    capacity: int
    ready: deque[Any] = field(default_factory=deque)
    running: Counter[int | None] = field(default_factory=Counter)
    held: Counter[int | None] = field(default_factory=Counter)
    clock: Callable[[], float] = time.monotonic
    # id(item) -> (connection id, when it started); connections whose last attempt was fast
    started: dict[int, tuple[int | None, float]] = field(default_factory=dict)
    fast: set[int | None] = field(default_factory=set)

    @property
    def run_cap(self) -> int:
        return self.concurrency - reserve_for(self.concurrency)

    @property
    def held_cap(self) -> int:
        return self.capacity - max(reserve_for(self.concurrency), self.capacity // 4)

    def claim_room(self) -> ClaimRoom:
        full = [c for c, n in self.held.items() if c is not None and n >= self.held_cap]
        return ClaimRoom(full=full, held=dict(self.held), held_cap=self.held_cap)

    def add(self, item: Any) -> None:
        """A claimed row (``item.delivery.connection_id``), ready to start."""
        self.held[item.delivery.connection_id] += 1
        self.ready.append(item)

    def next_to_start(self) -> Any | None:
        """The oldest ready row whose connection is under its cap, if a thread is free; it
        counts as running from now on."""
        if sum(self.running.values()) >= self.concurrency:
            return None
        now = self.clock()
        for index, item in enumerate(self.ready):
            connection_id = item.delivery.connection_id
            if self.running[connection_id] < self.run_cap or self._may_use_reserve(connection_id, now):
                del self.ready[index]
                self.running[connection_id] += 1
                self.started[id(item)] = (connection_id, now)
                return item
        return None

    def _may_use_reserve(self, connection_id: int | None, now: float) -> bool:
        """A connection alone, and fast so far, may use every thread (module docstring)."""
        if connection_id not in self.fast:
            return False
        if any(c != connection_id for c, n in self.running.items() if n > 0):
            return False
        if any(item.delivery.connection_id != connection_id for item in self.ready):
            return False
        return all(now - since < SLOW_SECONDS for c, since in self.started.values() if c == connection_id)

    def done(self, item: Any) -> None:
        """A row's attempt is over: its thread and its place are free."""
        connection_id = item.delivery.connection_id
        _connection, since = self.started.pop(id(item), (connection_id, self.clock()))
        if self.clock() - since < SLOW_SECONDS:
            self.fast.add(connection_id)
        else:
            self.fast.discard(connection_id)
        self.running[connection_id] -= 1
        self.held[connection_id] -= 1
        for counter in (self.running, self.held):
            if counter[connection_id] <= 0:
                del counter[connection_id]
