"""The inline delivery worker: a thread inside the web process (``BRIDGE_WORKER=inline``, the
embedded default). The worker itself (claiming, running, recording) is
``bridge.delivery.worker.DeliveryWorker``; the ``crm-bridge worker`` command's processes are
``bridge.delivery.supervisor``.
"""

from __future__ import annotations

import atexit
import threading

from flask import Flask

from bridge.delivery.wakeup import install_session_hooks
from bridge.delivery.worker import DeliveryWorker

EXTENSION_KEY = "bridge_worker"


def start_inline(app: Flask) -> DeliveryWorker:
    """Start the in-process worker thread once per app (``crm-bridge serve``, first request)."""
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
    ``crm-bridge init`` never start one)."""
    install_session_hooks()
    if str(app.config.get("BRIDGE_WORKER", "off")).lower() != "inline":
        return

    @app.before_request
    def start_inline_worker() -> None:
        if EXTENSION_KEY not in app.extensions:
            start_inline(app)
