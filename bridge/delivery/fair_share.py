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

A single CRM still gets all but the reserve, with rows ready behind the running ones; with
``concurrency`` 1 there is nothing to share. Rows without a connection (queued mail) count as
one connection of their own. Not thread-safe: the worker calls it under its lock.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


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
        for index, item in enumerate(self.ready):
            connection_id = item.delivery.connection_id
            if self.running[connection_id] < self.run_cap:
                del self.ready[index]
                self.running[connection_id] += 1
                return item
        return None

    def done(self, item: Any) -> None:
        """A row's attempt is over: its thread and its place are free."""
        connection_id = item.delivery.connection_id
        self.running[connection_id] -= 1
        self.held[connection_id] -= 1
        for counter in (self.running, self.held):
            if counter[connection_id] <= 0:
                del counter[connection_id]
