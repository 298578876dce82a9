"""Inbound storm: many ``async=true`` updates accepted fast, then all processed exactly once.

    .venv/bin/python bench/storm.py [--database URL] [--updates 10000] [--contacts 1000]
                                    [--clients 32] [--web-workers 2] [--web-threads 2]
                                    [--workers 2] [--concurrency 8] [--warmup 500]

Needs the inbound endpoint (``wpf_action=update`` with ``async=true`` answering 202 with a
``job_id``: CONTRACT.md §3). Serves the app with gunicorn (2 workers of 2 threads) on a fresh
database with ``--contacts`` users linked to a FluentCRM connection; after ``--warmup``
unmeasured updates, wrk fires ``--updates`` FluentCRM-shaped updates (each contact several
times, tags changing) over ``--clients`` connections, timed until the database holds them all;
then ``--workers`` ``bridge worker`` processes drain the queue. Prints:

    storm accepted=… answered_202=… failures=… accept_per_s=… accept_p99_ms=… processed=…
    duplicates=… lost=… drain_s=… tags_match=…/…

``duplicates`` counts jobs run more than once, ``lost`` accepted jobs never processed;
``tags_match`` counts contacts whose final tags are those of their last update.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from delivery import free_port, stop, wait_http  # noqa: E402
from site_setup import fresh_site  # noqa: E402

TAG_SETS = (["vip"], ["newsletter"], ["vip", "newsletter"], [], ["trial"])


def prepare(env: dict[str, str], contacts: int) -> str:
    """Fresh schema and ``contacts`` users linked to contact ids 1..N; returns the access key."""
    os.environ.update(env)
    from bridge.accounts import users

    with fresh_site() as (connection, key):
        for n in range(1, contacts + 1):
            user = users.create_user(email=f"storm{n}@example.com", username=f"storm{n}")
            users.link_contact(user, connection, str(n))
    return key


WARMUP_OFFSET = 1_000_000  # warm-up updates are about contacts outside the measured ones


def clear_jobs(env: dict[str, str]) -> None:
    """Forget the warm-up's jobs and log rows, so only the storm is processed and counted."""
    from sqlalchemy import create_engine, text

    from bridge.config import normalise_database_url

    engine = create_engine(normalise_database_url(env["DATABASE_URL"]))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM delivery WHERE kind = 'webhook.inbound'"))
        connection.execute(text("DELETE FROM webhook_event"))
    engine.dispose()


def queued_jobs(env: dict[str, str]) -> Callable[[], int]:
    """A counter of the webhook jobs in the database (what the server has accepted)."""
    os.environ.update(env)
    from sqlalchemy import create_engine, text

    from bridge.config import normalise_database_url

    engine = create_engine(normalise_database_url(env["DATABASE_URL"]))

    def count() -> int:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT count(*) FROM delivery WHERE kind = 'webhook.inbound'")).scalar()
            )

    return count


WRK_STORM = r"""
local T = %(threads)d
local updates = %(updates)d
local contacts = %(contacts)d
local tagsets = {{"vip"}, {"newsletter"}, {"vip", "newsletter"}, {}, {"trial"}}
local headers = {["Content-Type"] = "application/json", ["X-Access-Key"] = "%(key)s"}
local threads = {}
local sent, answered = 0, 0
accepted, failed = 0, 0

setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- Thread t sends updates t, t+T, t+2T, ...: overall they go out roughly in order, so a
-- contact's rounds are sent in sequence.
local primed = false

request = function()
  if not primed then  -- wrk calls request() once per thread before connecting and never sends it
    primed = true
    return wrk.format("GET", "/healthz")
  end
  local index = tid + sent * T
  sent = sent + 1
  if index >= updates then
    return wrk.format("GET", "/healthz")  -- past this thread's share, while its last answers arrive
  end
  local contact = %(offset)d + index %% contacts + 1
  local round = math.floor(index / contacts)
  local tags = {}
  for _, tag in ipairs(tagsets[(contact + round) %% 5 + 1]) do
    tags[#tags + 1] = string.format('{"slug": "%%s", "title": "%%s"}', tag, tag)
  end
  local body = string.format('{"id": %%d, "email": "storm%%d@example.com", "first_name": "Round%%d", "tags": [%%s]}',
    contact, contact, round, table.concat(tags, ", "))
  return wrk.format("POST", "/?wpf_action=update&async=true", headers, body)
end

response = function(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  elseif status ~= 200 then
    failed = failed + 1
    io.write(string.format("refused %%d: %%s\n", status, body))
  end
  answered = answered + 1
  local share = math.floor((updates - tid + T - 1) / T)
  if accepted + failed >= share then wrk.thread:stop() end
end

done = function(summary, latency, requests)
  local total_accepted, total_failed = 0, 0
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + thread:get("accepted")
    total_failed = total_failed + thread:get("failed")
  end
  io.write(string.format('WRK_STORM {"accepted": %%d, "failed": %%d, "duration_us": %%d, "p99_us": %%d}\n',
    total_accepted, total_failed, summary.duration, latency:percentile(99)))
end
"""


def fire(
    base: str,
    key: str,
    updates: int,
    contacts: int,
    connections: int,
    accepted_so_far: Callable[[], int],
    offset: int = 0,
) -> dict:
    """Send the updates with wrk (a C client: a Python one on the same cores measured mostly
    itself). wrk runs for a fixed duration, so the clock is ours: from its start until
    ``accepted_so_far()`` (queued jobs in the database) reaches ``updates``; then wrk is
    interrupted and prints its tally (202s, failures, p99)."""
    threads = 2
    script = WRK_STORM % {"threads": threads, "updates": updates, "contacts": contacts, "key": key, "offset": offset}
    before = accepted_so_far()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    started = time.monotonic()
    process = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", "-d600s", "--timeout", "30s", "-s", handle.name, base + "/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        last, last_change = -1, time.monotonic()
        while process.poll() is None:
            count = accepted_so_far() - before
            if count >= updates:
                break
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 10:  # nothing new for 10 s: some were refused
                break
            time.sleep(0.05)
        took = time.monotonic() - started
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        os.unlink(handle.name)
    for line in stdout.splitlines():
        if line.startswith("refused "):
            print(line[:300], file=sys.stderr)
        if line.startswith("WRK_STORM "):
            return {**json.loads(line.split(" ", 1)[1]), "seconds": took}
    raise RuntimeError("wrk printed no result:\n" + stdout + stderr)


def worker_connections(clients: int, web_workers: int, web_threads: int) -> int:
    """At most each worker's share of wrk's keep-alive connections (plus one per thread, which
    gunicorn keeps for the requests in service), as a proxy in front would spread them. A
    threaded worker accepts while it is under this limit, so by default one could take 30 of
    the 32 connections and the other 2: that worker ran at one core while the other idled,
    and the storm was accepted at 830-860/s instead of 990-1,050/s (same machine, same hour)."""
    return -(-clients // web_workers) + web_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database")
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=32, help="wrk connections")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--web-threads",
        type=int,
        default=2,
        help="threads per gunicorn worker (more than 1 keeps connections alive: sync workers close "
        "each one, and at this rate the ports in TIME_WAIT made some reconnects stall for seconds)",
    )
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured updates first (0 to skip)")
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
        [
            *[sys.executable, "-m", "gunicorn", "-w", str(args.web_workers), "--threads", str(args.web_threads)],
            *["--worker-connections", str(worker_connections(args.clients, args.web_workers, args.web_threads))],
            *["-b", f"127.0.0.1:{port}", "app:app"],
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    workers: list[subprocess.Popen] = []
    try:
        wait_http(base + "/healthz")
        counter = queued_jobs(env)
        if args.warmup:  # a server that has run a while: imports done, statements compiled
            fire(base, key, args.warmup, 100, args.clients, counter, offset=WARMUP_OFFSET)
            clear_jobs(env)
        tally = fire(base, key, args.updates, args.contacts, args.clients, counter)
        took, failures = tally["seconds"], tally["failed"]
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

        from bridge import create_app
        from bridge.accounts import users
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
            accepted = {
                str(job_id)
                for job_id in db.session.scalars(select(Delivery.id).where(Delivery.kind == "webhook.inbound"))
            }
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
            f"storm accepted={len(accepted)} answered_202={tally['accepted']} failures={failures} "
            f"accept_per_s={tally['accepted'] / took:.0f} accept_p99_ms={tally['p99_us'] / 1000:.0f} "
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
