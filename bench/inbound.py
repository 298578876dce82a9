"""Benchmark of the inbound ``update`` path under gunicorn, driven by wrk.

Serves the app with gunicorn (2 sync workers) on loopback over a fresh SQLite database (or the
PostgreSQL database given by ``--database``/``DATABASE_URL``), creates 2,000 users linked to a
FluentCRM connection, then drives ``wpf_action=update`` POSTs carrying FluentCRM JSON payloads
with tags (no CRM call) from a separate wrk process at 16 connections, and measures the app's
plain ``GET /`` page the same way. The last line is machine-readable:

    inbound_update rps=… p50_ms=… p99_ms=… hello_rps=… ratio=…

A short unmeasured warm-up (``--warmup 2`` seconds, 0 to skip) runs first so the figures are
of a warmed-up server, not of its first imports and statement compilations.

Usage: ``.venv/bin/python bench/inbound.py [--database URL] [--duration 10] [--connections 16]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

USERS = 2000
SECRET_KEY = "bench-secret-key-not-for-production"

WRK_SCRIPT = r"""
local users = %(users)d
local tags = {"vip", "gold", "silver", "course-one", "course-two", "newsletter", "webinar", "trial"}
local headers = {["Content-Type"] = "application/json"}
local path = "%(path)s"
math.randomseed(os.time())

request = function()
  local id = math.random(1, users)
  local parts = {}
  for i = 1, 3 do
    local slug = tags[math.random(1, #tags)]
    parts[#parts + 1] = string.format('{"id": %%d, "title": "%%s", "slug": "%%s"}', i, slug, slug)
  end
  local body = string.format(
    '{"id": %%d, "first_name": "First%%d", "last_name": "Last%%d", "email": "user%%d@example.com", ' ..
    '"status": "subscribed", "tags": [%%s]}',
    id, math.random(1, 3), id, id, table.concat(parts, ", "))
  return wrk.format("POST", path, headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"non_2xx": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""

HELLO_SCRIPT = r"""
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_database(database_url: str, instance: Path) -> str:
    """Fresh schema, one FluentCRM connection, USERS users linked to contacts 1..USERS."""
    os.environ["BRIDGE_INSTANCE_PATH"] = str(instance)
    from sqlalchemy import insert

    from bridge import create_app
    from bridge.accounts.users import ensure_default_roles
    from bridge.connections.service import create_connection
    from bridge.extensions import db
    from bridge.models import ContactLink, User, utcnow

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": SECRET_KEY})
    with app.app_context():
        db.drop_all()
        db.create_all()
        ensure_default_roles()
        connection, key = create_connection("fluent", "fluentcrm", {})
        db.session.flush()
        now = utcnow()
        db.session.execute(
            insert(User),
            [
                {
                    "id": n,
                    "email": f"user{n}@example.com",
                    "username": f"user{n}",
                    "password_hash": "not-a-real-hash",
                    "role": "subscriber",
                    "first_name": "First1",
                    "last_name": f"Last{n}",
                    "meta": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(1, USERS + 1)
            ],
        )
        db.session.execute(
            insert(ContactLink),
            [
                {"connection_id": connection.id, "contact_id": str(n), "user_id": n, "linked_at": now}
                for n in range(1, USERS + 1)
            ],
        )
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(db.text("SELECT setval('user_account_id_seq', :n)"), {"n": USERS})
            db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return key


def wait_until_serving(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def run_wrk(url: str, script: str, *, connections: int, duration: int, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        completed = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "-s", handle.name, url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(handle.name)
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            result = json.loads(line[len("WRK_RESULT ") :])
            result["rps"] = result["requests"] / (result["duration_us"] / 1_000_000)
            return result
    raise RuntimeError("wrk printed no result:\n" + completed.stdout + completed.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database", default=os.environ.get("DATABASE_URL"), help="SQLAlchemy URL (default: temp SQLite)"
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--async", dest="queued", action="store_true", help="send async=true: measures accepting (202), not applying"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unmeasured load first (imports, statement caches)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="bench-inbound-"))
    instance = workdir / "instance"
    database_url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    key = prepare_database(database_url, instance)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BRIDGE_INSTANCE_PATH": str(instance),
        "SECRET_KEY": SECRET_KEY,
        "BRIDGE_WORKER": "off",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [str(gunicorn), "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "app:create_app()"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(base + "/")
        common = {"connections": args.connections, "duration": args.duration, "threads": args.wrk_threads}
        path = f"/?wpf_action=update&access_key={key}" + ("&async=true" if args.queued else "")
        script = WRK_SCRIPT % {"users": USERS, "path": path}
        if args.warmup > 0:  # both workers import, connect and fill their statement caches first
            run_wrk(base + "/", script, **{**common, "duration": args.warmup})
            run_wrk(base + "/", HELLO_SCRIPT, **{**common, "duration": 1})
        update = run_wrk(base + "/", script, **common)
        hello = run_wrk(base + "/", HELLO_SCRIPT, **common)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    for name, result in (("update", update), ("hello", hello)):
        if result["non_2xx"] or result["socket_errors"]:
            print(f"{name}: {result['non_2xx']} non-2xx, {result['socket_errors']} socket errors", file=sys.stderr)
    backend = database_url.split(":", 1)[0]
    print(
        f"# backend={backend} workers={args.workers} connections={args.connections} duration={args.duration}s "
        f"update_requests={update['requests']} hello_p99_ms={hello['p99_us'] / 1000:.1f} log={workdir / 'gunicorn.log'}"
    )
    print(
        f"inbound_update{'_async' if args.queued else ''} rps={update['rps']:.0f} p50_ms={update['p50_us'] / 1000:.1f} "
        f"p99_ms={update['p99_us'] / 1000:.1f} hello_rps={hello['rps']:.0f} ratio={update['rps'] / hello['rps']:.2f}"
    )
    return 1 if update["non_2xx"] or update["socket_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
