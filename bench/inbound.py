"""Benchmark of the inbound ``update`` path under gunicorn, driven by wrk.

Serves the app with gunicorn as README's production command does (``--workers`` 4; ``--threads``
4 on PostgreSQL, 1 on SQLite: sync workers, as README recommends for it) on loopback
over a fresh SQLite database (or the PostgreSQL database given by ``--database`` or
``DATABASE_URL``), creates 2,000 users linked to a FluentCRM connection, then drives
``wpf_action=update`` POSTs carrying FluentCRM JSON payloads with tags (no CRM call) from a
separate wrk process at 16 connections, and measures the app's
plain ``GET /`` page the same way (the trivial route). The floor is ``floor_app.py`` (the
same work by hand: raw ``sqlite3``/psycopg in a minimal Flask route, outside the app) under the
same gunicorn settings. The three are measured in turn, ``--rounds`` times, and each ratio is
the median over the rounds. The last lines are machine-readable, each figure with its target:

    inbound_update rps=… p50_ms=… p99_ms=… hello_rps=… floor_rps=… ratio=… floor_ratio=…
    target … ok|MISSED

``--app-dir`` serves the app from another checkout (A/B against the code before a change, in
the same run, on the same database).

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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from site_setup import fresh_site  # noqa: E402

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


def prepare_database(
    database_url: str, instance: Path, *, users: int = USERS, settings: dict[str, Any] | None = None
) -> str:
    """Fresh schema, one FluentCRM connection ``fluent`` (with ``settings``), ``users`` users
    linked to contacts 1..users. Returns the connection's access key."""
    os.environ["BRIDGE_INSTANCE_PATH"] = str(instance)
    from bridge.extensions import db

    with fresh_site(settings, {"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": SECRET_KEY}) as (connection, key):
        if users:
            insert_linked_users(connection.id, users)
        db.session.commit()
        if users and db.engine.dialect.name == "postgresql":
            db.session.execute(db.text("SELECT setval('user_account_id_seq', :n)"), {"n": users})
    return key


def insert_linked_users(connection_id: int, users: int) -> None:
    """Users 1..users, each linked to the contact of its own id, in two bulk inserts."""
    from sqlalchemy import insert

    from bridge.extensions import db
    from bridge.models import ContactLink, User, utcnow

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
            for n in range(1, users + 1)
        ],
    )
    db.session.execute(
        insert(ContactLink),
        [
            {"connection_id": connection_id, "contact_id": str(n), "user_id": n, "linked_at": now}
            for n in range(1, users + 1)
        ],
    )


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


def start_gunicorn(app: str, cwd: Path, env: dict[str, str], port: int, args: argparse.Namespace, log: Any) -> Any:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "-w", str(args.workers), "--preload", "-b", f"127.0.0.1:{port}"]
    if args.threads > 1:
        command += ["--threads", str(args.threads)]
    return subprocess.Popen([*command, app], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def target(name: str, value: float, limit: float, *, below: bool = False) -> str:
    met = value < limit if below else value >= limit
    return f"target {name}={value:.2f} {'<' if below else '>='} {limit:g} {'ok' if met else 'MISSED'}"


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
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (README: -w 4)")
    parser.add_argument(
        "--threads", type=int, help="gunicorn threads per worker (README: 4 on PostgreSQL; 1, sync workers, on SQLite)"
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of update, trivial and floor")
    parser.add_argument("--app-dir", help="serve the app from this checkout (A/B against other code)")
    parser.add_argument(
        "--async", dest="queued", action="store_true", help="send async=true: measures accepting (202), not applying"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unmeasured load first (imports, statement caches)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (`make bench` installs it with apt; or apt-get install -y wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="bench-inbound-"))
    instance = workdir / "instance"
    database_url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    if args.threads is None:
        args.threads = 1 if database_url.startswith("sqlite") else 4
    key = prepare_database(database_url, instance)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BRIDGE_INSTANCE_PATH": str(instance),
        "SECRET_KEY": SECRET_KEY,
        "BRIDGE_WORKER": "off",
        "FLOOR_ACCESS_KEY": key,
    }
    app_port, floor_port = free_port(), free_port()
    log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    app_dir = Path(args.app_dir).resolve() if args.app_dir else REPO
    servers = [
        start_gunicorn("app:create_app()", app_dir, env, app_port, args, log),
        start_gunicorn("floor_app:create_floor_app()", REPO / "bench", env, floor_port, args, log),
    ]
    base, floor = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{floor_port}"
    rounds: list[dict[str, dict]] = []
    try:
        wait_until_serving(base + "/")
        common = {"connections": args.connections, "duration": args.duration, "threads": args.wrk_threads}
        path = f"/?wpf_action=update&access_key={key}" + ("&async=true" if args.queued else "")
        script = WRK_SCRIPT % {"users": USERS, "path": path}
        floor_script = WRK_SCRIPT % {"users": USERS, "path": f"/?wpf_action=update&access_key={key}"}
        if args.warmup > 0:  # every worker imports, connects and fills its statement caches first
            run_wrk(base + "/", script, **{**common, "duration": args.warmup})
            run_wrk(base + "/", HELLO_SCRIPT, **{**common, "duration": 1})
            run_wrk(floor + "/", floor_script, **{**common, "duration": args.warmup})
        for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits all three
            rounds.append(
                {
                    "update": run_wrk(base + "/", script, **common),
                    "hello": run_wrk(base + "/", HELLO_SCRIPT, **common),
                    "floor": run_wrk(floor + "/", floor_script, **common),
                }
            )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        log.close()
    failed = False
    for figures in rounds:
        for name, result in figures.items():
            if result["non_2xx"] or result["socket_errors"]:
                failed = failed or name == "update"
                print(f"{name}: {result['non_2xx']} non-2xx, {result['socket_errors']} socket errors", file=sys.stderr)
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    median = statistics.median
    update_rps = median(r["update"]["rps"] for r in rounds)
    hello_rps = median(r["hello"]["rps"] for r in rounds)
    floor_rps = median(r["floor"]["rps"] for r in rounds)
    ratio = median(r["update"]["rps"] / r["hello"]["rps"] for r in rounds)
    floor_ratio = median(r["update"]["rps"] / r["floor"]["rps"] for r in rounds)
    p50 = median(r["update"]["p50_us"] for r in rounds) / 1000
    p99 = median(r["update"]["p99_us"] for r in rounds) / 1000
    print(
        f"# backend={backend} workers={args.workers} threads={args.threads} connections={args.connections} "
        f"duration={args.duration}s rounds={args.rounds} app_dir={app_dir} "
        f"update_rps_each={','.join(str(round(r['update']['rps'])) for r in rounds)} "
        f"floor_p99_ms={median(r['floor']['p99_us'] for r in rounds) / 1000:.1f} log={workdir / 'gunicorn.log'}"
    )
    print(
        f"inbound_update{'_async' if args.queued else ''} rps={update_rps:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} "
        f"hello_rps={hello_rps:.0f} floor_rps={floor_rps:.0f} ratio={ratio:.2f} floor_ratio={floor_ratio:.2f}"
    )
    if not args.queued:  # the targets of issue 21
        if backend == "sqlite":
            print(target("update/trivial", ratio, 0.5))
        else:
            print(target("update/floor", floor_ratio, 0.8))
        print(target("update_p99_ms", p99, 50, below=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
