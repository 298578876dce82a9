"""Inbound storm: many ``async=true`` updates accepted fast, then all processed exactly once.

    .venv/bin/python bench/storm.py [--database URL] [--updates 10000] [--contacts 1000]
                                    [--clients 32] [--workers 2] [--concurrency 8]

Needs the inbound endpoint (``wpf_action=update`` with ``async=true`` answering 202 with a
``job_id``: CONTRACT.md §3). Serves the app with gunicorn (2 workers) on a fresh database with
``--contacts`` users linked to a FluentCRM connection, fires ``--updates`` FluentCRM-shaped
updates (each contact several times, tags changing) from ``--clients`` threads, then starts
``--workers`` ``bridge worker`` processes and waits for the queue to drain. Prints:

    storm accepted=… accept_per_s=… processed=… duplicates=… lost=… drain_s=… tags_match=…/…

``duplicates`` counts jobs run more than once, ``lost`` accepted jobs never processed;
``tags_match`` counts contacts whose final tags are those of their last update.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delivery import free_port, stop, wait_http  # noqa: E402

TAG_SETS = (["vip"], ["newsletter"], ["vip", "newsletter"], [], ["trial"])


def prepare(env: dict[str, str], contacts: int) -> str:
    """Fresh schema and ``contacts`` users linked to contact ids 1..N; returns the access key."""
    os.environ.update(env)
    from bridge import create_app, users
    from bridge.connections import create_connection
    from bridge.extensions import db
    from bridge.users import ensure_default_roles

    app = create_app()
    with app.app_context():
        db.drop_all()
        db.create_all()
        ensure_default_roles()
        connection, key = create_connection("fluent", "fluentcrm", {})
        for n in range(1, contacts + 1):
            user = users.create_user(email=f"storm{n}@example.com", username=f"storm{n}")
            users.link_contact(user, connection, str(n))
        db.session.commit()
        db.engine.dispose()
    return key


def payload(contact: int, round_number: int) -> dict:
    tags = TAG_SETS[(contact + round_number) % len(TAG_SETS)]
    return {
        "id": contact,
        "email": f"storm{contact}@example.com",
        "first_name": f"Round{round_number}",
        "tags": [{"slug": t, "title": t} for t in tags],
    }


def fire(base: str, key: str, updates: int, contacts: int, clients: int) -> tuple[list[str], float, int]:
    """Send the updates; returns (job ids, seconds taken, failures)."""
    local = threading.local()
    job_ids: list[str] = []
    failures = Counter()
    lock = threading.Lock()

    def send(index: int) -> None:
        contact, round_number = index % contacts + 1, index // contacts
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(
            f"{base}/?wpf_action=update&async=true",
            json=payload(contact, round_number),
            headers={"X-Access-Key": key},
            timeout=30,
        )
        with lock:
            if response.status_code == 202:
                job_ids.append(str(response.json()["job_id"]))
            else:
                failures[response.status_code] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, range(updates)))
    return job_ids, time.monotonic() - started, sum(failures.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database")
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-storm-")
    url = args.database or f"sqlite:///{workdir}/bridge.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BRIDGE_INSTANCE_PATH": workdir,
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "BRIDGE_WORKER": "off",
    }
    key = prepare(env, args.contacts)
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "16", "-b", f"127.0.0.1:{port}", "app:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    workers: list[subprocess.Popen] = []
    try:
        wait_http(base + "/healthz")
        job_ids, took, failures = fire(base, key, args.updates, args.contacts, args.clients)
        started = time.monotonic()
        command = [sys.executable, "-m", "flask", "--app", "app", "bridge", "worker"]
        for _ in range(args.workers):
            workers.append(
                subprocess.Popen(
                    [*command, "--concurrency", str(args.concurrency)],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        os.environ.update(env)
        from sqlalchemy import func, select

        from bridge import create_app, users
        from bridge.extensions import db
        from bridge.models import Connection, Delivery, DeliveryAttempt, User

        app = create_app()
        with app.app_context():
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:  # other processes do the work: poll the queue
                open_rows = db.session.scalar(
                    select(func.count(Delivery.id)).where(
                        Delivery.kind == "webhook.inbound", Delivery.status.in_(("pending", "in_flight", "failed"))
                    )
                )
                db.session.rollback()
                if not open_rows:
                    break
                time.sleep(0.2)
            drain = time.monotonic() - started
            accepted = set(job_ids)
            attempts = Counter(
                str(delivery_id)
                for delivery_id in db.session.scalars(
                    select(DeliveryAttempt.delivery_id)
                    .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                    .where(Delivery.kind == "webhook.inbound", DeliveryAttempt.error_class.is_(None))
                )
            )
            duplicates = sum(1 for count in attempts.values() if count > 1)
            lost = len(accepted - set(attempts))
            connection = db.session.scalar(select(Connection))
            last_round = (args.updates - 1) // args.contacts
            matching = 0
            for n in range(1, args.contacts + 1):
                user = db.session.scalar(select(User).where(User.email == f"storm{n}@example.com"))
                rounds = [r for r in range(last_round + 1) if r * args.contacts + (n - 1) < args.updates]
                expected = TAG_SETS[(n + rounds[-1]) % len(TAG_SETS)]
                if sorted(users.tag_names(user, connection)) == sorted(expected):
                    matching += 1
        print(
            f"storm accepted={len(accepted)} failures={failures} accept_per_s={len(job_ids) / took:.0f} "
            f"processed={len(attempts)} duplicates={duplicates} lost={lost} drain_s={drain:.1f} "
            f"tags_match={matching}/{args.contacts}"
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            stop(worker)
        stop(web)


if __name__ == "__main__":
    main()
