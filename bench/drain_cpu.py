"""CPU per push of a worker process draining registrations, in-process: what ``bench/delivery.py``'s
drain is made of, measured where other load on the machine barely moves it.

    .venv/bin/python bench/drain_cpu.py [--database URL] [--count 1000] [--runs 3]
                                        [--concurrency 16] [--crm-delay 0.01]
                                        [--app-dir CHECKOUT --app-dir OTHER] [--profile N]
                                        [--statements]

A fake FluentCRM in a process of its own (``crm_process.py``, answering after ``--crm-delay``);
each run is a fresh Python process that creates a fresh schema with one FluentCRM connection,
registers ``--count`` users (each queues its push, as ``POST /api/users`` does), then runs one
``DeliveryWorker`` of ``--concurrency`` threads (one process of ``crm-bridge worker
--concurrency 32`` on two cores) with ``run(once=True)`` until the queue is empty. It prints
that process's CPU per push (``time.process_time()``: the dispatcher's claims and records and
the pool threads' pushes; no boot), the part of it in the dispatcher's turns
(``record_claim_cpu_ms_per_push``, that thread's CPU clock), on PostgreSQL the server's
backends' CPU per push (``/proc``), and write transactions per push (what on SQLite each queue for the writer lock
that registrations need too); medians of ``--runs``. Then the same with 16 plain ``requests``
threads making the same creates (``bare_cpu_ms``): the floor the worker's HTTP costs.

``--app-dir`` alternates checkouts in one run (A/B). ``--profile N`` prints the N costliest
functions of one extra run per checkout (the pool threads and the dispatcher, each on its own
thread's CPU clock); ``--statements`` the statements of one extra run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
sys.path.insert(0, os.environ["BENCH_DIR"])
from child_probes import count_statements, measured, profiler, with_probes
from site_setup import fresh_site
from bridge import create_app
from bridge.accounts.registration import register_user
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from sqlalchemy import event

app = create_app()
profiles = []
if os.environ.get("BENCH_PROFILE"):
    profiled = profiler(profiles)
    if not os.environ.get("BENCH_PROFILE_DISPATCHER"):
        DeliveryWorker._run_one = profiled(DeliveryWorker._run_one)
    DeliveryWorker._record_and_claim = profiled(DeliveryWorker._record_and_claim)
dispatcher_cpu = [0.0]
_record_and_claim = DeliveryWorker._record_and_claim


def timed_turn(self, *args, **kwargs):
    started = time.thread_time()
    try:
        return _record_and_claim(self, *args, **kwargs)
    finally:
        dispatcher_cpu[0] += time.thread_time() - started


DeliveryWorker._record_and_claim = timed_turn
count = int(os.environ["BENCH_COUNT"])
with fresh_site(json.loads(os.environ["BENCH_CRM"])):
    db.session.commit()
    run = os.urandom(4).hex()  # the fake CRM outlives a run: new emails, so every push is a create
    for n in range(count):
        register_user(email=f"user{n}-{run}@example.com")
        if n % 100 == 99:
            db.session.commit()
with app.app_context():
    worker = DeliveryWorker(app, concurrency=int(os.environ["BENCH_CONCURRENCY"]))
    statements = count_statements(db.engine, 100) if os.environ.get("BENCH_STATEMENTS") else {}
    transactions = [0]

    @event.listens_for(db.engine, "commit")
    def committed(conn):
        transactions[0] += 1

    done, cost = measured(lambda: worker.run(once=True), db.engine)
    result = with_probes({"done": done, **cost, "transactions": transactions[0],
                          "dispatcher_cpu_s": dispatcher_cpu[0]}, statements, profiles)
    db.session.remove()
    db.engine.dispose()
print(json.dumps(result))
"""

BARE = r"""
import json, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
import requests

settings = json.loads(os.environ["BENCH_CRM"])
api = settings["base_url"].rstrip("/") + "/wp-json/fluent-crm/v2"
auth = (settings["username"], settings["app_password"])
local = threading.local()
run = os.urandom(4).hex()


def push(email):
    session = getattr(local, "session", None) or requests.Session()
    local.session = session
    session.post(f"{api}/subscribers", json={"email": email, "status": "subscribed"}, auth=auth, timeout=30)


count = int(os.environ["BENCH_COUNT"])
cpu = time.process_time()
with ThreadPoolExecutor(int(os.environ["BENCH_CONCURRENCY"])) as pool:
    list(pool.map(push, [f"bare{n}-{run}@example.com" for n in range(count)]))
print(json.dumps({"done": count, "cpu_s": time.process_time() - cpu}))
"""


def one_run(app_dir: Path | None, env: dict[str, str], **extra: str) -> dict[str, Any]:
    """One fresh process of CHILD (``app_dir``'s code) or, with None, of BARE."""
    completed = subprocess.run(
        [sys.executable, "-c", CHILD if app_dir else BARE],
        cwd=app_dir or HERE,
        env={**env, **extra},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file)")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--crm-delay", type=float, default=0.01)
    parser.add_argument("--app-dir", action="append", help="a checkout to measure (repeat: A/B, interleaved)")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of a profiled run")
    parser.add_argument("--statements", action="store_true", help="list the statements of one extra run")
    args = parser.parse_args()
    from crm_process import FakeCrmProcess

    app_dirs = [Path(d).resolve() for d in args.app_dir or [str(HERE.parent)]]
    workdir = tempfile.mkdtemp(prefix="bench-drain-cpu-")
    with FakeCrmProcess(delay=args.crm_delay) as crm:
        env = {
            **os.environ,
            "DATABASE_URL": args.database or f"sqlite:///{workdir}/bridge.sqlite3",
            "BRIDGE_INSTANCE_PATH": workdir,
            "SECRET_KEY": "bench-secret-key-not-for-production",
            "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
            "BRIDGE_WORKER": "off",
            "BENCH_CRM": json.dumps(crm.settings),
            "BENCH_COUNT": str(args.count),
            "BENCH_CONCURRENCY": str(args.concurrency),
            "BENCH_DIR": str(HERE),
        }
        results: dict[Any, list[dict[str, Any]]] = {d: [] for d in [*app_dirs, None]}
        for _ in range(args.runs):
            for app_dir in [*app_dirs, None]:
                results[app_dir].append(one_run(app_dir, env))
        for app_dir in [*app_dirs, None]:
            runs = results[app_dir]
            per = [r["cpu_s"] * 1000 / r["done"] for r in runs]
            if app_dir is None:
                rounds = " ".join(f"{v:.3f}" for v in per)
                print(f"bare requests: cpu_ms_per_call={statistics.median(per):.3f} ({rounds})")
                continue
            server = [r["server_cpu_s"] * 1000 / r["done"] for r in runs]
            tx = [r["transactions"] / r["done"] for r in runs]
            turns = [r["dispatcher_cpu_s"] * 1000 / r["done"] for r in runs]
            print(
                f"{app_dir}: cpu_ms_per_push={statistics.median(per):.3f} ({' '.join(f'{v:.3f}' for v in per)}) "
                f"record_claim_cpu_ms_per_push={statistics.median(turns):.3f} "
                f"server_cpu_ms_per_push={statistics.median(server):.3f} "
                f"transactions_per_push={statistics.median(tx):.3f} "
                f"load={os.getloadavg()[0]:.1f}"
            )
        for app_dir in app_dirs:
            if args.profile:
                print(f"== profile {app_dir}\n" + one_run(app_dir, env, BENCH_PROFILE=str(args.profile))["profile"])
            if args.statements:
                print(f"== statements {app_dir}")
                for statement, n in one_run(app_dir, env, BENCH_STATEMENTS="1")["statements"]:
                    print(f"{n:6d} {statement}")


if __name__ == "__main__":
    main()
