"""How delivery workers run: as a thread inside the web process (``BRIDGE_WORKER=inline``, the
embedded default) or as forked processes of ``crm-bridge worker --processes P``. The worker
itself (claiming, running, recording) is ``bridge.worker.DeliveryWorker``.
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


def run_worker_processes(app: Flask, *, concurrency: int, processes: int, once: bool = False) -> list[dict[str, Any]]:
    """Run ``processes`` workers of ``concurrency`` threads each: this process and forked
    children, until SIGTERM/SIGINT (passed on to the children) or, with ``once``, until each is
    idle. One process tops out where Python's GIL does (about one core's worth of HTTP and
    bookkeeping); the row leases already let any number of workers share a queue, so more
    cores mean more processes. Returns each worker's id and how many deliveries it finished.
    """
    context = multiprocessing.get_context("fork")
    results: Any = context.SimpleQueue()
    with app.app_context():
        db.engine.dispose()  # no pooled database connection may be shared across the fork
    children = [
        context.Process(target=_child_worker, args=(app, concurrency, once, results), name=f"bridge-worker-{n}")
        for n in range(1, processes)
    ]
    for child in children:
        child.start()
    worker = DeliveryWorker(app, concurrency=concurrency)

    def stop(_signum: int, _frame: Any) -> None:
        worker.stop(timeout=0)
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    finished = [{"worker": worker.worker_id, "processed": worker.run(once=once)}]
    for child in children:
        child.join()
        if not results.empty():
            finished.append(results.get())
    return finished


def _child_worker(app: Flask, concurrency: int, once: bool, results: Any) -> None:
    worker = DeliveryWorker(app, concurrency=concurrency)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: worker.stop(timeout=0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes Ctrl-C on as SIGTERM
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
