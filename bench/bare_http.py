"""The drain's baseline: plain ``requests`` doing a push's CRM call, in the worker's process shape.

``bench/delivery.py`` compares the worker's steady drain with what plain HTTP can do against
the same fake CRM from the same number of threads spread over the same number of processes as
``crm-bridge worker --concurrency N`` (``bridge.delivery.supervisor.split_concurrency``). The
shape matters: one process of 32 ``requests`` threads is bound by its GIL at about one core,
while the worker command runs two processes on two cores, so a one-process baseline measured
a different ceiling from the one the worker can reach, and one that moved with whatever else
held the second core at that moment (589 and 1,141/s a minute apart in docs/perf.md).

Each process is forked (as the supervisor forks its workers), keeps one session per thread
(as each pool thread keeps its client), and all start together on an event. The rate counts
from the first call's arrival at the CRM to the last, as ``drain_steady_per_s`` counts pushes,
so neither side's start-up is in it. Nothing is held back: no database, no bookkeeping, no
redaction, no niceness, so it is an honest ceiling for "a push is one HTTP call".
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class BareHttp:
    """One measurement: calls per second (first arrival to last) and the clients' CPU per call."""

    per_s: float
    cpu_ms_per_call: float


def _client(api: str, auth: tuple[str, str], threads: int, emails: list[str], go: Any, done: Any) -> None:
    """One baseline process: ``threads`` kept-alive sessions POST one create per email."""
    local = threading.local()

    def push(email: str) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        session.post(f"{api}/subscribers", json={"email": email, "status": "subscribed"}, auth=auth, timeout=30)

    go.wait()
    cpu = time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(push, emails))
    done.send(time.process_time() - cpu)
    done.close()


def measure(crm: Any, shape: list[int], count: int, label: str) -> BareHttp:
    """``count`` creates of new contacts (what a registration's push sends: the FluentCRM
    adapter creates first) from ``len(shape)`` processes of ``shape[i]`` threads, against
    ``crm`` (a ``FakeCrmProcess``); each process makes calls in proportion to its threads."""
    api = crm.settings["base_url"].rstrip("/") + "/wp-json/fluent-crm/v2"
    auth = (crm.settings["username"], crm.settings["app_password"])
    emails = [f"bare-{label}-{n}@example.com" for n in range(count)]
    shares, start = [], 0
    for index, threads in enumerate(shape):
        end = count if index == len(shape) - 1 else start + count * threads // sum(shape)
        shares.append(emails[start:end])
        start = end
    context = multiprocessing.get_context("fork")
    go = context.Event()
    pipes, processes = [], []
    for threads, share in zip(shape, shares, strict=True):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_client, args=(api, auth, threads, share, go, send), daemon=True)
        process.start()
        send.close()
        pipes.append(receive)
        processes.append(process)
    go.set()
    cpu = sum(pipe.recv() for pipe in pipes)
    for process in processes:
        process.join()
    seen = crm.arrivals()
    arrived = sorted(seen[email] for email in emails)
    return BareHttp((count - 1) / (arrived[-1] - arrived[0]), cpu * 1000 / count)
