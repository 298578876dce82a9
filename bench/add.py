"""In-process figures of issue 21: a fresh process's first webhook, and ``add`` of new users.

    .venv/bin/python bench/add.py [--database URL] [--count 200] [--app-dir CHECKOUT]

1. ``first_request_ms``: a fresh Python process creates the app (``create_app``, as gunicorn
   does when it loads it) and times its first ``update`` webhook, then its second. Three fresh
   processes; the median is printed.
2. ``add_p50_ms``: ``--count`` sequential ``wpf_action=add`` webhooks of new contacts (data and
   tags in the body, a generated password returned in the response), through the Flask test
   client against a FluentCRM connection whose API is the bench's fake CRM in its own process
   (``crm_process.py``). Target: p50 < 50 ms.
3. ``race_ms``: 8 identical ``add`` webhooks of one new contact, sent at once from 8 threads;
   the slowest's time, and how many users exist afterwards (must be 1).
4. ``id_only_cpu_ms``: ``update&contact_id=ID`` webhooks with no body (one CRM read each, the
   fake CRM keeping HTTP connections alive) of ``--contacts`` contacts the fake CRM had and
   ``add`` linked, round robin, ``--count`` per round, five rounds: the median CPU time of
   this process per update (``time.process_time``: the CRM's work is in its own process), and
   the wall time (the fake's 10 ms delay included).

``--app-dir`` runs another checkout's app (A/B in the same run, same database server).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECRET_KEY = "bench-secret-key-not-for-production"

FIRST_REQUEST = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
started = time.perf_counter()
from bridge import create_app
app = create_app({"SQLALCHEMY_DATABASE_URI": os.environ["DATABASE_URL"], "SECRET_KEY": os.environ["SECRET_KEY"]})
created = time.perf_counter()
client = app.test_client()
path = "/?wpf_action=update&access_key=" + os.environ["BENCH_KEY"]
body = {"id": 7, "first_name": "A", "last_name": "B", "email": "user7@example.com", "tags": [{"slug": "vip"}]}
first = client.post(path, json=body)
done = time.perf_counter()
second = client.post(path, json={**body, "first_name": "C"})
print(json.dumps({"create_s": created - started, "first_ms": (done - created) * 1000,
                  "second_ms": (time.perf_counter() - done) * 1000, "status": [first.status_code, second.status_code]}))
"""


def first_request(app_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", FIRST_REQUEST], cwd=app_dir, env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def adds(app: Any, key: str, count: int) -> tuple[list[float], float, int]:
    from sqlalchemy import func, select

    from bridge.extensions import db
    from bridge.models import User

    client = app.test_client()
    path = f"/?wpf_action=add&access_key={key}"
    timings = []
    for n in range(count):
        body = {"id": 10_000 + n, "email": f"new{n}@example.com", "first_name": "New", "tags": [{"slug": "vip"}]}
        started = time.perf_counter()
        response = client.post(path, json=body)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and response.get_json()["created"], response.get_data(as_text=True)
    barrier = threading.Barrier(8)
    slowest: list[float] = []

    def race() -> None:
        local = app.test_client()
        barrier.wait()
        started = time.perf_counter()
        response = local.post(path, json={"id": 99_999, "email": "race@example.com", "tags": []})
        slowest.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        users = db.session.scalar(select(func.count()).select_from(User).where(User.email == "race@example.com"))
    return timings, max(slowest), int(users or 0)


def id_only_updates(app: Any, key: str, contacts: int, count: int) -> tuple[float, float]:
    """Median CPU and wall milliseconds per id-only update over five rounds (see 4.)."""
    client = app.test_client()
    for contact_id in range(1, contacts + 1):  # the fake numbers its seeded contacts from 1
        added = client.post(f"/?wpf_action=add&access_key={key}&contact_id={contact_id}")
        assert added.status_code == 200, added.get_data(as_text=True)
    cpu_ms, wall_ms = [], []
    for _ in range(5):
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(count):
            response = client.post(f"/?wpf_action=update&access_key={key}&contact_id={n % contacts + 1}")
            assert response.status_code == 200 and response.get_json()["matched"], response.get_data(as_text=True)
        cpu_ms.append((time.process_time() - cpu) / count * 1000)
        wall_ms.append((time.perf_counter() - wall) / count * 1000)
    return statistics.median(cpu_ms), statistics.median(wall_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"), help="default: a temp SQLite file")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--contacts", type=int, default=50, help="contacts the fake CRM has, for id-only updates")
    parser.add_argument("--app-dir", help="import the app from this checkout (A/B)")
    args = parser.parse_args()
    app_dir = Path(args.app_dir).resolve() if args.app_dir else HERE.parent
    sys.path.insert(0, str(HERE))
    from crm_process import FakeCrmProcess
    from inbound import prepare_database  # puts this checkout on sys.path: the app's goes first

    sys.path.insert(0, str(app_dir))

    workdir = Path(tempfile.mkdtemp(prefix="bench-add-"))
    url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    key = prepare_database(url, workdir / "instance")
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "BENCH_KEY": key}
    env["BRIDGE_INSTANCE_PATH"] = str(workdir / "instance")
    firsts = first_request(app_dir, env)

    from bridge import create_app
    from bridge.connections.service import create_connection
    from bridge.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET_KEY, "BRIDGE_ALLOW_PRIVATE_TARGETS": True})
    with FakeCrmProcess(delay=0.01, contacts=args.contacts, tag="vip") as crm:
        with app.app_context():
            _, add_key = create_connection(
                "fluentapi", "fluentcrm", {**crm.settings, "return_password_in_response": True}
            )
            db.session.commit()
        timings, race_ms, race_users = adds(app, add_key, args.count)
        id_only_cpu_ms, id_only_wall_ms = id_only_updates(app, add_key, args.contacts, args.count)
    backend = url.split(":", 1)[0].split("+", 1)[0]
    first_ms = statistics.median(r["first_ms"] for r in firsts)
    p50 = statistics.median(timings)
    print(
        f"# backend={backend} app_dir={app_dir} create_app_s={statistics.median(r['create_s'] for r in firsts):.2f} "
        f"first_each_ms={','.join(str(round(r['first_ms'])) for r in firsts)} "
        f"second_ms={statistics.median(r['second_ms'] for r in firsts):.1f}"
    )
    print(
        f"inbound_add backend={backend} first_request_ms={first_ms:.0f} add_p50_ms={p50:.1f} "
        f"add_p99_ms={sorted(timings)[int(0.99 * len(timings))]:.1f} race_ms={race_ms:.0f} race_users={race_users} "
        f"id_only_cpu_ms={id_only_cpu_ms:.2f} id_only_wall_ms={id_only_wall_ms:.1f}"
    )
    print(f"target add_p50_ms={p50:.1f} < 50 {'ok' if p50 < 50 else 'MISSED'}; race_users={race_users} == 1")
    return 0 if race_users == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
