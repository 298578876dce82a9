"""Issue 18 item 2, against real servers: a CRM that hangs holds only its share of a worker's
threads, so a healthy CRM's delivery completes meanwhile (nothing is timed: the hanging CRM
answers nothing until the test is over, long after the healthy delivery has to be done)."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

CONCURRENCY = 4
SHARE = 3  # all threads but a quarter (at least one): bridge.delivery.fair_share


def test_a_hanging_crm_leaves_threads_to_a_healthy_one(
    live_server: Any, auth_headers: dict[str, str], make_connection, receiver: Any, start_worker
) -> None:
    hanging: list[int] = []
    lock = threading.Lock()

    def hang(request: Any) -> tuple[int, dict[str, str], bytes]:
        with lock:
            hanging.append(1)
        receiver.release.wait(120)  # set when the test ends
        return 200, {"Content-Type": "application/json"}, b"{}"

    receiver.routes["/hang"] = hang
    api = live_server.url + "/api"

    def register(email: str) -> None:
        answer = requests.post(f"{api}/users", json={"email": email}, headers=auth_headers, timeout=30)
        assert answer.status_code == 201, answer.text

    def delivered(connection: str) -> int:
        url = f"{api}/deliveries?connection={connection}&status=succeeded"
        return int(requests.get(url, headers=auth_headers, timeout=30).json()["total"])

    make_connection("slow", "custom_webhook", url=receiver.url + "/hang", timeout=120)
    for number in range(2 * CONCURRENCY):  # more rows for the slow CRM than the worker holds
        register(f"early{number}@example.com")
    make_connection("healthy", "custom_webhook", url=receiver.url + "/ok")
    register("late@example.com")  # due after every slow row

    try:
        start_worker(concurrency=CONCURRENCY)
        deadline = time.monotonic() + 60  # far below the slow CRM's 120 s: it has answered nothing
        while delivered("healthy") < 1:
            assert time.monotonic() < deadline, "the healthy CRM's delivery waited behind the hanging one"
            receiver.release.wait(0.05)
        assert delivered("slow") == 0  # the slow CRM still holds its requests
        with lock:
            assert 1 <= len(hanging) <= SHARE  # its share of the threads, not all of them
    finally:
        receiver.release.set()
