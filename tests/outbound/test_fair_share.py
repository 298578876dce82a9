"""``bridge.delivery.fair_share``: a connection's share of a worker's threads and rows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bridge.delivery.fair_share import ClaimRoom, FairShare, reserve_for


def row(connection_id: int | None) -> SimpleNamespace:
    return SimpleNamespace(delivery=SimpleNamespace(connection_id=connection_id))


@pytest.mark.parametrize(("concurrency", "reserve"), [(1, 0), (2, 1), (4, 1), (8, 2), (32, 8)])
def test_one_connection_leaves_a_quarter_of_the_threads(concurrency: int, reserve: int) -> None:
    assert reserve_for(concurrency) == reserve


def test_a_free_thread_starts_the_oldest_row_whose_connection_is_under_its_share() -> None:
    share = FairShare(concurrency=4, capacity=8)
    slow = [row(1) for _ in range(5)]
    for item in [*slow, row(2)]:
        share.add(item)
    started = [share.next_to_start() for _ in range(4)]
    assert [s.delivery.connection_id for s in started] == [1, 1, 1, 2]  # 3 of 4 threads for one CRM
    assert share.next_to_start() is None  # every thread busy
    share.done(started[3])
    assert share.next_to_start() is None  # a thread is free, but connection 1 holds its share
    share.done(started[0])
    assert share.next_to_start() is slow[3]


def test_the_claim_leaves_room_for_the_others() -> None:
    share = FairShare(concurrency=4, capacity=8)
    assert share.held_cap == 6
    for _ in range(6):
        share.add(row(1))
    share.add(row(None))
    room = share.claim_room()
    assert room.full == [1]
    assert room.trim([(10, 1), (11, 2), (12, None), (13, 2)]) == [11, 12, 13]
    assert ClaimRoom(full=[], held={2: 5}, held_cap=6).trim([(1, 2), (2, 2), (3, 3)]) == [1, 3]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_connection_alone_and_fast_uses_every_thread() -> None:
    clock = Clock()
    share = FairShare(concurrency=4, capacity=8, clock=clock)
    rows = [row(1) for _ in range(8)]
    for item in rows:
        share.add(item)
    first = [share.next_to_start() for _ in range(4)]
    assert first[3] is None  # unproven: its share only, the reserve stays free
    clock.now += 0.02
    share.done(first[0])  # a fast attempt
    started = [share.next_to_start() for _ in range(3)]
    assert started[0] is not None and started[1] is not None and started[2] is None  # 4 threads now


def test_a_slow_attempt_or_another_connections_row_brings_the_reserve_back() -> None:
    clock = Clock()
    share = FairShare(concurrency=4, capacity=8, clock=clock)
    for _ in range(8):
        share.add(row(1))
    running = [share.next_to_start() for _ in range(3)]
    share.done(running.pop())  # fast: connection 1 is proven
    running += [share.next_to_start() for _ in range(2)]
    assert share.next_to_start() is None and sum(share.running.values()) == 4
    clock.now += 2  # its attempts have now run longer than SLOW_SECONDS
    share.done(running.pop())
    assert share.next_to_start() is None  # 3 running, one slow: back to its share
    other = row(2)
    share.add(other)
    assert share.next_to_start() is other  # the reserve thread goes to the other connection


def test_another_connections_ready_row_keeps_the_reserve_for_it() -> None:
    clock = Clock()
    share = FairShare(concurrency=4, capacity=8, clock=clock)
    for _ in range(6):
        share.add(row(1))
    share.done(share.next_to_start())  # proven fast
    share.add(row(1))
    other = row(2)
    started = [share.next_to_start() for _ in range(3)]
    share.add(other)
    assert [s.delivery.connection_id for s in started] == [1, 1, 1]
    assert share.next_to_start() is other  # not a fourth row of connection 1
