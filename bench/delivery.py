"""Delivery benchmark: registrations through the API while workers push them to a fake CRM.

    .venv/bin/python bench/delivery.py [--database URL] [--count 2000] [--rate 100]
                                       [--concurrency 1 --concurrency 32] [--crm-delay 0.01]

For each worker concurrency: a fresh database, the web app under gunicorn (2 workers, no
inline worker), one ``bridge worker --concurrency N`` process, and a fake FluentCRM on loopback
that answers after ``--crm-delay`` seconds. Phase 1 posts ``--count`` registrations at
``--rate`` per second and measures each registration's latency and the time until the CRM
receives its push (end to end). Phase 2 stops the worker, queues ``--count`` more, starts it
again and measures the drain rate. Prints one line per concurrency:

    delivery backend=sqlite concurrency=1 reg_p99_ms=… e2e_p50_ms=… e2e_p99_ms=… drain_per_s=…
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(E2E))
sys.path.insert(0, str(ROOT))

from fakecrm import FakeFluentCrm, connection_settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def prepare(env: dict[str, str], fake: FakeFluentCrm) -> str:
    """Fresh schema, a connection to the fake CRM and an API token; returns the token."""
    os.environ.update(env)
    from bridge import create_app
    from bridge.api.auth import create_token
    from bridge.connections import create_connection
    from bridge.extensions import db
    from bridge.users import ensure_default_roles

    app = create_app()
    with app.app_context():
        db.drop_all()
        db.create_all()
        ensure_default_roles()
        create_connection("fluent", "fluentcrm", connection_settings(fake))
        _, token = create_token("bench")
        db.session.commit()
        db.engine.dispose()
    return token


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_worker(env: dict[str, str], concurrency: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), "bridge", "worker"]
    return subprocess.Popen(
        [*command, "--concurrency", str(concurrency)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def register_all(base: str, token: str, emails: list[str], rate: float) -> dict[str, tuple[float, float]]:
    """POST each registration at ``rate`` per second; returns email → (sent_at, latency)."""
    results: dict[str, tuple[float, float]] = {}
    local = threading.local()
    start = time.monotonic()

    def post(index: int, email: str) -> None:
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        sent = time.monotonic()
        response = session.post(
            f"{base}/api/users", json={"email": email}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        response.raise_for_status()
        results[email] = (sent, time.monotonic() - sent)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, range(len(emails)), emails))
    return results


class Arrivals:
    """Email → first time the CRM received its push, kept up to date incrementally.

    ``FakeFluentCrm.wait_for`` re-checks its predicate on every request; rescanning every
    recorded request each time made the bench process (which also serves the fake CRM) spend
    O(N²) time in its own bookkeeping and slowed the CRM it was measuring.
    """

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._scanned = 0

    def update(self, fake: FakeFluentCrm) -> dict[str, float]:
        """Call with ``fake.lock`` held (``wait_for`` predicates are)."""
        for request in fake.requests[self._scanned :]:
            if request.method == "POST" and request.path.endswith("/subscribers"):
                self.seen.setdefault(str(request.json.get("email")), request.at)
        self._scanned = len(fake.requests)
        return self.seen


def run(database: str | None, count: int, rate: float, concurrency: int, crm_delay: float) -> str:
    workdir = tempfile.mkdtemp(prefix="bench-delivery-")
    url = database or f"sqlite:///{workdir}/bridge.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BRIDGE_INSTANCE_PATH": workdir,
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
        "BRIDGE_WORKER": "off",
    }
    with FakeFluentCrm(delay=crm_delay) as fake:
        token = prepare(env, fake)
        port = free_port()
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "--threads",
                "8",
                "-b",
                f"127.0.0.1:{port}",
                "app:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/healthz")
            worker = start_worker(env, concurrency)
            emails = [f"reg{n}@example.com" for n in range(count)]
            sent = register_all(base, token, emails, rate)
            arrivals = Arrivals()
            fake.wait_for(lambda f: len(arrivals.update(f)) >= count, timeout=600)
            seen = dict(arrivals.seen)
            e2e = [(seen[e] - sent[e][0]) * 1000 for e in emails if e in seen]
            registration_ms = [latency * 1000 for _, latency in sent.values()]
            stop(worker)

            drain_emails = [f"drain{n}@example.com" for n in range(count)]
            register_all(base, token, drain_emails, rate=10_000)
            started = time.monotonic()
            worker = start_worker(env, concurrency)
            fake.wait_for(lambda f: len(arrivals.update(f)) >= 2 * count, timeout=900)
            drain = count / (time.monotonic() - started)
            stop(worker)
        finally:
            stop(web)
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    return (
        f"delivery backend={backend} concurrency={concurrency} reg_p99_ms={percentile(registration_ms, 0.99):.1f} "
        f"e2e_p50_ms={statistics.median(e2e):.0f} e2e_p99_ms={percentile(e2e, 0.99):.0f} drain_per_s={drain:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file)")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--crm-delay", type=float, default=0.01)
    args = parser.parse_args()
    for concurrency in args.concurrency or [1, 32]:
        print(run(args.database, args.count, args.rate, concurrency, args.crm_delay), flush=True)


if __name__ == "__main__":
    main()
