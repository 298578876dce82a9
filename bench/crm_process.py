"""The fake FluentCRM of the end-to-end tests, served from a process of its own.

Benchmarks measure latency in their own Python process; serving the fake CRM there too made
every burst of pushes (JSON, HTTP parsing on the CRM's threads) delay the clients' clocks,
and registrations looked up to 200 ms slower than the server saw them. The child records when
each contact's first push arrived (``time.monotonic()``: one clock for every process on the
machine) and answers queries over a pipe.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _serve(delay: float, connection: Any, contacts: int = 0, tag: str = "") -> None:
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    sys.path.insert(0, str(ROOT))
    from fakecrm import FakeFluentCrm, connection_settings

    seen: dict[str, float] = {}
    scanned = 0
    with FakeFluentCrm(delay=delay) as fake:
        if tag:
            fake._create_tag(tag)
        for number in range(contacts):  # contacts the CRM already has (bench/batch.py imports them)
            fake.seed_contact(f"contact{number}@example.com", first_name=f"C{number}", tag_slugs=[tag] if tag else [])
        connection.send(connection_settings(fake))
        while True:
            command = connection.recv()
            if command == "stop":
                return
            with fake.lock:
                for request in fake.requests[scanned:]:
                    if request.method == "POST" and request.path.endswith("/subscribers"):
                        seen.setdefault(str(request.json.get("email")), request.at)
                scanned = len(fake.requests)
            connection.send(len(seen) if command == "count" else dict(seen))


class FakeCrmProcess:
    """``with FakeCrmProcess(delay) as crm:`` ``crm.settings`` (connection settings),
    ``crm.count()`` (contacts pushed so far), ``crm.arrivals()`` (email → first push time).
    ``contacts`` seeds that many contacts first, with ``tag`` when given."""

    def __init__(self, delay: float, *, contacts: int = 0, tag: str = "") -> None:
        self.delay = delay
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(delay, child, contacts, tag), daemon=True
        )
        self.settings: dict[str, Any] = {}

    def __enter__(self) -> FakeCrmProcess:
        self._process.start()
        self.settings = self._pipe.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def count(self) -> int:
        self._pipe.send("count")
        return int(self._pipe.recv())

    def arrivals(self) -> dict[str, float]:
        self._pipe.send("arrivals")
        return dict(self._pipe.recv())
