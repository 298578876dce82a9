"""Benchmark: a hostile client beside a stream of valid webhooks (issue 18, item 1).

Serves the app with gunicorn (2 sync workers) on loopback over a fresh SQLite database (or the
PostgreSQL database given by ``--database``), with the users and connection of
``bench/inbound.py``. It measures the stream of valid ``wpf_action=update`` webhooks (wrk, the
inbound benchmark's script) alone, then again while, every second, two concurrent 300 KB
``t[]=1&t[]=1…`` forms with a wrong key arrive (``--rounds`` pairs, 5 by default: with the idle pair 12
failures, under the failed-key limit, so the valid stream from the same address is not refused). Before
issue 18 such a form was nested in quadratic time before its key was checked: minutes of a
worker each, until gunicorn killed it. The last line is machine-readable:

    hostile wrong_key_idle_ms=… wrong_key_max_ms=… wrong_key_statuses=403 p99_alone_ms=…
        p99_under_attack_ms=… p99_ratio=…   (one line)

``wrong_key_idle_ms``: the slower of one pair sent to the idle server (the requests' own cost);
``wrong_key_max_ms``: the slowest during the stream (queueing behind it included). ``p99_ratio``
is the stream's p99 under attack over its p99 alone (1.0: unaffected).

Usage: ``.venv/bin/python bench/hostile.py [--database URL] [--duration 10] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import inbound as inbound_bench  # noqa: E402 (bench scripts are not a package)

FORM_FIELDS = 50_000  # "t[]=1&" is 6 bytes: 300 KB
WRONG_KEY = "wrong-key-for-the-hostile-benchmark"


def hostile_post(url: str, body: bytes) -> tuple[int, float]:
    """(status, seconds) of one wrong-key bracket form (0: no answer, e.g. a killed worker)."""
    request = urllib.request.Request(
        f"{url}/?wpf_action=add&access_key={WRONG_KEY}",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, time.perf_counter() - started


def attack(url: str, rounds: int, results: list[tuple[int, float]], stop: threading.Event) -> None:
    """``rounds`` times, one second apart: two concurrent wrong-key bracket forms."""
    body = "&".join(["t[]=1"] * FORM_FIELDS).encode()
    for _ in range(rounds):
        if stop.wait(1.0):
            return
        senders = [threading.Thread(target=lambda: results.append(hostile_post(url, body))) for _ in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"), help="SQLAlchemy URL")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured stream")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="pairs of hostile forms (at most 9: the key limit)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    rounds = min(args.rounds, 9)

    workdir = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    database_url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    key = inbound_bench.prepare_database(database_url, workdir / "instance")
    port = inbound_bench.free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BRIDGE_INSTANCE_PATH": str(workdir / "instance"),
        "SECRET_KEY": inbound_bench.SECRET_KEY,
        "BRIDGE_WORKER": "off",
    }
    log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-w",
            str(args.workers),
            "--timeout",
            "60",
            "-b",
            f"127.0.0.1:{port}",
            "app:create_app()",
        ],
        cwd=inbound_bench.REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    hostile: list[tuple[int, float]] = []
    try:
        inbound_bench.wait_until_serving(base + "/")
        path = f"/?wpf_action=update&access_key={key}"
        script = inbound_bench.WRK_SCRIPT % {"users": inbound_bench.USERS, "path": path}
        common = {"connections": args.connections, "threads": 2}
        inbound_bench.run_wrk(base + "/", script, **common, duration=2)  # warm-up: imports, caches
        quiet: list[tuple[int, float]] = []
        attack(base, 1, quiet, threading.Event())  # one pair on an idle server: its own cost
        alone = inbound_bench.run_wrk(base + "/", script, **common, duration=args.duration)
        stop = threading.Event()
        attacker = threading.Thread(target=attack, args=(base, rounds, hostile, stop))
        attacker.start()
        under_attack = inbound_bench.run_wrk(base + "/", script, **common, duration=args.duration)
        stop.set()
        attacker.join()
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    statuses = sorted({status for status, _ in hostile + quiet})
    quiet_ms = max(seconds for _, seconds in quiet) * 1000
    worst_ms = max((seconds for _, seconds in hostile), default=0.0) * 1000
    ratio = under_attack["p99_us"] / max(alone["p99_us"], 1)
    backend = database_url.split(":", 1)[0]
    print(
        f"# backend={backend} workers={args.workers} connections={args.connections} duration={args.duration}s "
        f"hostile_requests={len(hostile)} of {FORM_FIELDS} fields, stream rps alone={alone['rps']:.0f} "
        f"under attack={under_attack['rps']:.0f} log={workdir / 'gunicorn.log'}"
    )
    print(
        f"hostile wrong_key_idle_ms={quiet_ms:.0f} wrong_key_max_ms={worst_ms:.0f} "
        f"wrong_key_statuses={','.join(map(str, statuses))} "
        f"p99_alone_ms={alone['p99_us'] / 1000:.1f} p99_under_attack_ms={under_attack['p99_us'] / 1000:.1f} "
        f"p99_ratio={ratio:.2f}"
    )
    failed = statuses != [403] or under_attack["non_2xx"] or under_attack["socket_errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
