"""Batch benchmark: an import from a fake CRM and a push to it, run by one default worker.

    .venv/bin/python bench/batch.py [--database URL] [--count 10000] [--crm-delay 0.01]
                                    [--concurrency 1] [--only import|push]

The fake FluentCRM of the end-to-end tests runs in a process of its own and answers every
request after ``--crm-delay`` seconds (10 ms). A fresh database each time, then one
``crm-bridge worker`` process (``--concurrency``, 1 by default: the command's default), started
after the batch was queued; rates are measured from the batch's ``started_at`` to its
``finished_at`` (the worker's boot is not counted).

- import: ``--count`` contacts with one tag, listed 100 a page (``GET subscribers?tags[]=…``),
  each becoming a user as an inbound ``add`` makes it. Its ceiling is the fake's own: the same
  pages fetched with plain ``requests`` and nothing else (``bare_per_s``; at 10 ms a page of 100,
  at most 10,000 contacts per second). Target: at least 1,000 contacts/s.
- push: ``--count`` local users pushed as registrations (one create each). Its ceiling is the
  bare HTTP baseline: the same creates from ``--concurrency`` plain ``requests`` threads with no
  database. Target: at least 0.8 of it.

Prints one line per operation:

    batch backend=sqlite operation=import count=10000 items_per_s=… bare_per_s=… ratio=…
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from crm_process import FakeCrmProcess  # noqa: E402
from delivery import bare_http_rate  # noqa: E402
from site_setup import fresh_site  # noqa: E402

TAG = "bench"
API = "/wp-json/fluent-crm/v2"


def bare_listing_rate(crm: FakeCrmProcess) -> float:
    """The fake's ceiling for an import: every page of the tag, fetched with nothing else."""
    base = crm.settings["base_url"].rstrip("/") + API
    auth = (crm.settings["username"], crm.settings["app_password"])
    session = requests.Session()
    tag_id = next(t["id"] for t in session.get(f"{base}/tags", auth=auth).json()["tags"]["data"] if t["slug"] == TAG)
    started, page, listed = time.monotonic(), 1, 0
    while True:
        params = {"tags[]": tag_id, "per_page": 100, "page": page}
        listing = session.get(f"{base}/subscribers", params=params, auth=auth).json()["subscribers"]
        listed += len(listing["data"])
        if page >= listing["last_page"]:
            return listed / (time.monotonic() - started)
        page += 1


def prepare(env: dict[str, str], crm_settings: dict[str, Any], operation: str, count: int) -> int:
    """A fresh schema, the connection, and (for a push) ``count`` users; queues the batch and
    returns its id."""
    os.environ.update(env)
    from sqlalchemy import insert

    from bridge.delivery import batches
    from bridge.extensions import db
    from bridge.models import User

    with fresh_site(crm_settings):
        if operation == "push":
            rows = [{"email": f"user{n}@example.com", "username": f"user{n}", "meta": {}} for n in range(count)]
            db.session.execute(insert(User), rows)
        db.session.commit()
        params = {"tag": TAG} if operation == "import" else {}
        batch_id = batches.start_batch(operation, "fluent", params).id
    return batch_id


def finished_batch(env: dict[str, str], batch_id: int, timeout: float) -> dict[str, Any]:
    from bridge import create_app
    from bridge.extensions import db
    from bridge.models import Batch

    app = create_app()
    deadline = time.monotonic() + timeout
    with app.app_context():
        while time.monotonic() < deadline:
            batch = db.session.get(Batch, batch_id)
            if batch is not None and batch.status not in ("queued", "running"):
                seconds = (batch.finished_at - batch.started_at).total_seconds()
                result = {"status": batch.status, "done": batch.done, "failed": batch.failed, "seconds": seconds}
                db.engine.dispose()
                return result
            db.session.remove()
            time.sleep(0.2)
    raise RuntimeError(f"batch {batch_id} did not finish in {timeout} s")


def run(operation: str, database: str | None, count: int, crm_delay: float, concurrency: int) -> str:
    workdir = tempfile.mkdtemp(prefix="bench-batch-")
    url = database or f"sqlite:///{workdir}/bench.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BRIDGE_INSTANCE_PATH": workdir,
        "SECRET_KEY": "bench-secret",
        "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
        "BRIDGE_WORKER_POLL_SECONDS": "0.05",
    }
    seeded = count if operation == "import" else 0
    with FakeCrmProcess(crm_delay, contacts=seeded, tag=TAG) as crm:
        if operation == "import":
            bare = bare_listing_rate(crm)
        else:
            bare = bare_http_rate(crm_delay, min(count, 2000), concurrency)
        batch_id = prepare(env, crm.settings, operation, count)
        command = [sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), "bridge", "worker"]
        command += ["--concurrency", str(concurrency)]
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            result = finished_batch(env, batch_id, timeout=max(120.0, count / 20))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        pushed = crm.count() if operation == "push" else None
    rate = result["done"] / result["seconds"] if result["seconds"] else float("inf")
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    line = (
        f"batch backend={backend} operation={operation} count={count} concurrency={concurrency} "
        f"status={result['status']} done={result['done']} failed={result['failed']} "
        f"seconds={result['seconds']:.2f} items_per_s={rate:.0f} bare_per_s={bare:.0f} ratio={rate / bare:.2f}"
    )
    if pushed is not None:
        line += f" crm_pushes={pushed}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file)")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--crm-delay", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--only", choices=["import", "push"])
    args = parser.parse_args()
    for operation in [args.only] if args.only else ["import", "push"]:
        print(run(operation, args.database, args.count, args.crm_delay, args.concurrency), flush=True)


if __name__ == "__main__":
    main()
