"""How delivery workers run: as a thread inside the web process (``BRIDGE_WORKER=inline``, the
embedded default) or as the ``crm-bridge worker`` command, in this process and forked ones.
The worker itself (claiming, running, recording) is ``bridge.worker.DeliveryWorker``.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import threading
from typing import Any

from flask import Flask

from bridge.extensions import db
from bridge.wakeup import install_session_hooks
from bridge.worker import DeliveryWorker

EXTENSION_KEY = "bridge_worker"

# ``--concurrency`` below this many deliveries per process stays in one process: a handful of
# threads waiting on CRMs do not fill a core, and every process costs memory and a connection.
MIN_THREADS_PER_PROCESS = 8


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, so a container's limit counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_concurrency(concurrency: int, processes: int | None = None, *, cores: int | None = None) -> list[int]:
    """Threads for each worker process so that ``concurrency`` deliveries are in flight in all.

    One process tops out near one CPU core (Python's GIL serialises the HTTP client's work), so
    by default (``processes`` None) the command spreads its deliveries over the usable cores,
    at least ``MIN_THREADS_PER_PROCESS`` per process: ``--concurrency 32`` on two cores is two
    processes of 16 threads, ``--concurrency 4`` stays one process. The row leases already let
    any number of workers share the queue.
    """
    if processes is None:
        processes = max(1, min(cores or usable_cores(), concurrency // MIN_THREADS_PER_PROCESS))
    if processes > concurrency:
        raise ValueError(f"{processes} processes need a concurrency of at least {processes} (one delivery each)")
    share, extra = divmod(concurrency, processes)
    return [share + 1 if n < extra else share for n in range(processes)]


def run_worker_command(app: Flask, *, threads: list[int], once: bool = False) -> list[dict[str, Any]]:
    """Run one worker per entry of ``threads`` (that many pool threads each): the first in this
    process, the others forked, until SIGTERM/SIGINT (passed on to the children) or, with
    ``once``, until each is idle. Children stop by themselves if this process dies (even by
    SIGKILL): a pipe whose only writer is this process reaches end-of-file. Returns each
    worker's id and how many deliveries it finished.
    """
    context = multiprocessing.get_context("fork")
    results: Any = context.SimpleQueue()
    children: list[Any] = []
    parent_alive, parent_alive_writer = os.pipe()
    if len(threads) > 1:
        with app.app_context():
            db.engine.dispose()  # no pooled database connection may be shared across the fork
        for n, count in enumerate(threads[1:], start=1):
            args = (app, count, once, results, parent_alive, parent_alive_writer)
            children.append(context.Process(target=_child_worker, args=args, name=f"bridge-worker-{n}"))
            children[-1].start()
    os.close(parent_alive)
    worker = DeliveryWorker(app, concurrency=threads[0])

    def stop(_signum: int, _frame: Any) -> None:
        worker.stop(timeout=0)
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        finished = [{"worker": worker.worker_id, "processed": worker.run(once=once)}]
        for child in children:
            child.join()
            if not results.empty():
                finished.append(results.get())
    finally:
        os.close(parent_alive_writer)
    return finished


def _child_worker(app: Flask, concurrency: int, once: bool, results: Any, parent_alive: int, writer: int) -> None:
    os.close(writer)  # the parent's copy is then the only one: its death is end-of-file here
    worker = DeliveryWorker(app, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: worker.stop(timeout=0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes Ctrl-C on as SIGTERM

    def stop_when_parent_dies() -> None:
        while os.read(parent_alive, 1):
            pass
        worker.stop(timeout=0)  # finish running deliveries, then exit like on SIGTERM

    threading.Thread(target=stop_when_parent_dies, name="parent-watch", daemon=True).start()
    results.put({"worker": worker.worker_id, "processed": worker.run(once=once)})


# -- inline worker ----------------------------------------------------------------------------


def start_inline(app: Flask) -> DeliveryWorker:
    """Start the in-process worker thread once per app (``bridge serve``, first request)."""
    with _start_lock:
        worker = app.extensions.get(EXTENSION_KEY)
        if worker is None:
            concurrency = int(app.config.get("BRIDGE_WORKER_CONCURRENCY", 4))
            worker = DeliveryWorker(app, concurrency=concurrency, inline=True)
            app.extensions[EXTENSION_KEY] = worker
            worker.start()
            atexit.register(worker.stop, 5)
        return worker


_start_lock = threading.Lock()


def init_app(app: Flask) -> None:
    """Wake-up hooks always; with ``BRIDGE_WORKER=inline``, start the worker thread on the
    first request (so gunicorn's workers each get one after forking, and CLI commands such as
    ``bridge init`` never start one)."""
    install_session_hooks()
    if str(app.config.get("BRIDGE_WORKER", "off")).lower() != "inline":
        return

    @app.before_request
    def start_inline_worker() -> None:
        if EXTENSION_KEY not in app.extensions:
            start_inline(app)
