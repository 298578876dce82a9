"""The delivery worker: claims due outbox rows, runs them (``bridge.delivery.attempts``), records every attempt.

Two ways to run it (CONTRACT.md §1; ``bridge.delivery.inline_worker`` runs it inline,
``bridge.delivery.supervisor`` as the command's processes):

- ``BRIDGE_WORKER=inline``: a daemon thread inside the web process (the embedded default). It
  starts with ``crm-bridge serve`` or on the first request, never for other CLI commands and never
  in tests unless a test starts one.
- ``crm-bridge worker [--concurrency N] [--processes P] [--once]``: separate processes; any number
  of them, on any machines, coordinate only through row leases (``bridge.delivery.leases.claim_due``).

An idle worker picks a new row up at once when it was committed in the same process (a session
hook, ``bridge.delivery.wakeup``) and within ``BRIDGE_WORKER_POLL_SECONDS`` otherwise. A worker that
dies leaves its rows ``in_flight`` until their lease expires; then another worker claims them
again (at-least-once, with the delivery id as ``Idempotency-Key`` so receivers can dedupe).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from bridge.delivery import attempts, heartbeats, leases, outcomes, wakeup
from bridge.delivery.fair_share import FairShare
from bridge.delivery.leases import ClaimedDelivery
from bridge.delivery.outcomes import AttemptRecord, Finished
from bridge.extensions import db
from bridge.outbound.client import OutboundPolicy
from bridge.outbound.kept_clients import OutboundClients

log = logging.getLogger("bridge.delivery.worker")

HEARTBEAT_SECONDS = 5.0

# Finished attempts wait at most this long to be recorded together: at a trickle of traffic
# every delivery used to cost its own write transaction (on SQLite, its own turn at the write
# lock that registrations queue on). The CRM has the push already; only the row's status waits.
RECORD_DELAY_SECONDS = 0.05

# Rows a worker holds per pool thread (running or queued for the pool). Two made a busy
# worker's turns record and claim about 10 rows each with 16 threads; three, about 14
# (`bench/drain_cpu.py`: write transactions per push 0.10 → 0.07).
HELD_PER_THREAD = 3


# -- the worker -------------------------------------------------------------------------------


def new_worker_id(inline: bool = False) -> str:
    kind = "inline" if inline else "worker"
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{secrets.token_hex(3)}"


class DeliveryWorker:
    """One dispatcher loop that claims and records rows, and a pool of ``concurrency`` threads
    running them.

    The pool threads only talk to CRMs: a handler's database writes are deferred
    (``JobContext.after_success``) and its attempt handed back to the dispatcher, which records
    everything that finished since its last turn and claims new rows in ONE transaction. So a
    busy worker makes one write transaction per turn, not two per delivery, and on SQLite the
    pool threads never queue for the write lock. A handler that writes in its own session
    (the queued inbound webhook) is recorded on its own thread, in that same transaction, as
    before. Each pool thread keeps one outbound HTTP client (a ``requests`` session with
    keep-alive) per connection, reset for every delivery.

    Claimed rows wait in ``bridge.delivery.fair_share`` rather than in the pool's FIFO queue:
    each connection gets at most its share of the threads and of the rows held, so a CRM that
    hangs leaves threads to the others. A pool thread runs rows until none may start.
    """

    def __init__(
        self,
        app: Flask,
        *,
        concurrency: int = 1,
        inline: bool = False,
        worker_id: str | None = None,
    ) -> None:
        self.app = app
        self.concurrency = max(1, int(concurrency))
        # Rows held at once: the running ones plus twice as many queued for the pool, so a
        # thread that finishes starts its next row at once instead of waiting for the
        # dispatcher's next turn (a turn records and claims in one transaction, and takes
        # milliseconds). A turn comes when a quarter of them is free (``_claim_limit``), so the
        # deeper queue also makes each turn's batch larger: fewer write transactions per push
        # (on SQLite, fewer turns at the writer lock registrations wait on) with a batch still
        # queued behind every running row. docs/perf.md, "The drain's baseline".
        self.capacity = self.concurrency * HELD_PER_THREAD if self.concurrency > 1 else 1
        self.inline = inline
        self.worker_id = worker_id or new_worker_id(inline)
        self.poll_seconds = float(app.config.get("BRIDGE_WORKER_POLL_SECONDS", 0.1))
        # Set while the loop sleeps with nothing in hand (until a wake-up or the next poll):
        # what tests wait for to know that only a wake-up can start the next row.
        self.waiting = threading.Event()
        self.lease_seconds = float(app.config.get("BRIDGE_LEASE_SECONDS", 60))
        self.heartbeat_seconds = min(HEARTBEAT_SECONDS, self.lease_seconds / 3)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.processed = 0
        self._active: set[int] = set()
        self._finished: list[tuple[Finished, str]] = []
        self._finished_since = 0.0  # when the oldest unrecorded attempt finished
        self._claim_soon = threading.Event()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._last_beat = 0.0
        self._thread: threading.Thread | None = None
        self._clients = OutboundClients(OutboundPolicy.from_config(app.config))
        self._fair = FairShare(self.concurrency, self.capacity)
        wakeup.install_session_hooks()
        wakeup.register(self)

    def rows_arrived(self) -> None:
        """New or re-queued rows were committed in this process (or a row recorded outside
        the dispatcher may have unblocked its lane): claim at once."""
        self._claim_soon.set()
        self.wake.set()

    # -- running --

    def run(self, *, once: bool = False) -> int:
        """Deliver until stopped (or, with ``once``, until nothing is claimable and nothing is
        running). Returns how many deliveries this worker finished."""
        log.info("delivery worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="delivery") as pool:
                claim_now, last_claim = True, 0.0
                while not self.stopping.is_set():
                    self.wake.clear()
                    self._heartbeat_if_due()
                    with self._lock:
                        processed_before = self.processed
                    now = time.monotonic()
                    if self._claim_soon.is_set():
                        self._claim_soon.clear()
                        claim_now = True
                    finished = self._take_finished(now, force=once)
                    # Claim when rows may be waiting: told so, a poll is due, the last claim
                    # filled its batch, or a recorded row may have unblocked its lane.
                    claim = claim_now or bool(finished) or now - last_claim >= self.poll_seconds
                    limit = self._claim_limit(len(finished)) if claim else 0
                    claimed = self._record_and_claim(finished, limit=limit)
                    if claim:
                        # Claim again at once when the batch was full, or when a connection's
                        # share filled up and left the rest of the batch to the others.
                        more = len(claimed) == limit or self._share_filled(claimed)
                        claim_now, last_claim = bool(limit) and more, now
                    for item in self._ready_to_start(claimed):
                        pool.submit(self._run_ready, item)
                    if claimed or finished:
                        continue
                    with self._lock:
                        # Idle only if nothing finished since before the claim: a row that a
                        # pool thread recorded meanwhile may have unblocked the next in its lane.
                        idle = not self._active and self.processed == processed_before
                        record_in = (
                            self._finished_since + RECORD_DELAY_SECONDS - now if self._finished else float("inf")
                        )
                    if once and idle:
                        break
                    self.waiting.set()
                    self.wake.wait(max(0.0, min(self.poll_seconds - (now - last_claim), record_in)))
                    self.waiting.clear()
            # The pool has let its running deliveries finish: record them.
            self._record_and_claim(self._take_finished(time.monotonic(), force=True), limit=0)
        finally:
            self._clients.close_all()
        self._heartbeat(force=True)
        log.info("delivery worker %s stopped after %d deliveries", self.worker_id, self.processed)
        return self.processed

    def start(self) -> threading.Thread:
        """Run in a daemon thread (the inline worker, and tests)."""
        self._thread = threading.Thread(target=self.run, name=f"delivery-worker-{self.worker_id}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 30) -> None:
        """Stop claiming, let running deliveries finish, and wait for the loop to end."""
        self.stopping.set()
        self.wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait_until_processed(self, count: int, timeout: float = 10.0) -> bool:
        """Block until this worker has finished ``count`` deliveries (for tests and benches)."""
        with self._progress:
            return self._progress.wait_for(lambda: self.processed >= count, timeout)

    # -- the dispatcher's turn --

    def _take_finished(self, now: float, *, force: bool = False) -> list[tuple[Finished, str]]:
        """The attempts waiting to be recorded, once there are enough of them (a quarter of
        the pool) or the oldest has waited ``RECORD_DELAY_SECONDS``; else none yet."""
        with self._lock:
            waiting = len(self._finished)
            if not waiting:
                return []
            due = (
                force
                or waiting >= max(1, self.capacity // 4)
                or now - self._finished_since >= RECORD_DELAY_SECONDS
                or self.stopping.is_set()
            )
            if not due:
                return []
            finished, self._finished = self._finished, []
        return finished

    def _claim_limit(self, taken: int) -> int:
        """How many rows to claim now: free slots (running rows and rows waiting in the pool's
        queue count; finished ones do not, recorded yet or not)."""
        with self._lock:
            running = len(self._active) - taken - len(self._finished)
        free = self.capacity - running
        # Claim in batches: a busy pool waits until a quarter of its slots are free rather
        # than claiming one row per finished delivery.
        if self.stopping.is_set() or free <= 0 or (running and free < max(1, self.capacity // 4)):
            return 0
        return free

    def _record_and_claim(self, finished: list[tuple[Finished, str]], *, limit: int) -> list[ClaimedDelivery]:
        """Record what finished and claim up to ``limit`` more, in one transaction; on a
        failure, record the finished rows one by one so one bad deferred write cannot lose the
        others."""
        if not finished and not limit:
            return []
        claimed: list[ClaimedDelivery] = []
        try:
            with self.app.app_context():
                try:
                    with self._lock:
                        room = self._fair.claim_room()
                    recorded, claimed = outcomes.record_and_claim(
                        self.worker_id,
                        [item for item, _ in finished],
                        limit=limit,
                        lease_seconds=self.lease_seconds,
                        room=room,
                    )
                finally:
                    db.session.remove()
            for (item, summary), outcome in zip(finished, recorded, strict=True):
                self._log(summary, item.attempt, outcome)
        except Exception:
            log.exception("delivery worker %s could not record or claim rows; recording one by one", self.worker_id)
            for item, summary in finished:
                self._record_alone(item, summary)
            if not finished:
                self.stopping.wait(max(self.poll_seconds, 1.0))
        with self._lock:
            for item, _ in finished:
                self._active.discard(item.delivery.id)
            self._active.update(c.delivery.id for c in claimed)
            self.processed += len(finished)
            self._progress.notify_all()
        return claimed

    def _record_alone(self, item: Finished, summary: str) -> None:
        """Record one attempt in its own transaction. If its deferred writes fail, the CRM
        call happened but its result could not be stored: recorded as a retryable
        ``internal_error`` (as a handler that raised would be)."""
        try:
            with self.app.app_context():
                try:
                    try:
                        outcome = outcomes.record_outcomes(self.worker_id, [item])[0]
                    except Exception as exc:
                        log.exception("delivery %s: storing its result failed", item.delivery.id)
                        item = Finished(item.delivery, attempts.internal_error(item.attempt, exc, []))
                        outcome = outcomes.record_outcomes(self.worker_id, [item])[0]
                finally:
                    db.session.remove()
            self._log(summary, item.attempt, outcome)
        except Exception:  # the database is down: the lease expires and the row is tried again
            log.exception("delivery %s: could not record its attempt", item.delivery.id)

    # -- fair shares --

    def _ready_to_start(self, claimed: list[ClaimedDelivery]) -> list[ClaimedDelivery]:
        """Hand newly claimed rows to the fair share; the rows that may start on free threads."""
        starting = []
        with self._lock:
            for item in claimed:
                self._fair.add(item)
            while (item := self._fair.next_to_start()) is not None:
                starting.append(item)
        return starting

    def _share_filled(self, claimed: list[ClaimedDelivery]) -> bool:
        with self._lock:
            return any(self._fair.held[c.delivery.connection_id] >= self._fair.held_cap for c in claimed)

    # -- the pool threads --

    def _run_ready(self, claimed: ClaimedDelivery) -> None:
        """Run ``claimed``, then every ready row that may start on this thread, until none may."""
        item: ClaimedDelivery | None = claimed
        while item is not None:
            self._run_one(item)
            with self._lock:
                item = self._fair.next_to_start()

    def _run_one(self, claimed: ClaimedDelivery) -> None:
        delivery_id = claimed.delivery.id
        handed_over = False
        try:
            with self.app.app_context():
                try:
                    handed_over = self.attempt(claimed)
                finally:
                    db.session.remove()
        except Exception:  # a bug in the worker itself: never let it kill the pool thread
            log.exception("delivery %s: worker error", delivery_id)
        with self._lock:
            self._fair.done(claimed)
        if not handed_over:  # recorded here: its lane may be free now, so claim again
            with self._lock:
                self._active.discard(delivery_id)
                self.processed += 1
                self._progress.notify_all()
            self._claim_soon.set()
        self.wake.set()  # a slot is free, or a result is waiting to be recorded

    def attempt(self, claimed: ClaimedDelivery) -> bool:
        """Run one claimed row's handler (inside an app context). Returns True when the
        attempt was handed to the dispatcher to record, False when it was recorded here
        (the handler wrote in its own session: recorded in that same transaction)."""
        finished, in_session = attempts.run(claimed, self._clients, self.worker_id)
        summary = (
            f"delivery {claimed.delivery.id} {claimed.delivery.kind} to "
            f"{claimed.delivery.connection.name if claimed.delivery.connection else '-'} "
            f"attempt {claimed.delivery.attempts}"
        )
        if not in_session:
            with self._lock:
                if not self._finished:
                    self._finished_since = time.monotonic()
                self._finished.append((finished, summary))
            return True
        outcome = outcomes.record_outcome(finished.delivery, self.worker_id, finished.attempt)
        self._log(summary, finished.attempt, outcome)
        return False

    def deliver(self, claimed: ClaimedDelivery) -> outcomes.Outcome:
        """Run one claimed row's handler and record the attempt at once (inside an app
        context): the unbatched path, for callers outside the worker loop."""
        finished, in_session = attempts.run(claimed, self._clients, self.worker_id)
        if in_session:
            return outcomes.record_outcome(finished.delivery, self.worker_id, finished.attempt)
        return outcomes.record_outcomes(self.worker_id, [finished])[0]

    @staticmethod
    def _log(summary: str, record: AttemptRecord, outcome: outcomes.Outcome) -> None:
        took = f"{record.duration_ms:.0f} ms"
        if outcome.status == "succeeded":
            log.info("%s: succeeded in %s", summary, took)
        elif outcome.status == "failed":
            log.warning(
                "%s: failed (%s: %s) in %s; next try at %s",
                summary,
                record.error_class,
                record.error_message,
                took,
                outcome.next_attempt_at.isoformat(timespec="seconds") + "Z" if outcome.next_attempt_at else "-",
            )
        elif outcome.status == "dead":
            log.error("%s: dead (%s: %s) in %s", summary, record.error_class, record.error_message, took)
        else:
            log.warning("%s: lease lost to another worker; its result was recorded only", summary)

    def _heartbeat_if_due(self) -> None:
        if time.monotonic() - self._last_beat >= self.heartbeat_seconds:
            self._heartbeat()

    def _heartbeat(self, force: bool = False) -> None:
        """Record that this worker is alive, and extend the leases of rows it is running."""
        self._last_beat = time.monotonic()
        with self._lock:
            active = list(self._active)
        try:
            with self.app.app_context():
                heartbeats.beat(self.worker_id, inline=self.inline)
                db.session.commit()
                leases.extend_leases(self.worker_id, active, self.lease_seconds)
                db.session.remove()
        except Exception:
            if not force:
                log.exception("delivery worker %s: heartbeat failed", self.worker_id)
