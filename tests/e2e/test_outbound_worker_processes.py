"""Worker processes (``bridge worker``) against a fake FluentCRM: a worker killed mid-delivery
hands its row to another after the lease expires; two workers share a large queue with no
duplicates and nothing lost. Runs on SQLite, and on PostgreSQL when it is configured."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fakecrm import FakeFluentCrm, connection_settings
from sqlalchemy import func, insert, select

from bridge.accounts import registration
from bridge.delivery import outbox
from bridge.extensions import db
from bridge.models import Connection, Delivery, DeliveryAttempt, User, utcnow

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_APP = Path(__file__).resolve().parents[2] / "app.py"  # the production app
LEASE_SECONDS = 2


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    return {**app_config, "BRIDGE_ALLOW_PRIVATE_TARGETS": True, "BRIDGE_LEASE_SECONDS": LEASE_SECONDS}


@pytest.fixture
def spawn_worker(app, tmp_path):
    """Start ``flask bridge worker`` processes on the test's database; all killed at the end."""
    processes: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "BRIDGE_INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": app.config["SECRET_KEY"],
        "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
        "BRIDGE_LEASE_SECONDS": str(LEASE_SECONDS),
        "BRIDGE_WORKER_POLL_SECONDS": "0.05",
        # These tests are about sharing the queue, not CPU priority: on a machine busy with other
        # work a niced worker (BRIDGE_WORKER_NICE, default 10) could run them into their timeout.
        "BRIDGE_WORKER_NICE": "0",
    }

    def spawn(*args: str, lease: float = LEASE_SECONDS) -> subprocess.Popen:
        command = [sys.executable, "-m", "flask", "--app", str(WORKER_APP), "bridge", "worker", *args]
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**env, "BRIDGE_LEASE_SECONDS": str(lease)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def wait_for_status(app, delivery_id: int, status: str, timeout: float) -> str | None:
    """Bounded poll: another process changes the row, so there is no in-process event to wait on."""
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        with app.app_context():
            current = db.session.scalar(select(Delivery.status).where(Delivery.id == delivery_id))
            db.session.remove()
        if current == status:
            return current
        time.sleep(0.05)
    return current


def queue_registrations(app, emails: list[str]) -> list[int]:
    """Users and their registration pushes, as ``registration.register_user`` writes them (one
    user at a time for a few; in bulk for the large queue, where that would dominate the test)."""
    with app.app_context():
        if len(emails) <= 10:
            for email in emails:
                registration.register_user(email=email)
        else:
            connection = db.session.scalar(select(Connection))
            user_ids = db.session.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [{"email": e, "username": e, "role": "subscriber", "meta": {}} for e in emails],
            ).all()
            now = utcnow()
            db.session.execute(
                insert(Delivery),
                [
                    {
                        "kind": outbox.CONTACT_UPSERT,
                        "connection_id": connection.id,
                        "user_id": user_id,
                        "payload": {"reason": "register"},
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "ordering_key": f"{connection.id}:{user_id}",
                    }
                    for user_id in user_ids
                ],
            )
        db.session.commit()
        ids = list(db.session.scalars(select(Delivery.id).order_by(Delivery.id)))
        assert len(ids) == len(emails)
        return ids


def test_a_worker_killed_mid_delivery_is_replaced_after_its_lease(app, make_connection, spawn_worker):
    with FakeFluentCrm() as fake:
        make_connection("fluent", "fluentcrm", **connection_settings(fake))
        [delivery_id] = queue_registrations(app, ["killed@example.com"])
        fake.gate = threading.Event()  # the first worker's request hangs
        first = spawn_worker()
        assert fake.arrived.wait(30), "the first worker never called the CRM"
        claimed_at = time.monotonic()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        gate, fake.gate = fake.gate, None
        gate.set()  # the CRM now answers (the killed worker never sees it)

        spawn_worker("--concurrency", "2")
        assert wait_for_status(app, delivery_id, "succeeded", timeout=30) == "succeeded"

    _hung, *after_kill = fake.requests  # the killed worker's first request never got its answer
    assert after_kill, "the second worker never called the CRM"
    assert after_kill[0].at - claimed_at >= LEASE_SECONDS * 0.8  # not before the lease ran out
    assert {r.headers["Idempotency-Key"] for r in fake.requests} == {str(delivery_id)}
    assert len(fake.contacts_by_email("killed@example.com")) == 1  # at-least-once, still one contact
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.attempts == 2  # the killed worker's claim counted
        assert [a.status_code for a in delivery.attempt_log] == [200]


def test_two_worker_processes_share_the_queue_without_duplicates(app, backend, make_connection, spawn_worker):
    # The full 2,000 on PostgreSQL (the scale-out backend); a smaller queue on SQLite keeps the
    # suite fast, where two processes contend for one file lock.
    total = 2000 if backend == "postgresql" else 400
    with FakeFluentCrm() as fake:
        make_connection("fluent", "fluentcrm", **connection_settings(fake))
        ids = queue_registrations(app, [f"bulk{n}@example.com" for n in range(total)])
        started = time.monotonic()
        workers = [spawn_worker("--concurrency", "8", "--once", lease=60) for _ in range(2)]
        outputs = [w.communicate(timeout=240)[0] for w in workers]
        took = time.monotonic() - started
        assert all(w.returncode == 0 for w in workers), outputs

    posts = Counter(r.json["email"] for r in fake.requests if r.method == "POST" and r.path.endswith("/subscribers"))
    assert len(posts) == total and set(posts.values()) == {1}, "a push was lost or sent twice"
    assert len(fake.contacts) == total
    with app.app_context():
        statuses = Counter(db.session.scalars(select(Delivery.status)))
        assert statuses == {"succeeded": total}
        assert db.session.scalar(select(func.max(Delivery.attempts))) == 1
        per_worker = Counter(db.session.scalars(select(DeliveryAttempt.worker)))
        assert len(per_worker) == 2 and sum(per_worker.values()) == total
        assert len(ids) == total
    print(f"two workers delivered {total} in {took:.1f}s ({total / took:.0f}/s); split {sorted(per_worker.values())}")


def two_workers_each_holding_a_delivery(app, fake, make_connection, spawn_worker, *args: str):
    """Two queued registrations and ``bridge worker --concurrency 2 --processes 2 ARGS``, once
    each worker process is holding one of them at the CRM (whose answers wait for
    ``fake.gate``). Returns the command and the delivery ids."""
    make_connection("fluent", "fluentcrm", **connection_settings(fake))
    ids = queue_registrations(app, ["first@example.com", "second@example.com"])
    fake.gate = threading.Event()
    command = spawn_worker("--concurrency", "2", "--processes", "2", *args)
    assert fake.wait_for(lambda f: len(f.requests) >= 2, timeout=30), "both processes should call the CRM"
    return command, ids


def test_one_command_runs_several_worker_processes(app, make_connection, spawn_worker):
    """``bridge worker --concurrency 2 --processes 2``: two processes (two worker ids) share the queue. The
    CRM holds its answers until both processes have each claimed a row (concurrency 1 each,
    so one process can hold only one), then both rows are delivered and the command exits."""
    with FakeFluentCrm() as fake:
        process, ids = two_workers_each_holding_a_delivery(app, fake, make_connection, spawn_worker, "--once", "--json")
        fake.gate.set()
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    summary = json.loads(output[output.index("\n{") :])  # after the log lines
    assert summary["processed"] == 2 and len(summary["workers"]) == 2
    assert {w["processed"] for w in summary["workers"]} == {1}
    with app.app_context():
        statuses = db.session.scalars(select(Delivery.status).where(Delivery.id.in_(ids))).all()
        workers = set(db.session.scalars(select(DeliveryAttempt.worker)))
    assert statuses == ["succeeded", "succeeded"]
    assert workers == {w["worker"] for w in summary["workers"]}


def process_gone(pid: int, timeout: float) -> bool:
    """Bounded poll: the child is not ours to wait for (its parent was the killed command), so
    read its state; an exited process is gone or a zombie awaiting its new parent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in {"Z", "X"}:
            return True
        time.sleep(0.05)
    return False


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_forked_workers_stop_when_the_command_is_killed(app, make_connection, spawn_worker):
    """``kill -9`` on the command leaves no orphan worker running: each forked worker sees its
    supervisor gone, finishes the delivery it is running, records it and exits."""
    with FakeFluentCrm() as fake:
        command, ids = two_workers_each_holding_a_delivery(app, fake, make_connection, spawn_worker)
        workers = children_of(command.pid)
        assert len(workers) == 2
        command.send_signal(signal.SIGKILL)
        command.wait(10)
        fake.gate.set()
        assert all(process_gone(pid, timeout=30) for pid in workers), "a worker kept running without the command"

    with app.app_context():
        statuses = db.session.scalars(select(Delivery.status).where(Delivery.id.in_(ids))).all()
    assert statuses == ["succeeded", "succeeded"]  # each recorded its delivery before exiting


def test_a_worker_process_that_dies_is_replaced(app, make_connection, spawn_worker):
    """One of the command's workers killed (an out-of-memory kill, say): the command logs it and
    starts another in its place; the dead one's row goes out once its lease has expired."""
    with FakeFluentCrm() as fake:
        command, ids = two_workers_each_holding_a_delivery(app, fake, make_connection, spawn_worker)
        victim, survivor = children_of(command.pid)
        os.kill(victim, signal.SIGKILL)
        gate, fake.gate = fake.gate, None
        gate.set()
        assert wait_for_status(app, ids[0], "succeeded", timeout=30) == "succeeded"
        assert wait_for_status(app, ids[1], "succeeded", timeout=30) == "succeeded"
        replacement = set(children_of(command.pid)) - {survivor}
        assert len(replacement) == 1 and victim not in replacement
        command.send_signal(signal.SIGTERM)
        output, _ = command.communicate(timeout=30)

    assert command.returncode == 0, output
    assert f"worker process {victim} was killed by signal 9 (SIGKILL); starting another" in output
    with app.app_context():
        workers = set(db.session.scalars(select(DeliveryAttempt.worker)))
    assert workers and not any(f":{victim}:" in worker for worker in workers)  # the killed one recorded nothing


def test_once_fails_when_a_worker_process_dies(app, make_connection, spawn_worker):
    """With ``--once`` nothing replaces a dead worker (the command is finishing): it says so and
    exits 1, since the dead worker's row is left for the next run."""
    with FakeFluentCrm() as fake:
        command, _ids = two_workers_each_holding_a_delivery(
            app, fake, make_connection, spawn_worker, "--once", "--json"
        )
        victim, _survivor = children_of(command.pid)
        os.kill(victim, signal.SIGKILL)
        fake.gate.set()
        output, _ = command.communicate(timeout=60)

    assert command.returncode == 1, output
    summary = json.loads(output[output.index("\n{") :])
    assert summary["success"] is False and summary["processed"] == 1
    assert {"worker": None, "processed": 0, "exit_code": -signal.SIGKILL} in summary["workers"]
    assert f"worker process {victim} was killed by signal 9 (SIGKILL)" in output
