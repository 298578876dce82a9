"""``crm-bridge worker``: how many worker processes, and the supervisor that keeps them running.

One ``DeliveryWorker`` process tops out near one CPU core (Python's GIL serialises the HTTP
client's work), while the row leases already let any number of workers share the queue. So the
command spreads its ``--concurrency`` over the usable cores: one worker in this process when
one is enough, otherwise a supervisor forks one worker per share and does nothing else, the
way gunicorn's arbiter does. A supervisor that runs no threads of its own can fork a
replacement safely when a worker dies (an out-of-memory kill, a crash); the command does not
carry on at half its capacity without saying so. Workers stop by themselves when the
supervisor dies, even by SIGKILL: each holds the read end of a pipe that only the supervisor
writes to and sees end-of-file. No orphan keeps delivering.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from flask import Flask

from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db

log = logging.getLogger("bridge.delivery.worker")

# ``--concurrency`` below this many deliveries per process stays in one process: a handful of
# threads waiting on CRMs do not fill a core, and every process costs memory and a connection.
MIN_THREADS_PER_PROCESS = 8

# A worker that dies within this many seconds of its start is restarted after a growing pause
# (1, 2, 4 … up to RESTART_PAUSE_MAX seconds), so a worker that cannot start does not spin.
QUICK_DEATH_SECONDS = 10.0
RESTART_PAUSE_MAX = 30.0

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, so a container's limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_concurrency(concurrency: int, processes: int | None = None, *, cores: int | None = None) -> list[int]:
    """Threads for each worker process so that ``concurrency`` deliveries are in flight in all.

    By default (``processes`` None) over the usable cores, at least ``MIN_THREADS_PER_PROCESS``
    per process: ``--concurrency 32`` on two cores is two processes of 16 threads,
    ``--concurrency 4`` stays one process.
    """
    if processes is None:
        processes = max(1, min(cores or usable_cores(), concurrency // MIN_THREADS_PER_PROCESS))
    if processes > concurrency:
        raise ValueError(f"{processes} processes need a concurrency of at least {processes} (one delivery each)")
    share, extra = divmod(concurrency, processes)
    return [share + 1 if n < extra else share for n in range(processes)]


def lower_priority(increment: int) -> int:
    """Lower this process's CPU priority by ``increment`` (``BRIDGE_WORKER_NICE``, default 10) and
    return the new niceness. Where web workers and delivery workers share cores, a burst of
    pushes then waits for the web requests instead of delaying them; with idle cores the
    worker runs as fast as before (niceness only orders runnable processes)."""
    return os.nice(max(0, increment))


def run_worker_command(app: Flask, *, threads: list[int], once: bool = False) -> list[dict[str, Any]]:
    """Run one worker per entry of ``threads`` (that many pool threads each) until SIGTERM/SIGINT
    or, with ``once``, until each is idle. Returns each worker's id and how many deliveries it
    finished; a worker process that died while stopping, or before it was idle with ``once``,
    has ``exit_code`` (and no id). One that died while running was replaced, and only logged."""
    lower_priority(int(app.config.get("BRIDGE_WORKER_NICE") or 0))  # forked workers inherit it
    if len(threads) == 1:
        return [_run_here(app, threads[0], once)]
    return Supervisor(app, threads, once).run()


def _run_here(app: Flask, concurrency: int, once: bool) -> dict[str, Any]:
    worker = DeliveryWorker(app, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: worker.stop(timeout=0))
    signal.signal(signal.SIGINT, lambda _signum, _frame: worker.stop(timeout=0))
    return {"worker": worker.worker_id, "processed": worker.run(once=once)}


@dataclass
class _Slot:
    """One share of the concurrency and the process currently serving it."""

    threads: int
    process: Any = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    done: bool = False


@dataclass
class Supervisor:
    """Forks the workers, passes SIGTERM/SIGINT on, restarts a worker that died, collects results."""

    app: Flask
    threads: list[int]
    once: bool
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> list[dict[str, Any]]:
        self._context = multiprocessing.get_context("fork")
        self._results: Any = self._context.SimpleQueue()
        self._alive = os.pipe()  # (read end for the workers, write end only this process keeps)
        with self.app.app_context():
            db.engine.dispose()  # no pooled database connection may be shared across the fork
        self._slots = [_Slot(threads) for threads in self.threads]
        signal.signal(signal.SIGTERM, lambda _signum, _frame: self.stop())
        signal.signal(signal.SIGINT, lambda _signum, _frame: self.stop())
        finished: list[dict[str, Any]] = []
        try:
            for number, slot in enumerate(self._slots, start=1):
                if not slot.done:
                    self._start(slot, number)
            while not all(slot.done for slot in self._slots):
                self._wait()
                while not self._results.empty():
                    finished.append(self._results.get())
                for number, slot in enumerate(self._slots, start=1):
                    finished.extend(self._reap(slot, number))
        finally:
            for fd in self._alive:
                os.close(fd)
        return finished

    def stop(self) -> None:
        """Ask every worker to finish its running deliveries and exit; restart none."""
        self.stopping.set()
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                os.kill(slot.process.pid, signal.SIGTERM)
            elif slot.process is None or slot.restart_at is not None:
                slot.done = True  # not running: nothing to stop

    def _start(self, slot: _Slot, number: int) -> None:
        args = (self.app, slot.threads, self.once, self._results, self._alive)
        slot.process = self._context.Process(target=_child_worker, args=args, name=f"bridge-worker-{number}")
        # A stop signal arriving during the fork waits until the worker can take it: here until
        # the process has started (so ``stop`` reaches it), there until its own handler is set.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            slot.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        slot.started, slot.restart_at = time.monotonic(), None

    def _wait(self) -> None:
        """Until a worker exits, a restart is due, or (with no worker running) a stop."""
        live = [slot for slot in self._slots if not slot.done]
        restarts = [slot.restart_at for slot in live if slot.restart_at is not None]
        timeout = max(0.0, min(restarts) - time.monotonic()) if restarts else None
        running = [slot.process.sentinel for slot in live if slot.restart_at is None]
        if running:
            wait(running, timeout)  # a signal's handler runs meanwhile; its SIGTERMs end the wait
        else:
            self.stopping.wait(timeout)

    def _reap(self, slot: _Slot, number: int) -> list[dict[str, Any]]:
        """Settle one slot after a wait: restart it when due, notice its worker's exit."""
        ending = self.once or self.stopping.is_set()
        if slot.done:
            return []
        if slot.restart_at is not None:
            if ending:
                slot.done = True
            elif time.monotonic() >= slot.restart_at:
                self._start(slot, number)
            return []
        if slot.process.is_alive():
            return []
        code, pid = slot.process.exitcode, slot.process.pid
        if ending:  # a worker that did not stop cleanly fails the command (``--once``: work undone)
            slot.done = True
            if code == 0:
                return []
            log.error("worker process %d %s", pid, _describe(code))
            return [{"worker": None, "processed": 0, "exit_code": code}]
        now = time.monotonic()
        slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < QUICK_DEATH_SECONDS else 0
        pause = min(RESTART_PAUSE_MAX, 2.0 ** (slot.quick_deaths - 1)) if slot.quick_deaths else 0.0
        log.error("worker process %d %s; starting another in %.0f s", pid, _describe(code), pause)
        slot.restart_at = now + pause
        return []


def _describe(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        return f"was killed by signal {-exit_code} ({signal.Signals(-exit_code).name})"
    return f"exited with code {exit_code}"


def _child_worker(app: Flask, concurrency: int, once: bool, results: Any, supervisor_alive: tuple[int, int]) -> None:
    reader, writer = supervisor_alive
    os.close(writer)  # the supervisor's copy is then the only one: its death is end-of-file here
    worker = DeliveryWorker(app, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: worker.stop(timeout=0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor passes Ctrl-C on as SIGTERM
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked since the fork

    def stop_when_supervisor_dies() -> None:
        while os.read(reader, 1):
            pass
        worker.stop(timeout=0)  # finish running deliveries, then exit as on SIGTERM

    threading.Thread(target=stop_when_supervisor_dies, name="supervisor-watch", daemon=True).start()
    results.put({"worker": worker.worker_id, "processed": worker.run(once=once)})
