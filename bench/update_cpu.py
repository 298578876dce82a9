"""CPU per inbound ``update`` in-process: the app, its trivial route and the floor, A/B.

``bench/inbound.py`` measures throughput under gunicorn; on a shared two-core machine its
figures move with everyone else's load. CPU time per request (``time.process_time()``) in one
process moves much less, and on two cores the rps ratio follows the CPU ratio. So this calls
each app straight through WSGI (no test client, no sockets), ``-n`` requests each, and prints
the median and mean CPU per request:

* ``update``: the app's ``POST /?wpf_action=update`` with a FluentCRM body carrying the data and
  three tags (the same bodies as ``bench/inbound.py``'s wrk script, seeded), for users linked
  to contacts on a FluentCRM connection (``bench/inbound.prepare_database``);
* ``trivial``: the app's ``GET /`` page;
* ``floor``: ``bench/floor_app.py`` (the same statements by hand on raw sqlite3/psycopg).

On PostgreSQL it also prints ``server_ms``: the CPU its backends spent per update (and per
floor request), read from ``/proc`` (``pg_backends.py``): fewer statements and round trips show
there rather than in the app's own CPU.

Each ``--app-dir`` (default: this checkout) runs in its own fresh process per round, rounds
interleaved, on a database prepared afresh each time, so two checkouts compare in the same run.
``--profile`` prints a cProfile of the updates of the first app dir instead.

    nice -n 19 .venv/bin/python bench/update_cpu.py --app-dir /work/main --app-dir . --rounds 3
    nice -n 19 .venv/bin/python bench/update_cpu.py --database postgresql+psycopg://…/db
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TAGS = ("vip", "gold", "silver", "course-one", "course-two", "newsletter", "webinar", "trial")


def update_body(rng: random.Random, users: int) -> bytes:
    """One body as ``bench/inbound.py``'s wrk script makes it."""
    user = rng.randint(1, users)
    tags = [rng.choice(TAGS) for _ in range(3)]
    return json.dumps(
        {
            "id": user,
            "first_name": f"First{rng.randint(1, 3)}",
            "last_name": f"Last{user}",
            "email": f"user{user}@example.com",
            "status": "subscribed",
            "tags": [{"id": i, "title": slug, "slug": slug} for i, slug in enumerate(tags, 1)],
        }
    ).encode()


def environ(method: str, query: str, body: bytes = b"") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "CONTENT_TYPE": "application/json" if body else "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def cpu_per_request(app: Any, environs: list[dict[str, Any]]) -> tuple[list[float], int]:
    """CPU seconds of each call, and how many answered other than 2xx (the first such answer
    is printed to stderr)."""
    statuses: list[str] = []
    failure: list[bytes] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    times = []
    clock = time.process_time
    for env in environs:
        started = clock()
        result = app(env, start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        times.append(clock() - started)
        if not failure and not statuses[-1].startswith("2"):
            failure.append(body)
            print(f"first failure: {statuses[-1]} {body[:500]!r}", file=sys.stderr)
    return times, sum(1 for s in statuses if not s.startswith("2"))


def child(args: argparse.Namespace) -> None:
    """One app dir, one fresh process: prepare, warm up, measure, print one JSON line."""
    spec = importlib.util.spec_from_file_location("bench_inbound", BENCH / "inbound.py")
    inbound = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(inbound)  # type: ignore[union-attr]
    app_dir = str(Path(args.app_dir[0]).resolve())
    sys.path[:] = [app_dir, str(BENCH)] + [p for p in sys.path if p not in (str(BENCH.parent), app_dir)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-update-cpu-"))
    database_url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    key = inbound.prepare_database(database_url, workdir / "instance")
    os.environ.update(DATABASE_URL=database_url, SECRET_KEY=inbound.SECRET_KEY, FLOOR_ACCESS_KEY=key)
    from bridge import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": inbound.SECRET_KEY})
    import floor_app

    floor = floor_app.create_floor_app()
    rng = random.Random(21)
    query = f"wpf_action=update&access_key={key}"
    n = args.n

    def updates(count: int) -> list[dict[str, Any]]:
        return [environ("POST", query, update_body(rng, inbound.USERS)) for _ in range(count)]

    warm = max(n // 10, 50)
    cpu_per_request(app, updates(warm))
    cpu_per_request(floor, updates(warm))
    cpu_per_request(app, [environ("GET", "") for _ in range(warm)])
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting on the database
        batch = updates(n)
        profiler.enable()
        cpu_per_request(app, batch)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.sort).print_stats(args.top)
        return
    from pg_backends import backend_cpu, backend_pids
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    probe = create_engine(database_url, poolclass=NullPool)
    result: dict[str, Any] = {"app_dir": app_dir, "backend": database_url.split(":", 1)[0]}
    for name, target, batch in (
        ("update", app, updates(n)),
        ("trivial", app, [environ("GET", "") for _ in range(n)]),
        ("floor", floor, updates(n)),
    ):
        pids = backend_pids(probe)  # the app's and the floor's pooled connections are open by now
        server = backend_cpu(pids)
        times, failed = cpu_per_request(target, batch)
        server = backend_cpu(pids) - server
        result[name] = {
            "median_ms": statistics.median(times) * 1000,
            "mean_ms": statistics.fmean(times) * 1000,
            "server_ms": server / len(batch) * 1000,
        }
        result[name + "_failed"] = failed
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"), help="default: a temp SQLite")
    parser.add_argument("--app-dir", action="append", help="checkout to measure (repeatable; default: this one)")
    parser.add_argument("-n", type=int, default=2000, help="requests per measured route")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the first app dir's updates")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    dirs = args.app_dir or [str(BENCH.parent)]
    base = [sys.executable, __file__, "--child", "-n", str(args.n), "--sort", args.sort, "--top", str(args.top)]
    if args.database:
        base += ["--database", args.database]
    if args.profile:
        return subprocess.call([*base, "--profile", "--app-dir", dirs[0]])
    rows: dict[str, list[dict[str, Any]]] = {d: [] for d in dirs}
    for round_ in range(1, args.rounds + 1):
        for app_dir in dirs:
            completed = subprocess.run([*base, "--app-dir", app_dir], capture_output=True, text=True, check=True)
            out = completed.stdout
            for line in completed.stderr.splitlines():
                if line.startswith("first failure:"):
                    print(f"  {app_dir}: {line}", flush=True)
            result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            rows[app_dir].append(result)
            print(
                f"round {round_} {result['backend']:<10} {app_dir:<28} "
                + " ".join(f"{k}={result[k]['median_ms']:.3f}" for k in ("update", "trivial", "floor"))
                + " ms (median CPU)"
                + (
                    f" server={result['update']['server_ms']:.3f},{result['floor']['server_ms']:.3f} ms (update, floor)"
                    if result["backend"].startswith("postgresql")
                    else ""
                )
                + f"  failed={result['update_failed']}  load={os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for app_dir, results in rows.items():
        for label, pick in (("median", statistics.median), ("min", min)):
            update, trivial, floor = (pick(r[k]["median_ms"] for r in results) for k in ("update", "trivial", "floor"))
            server = ""
            if results[0]["backend"].startswith("postgresql"):
                served = [pick(r[k]["server_ms"] for r in results) for k in ("update", "floor")]
                server = f" server_update_ms={served[0]:.3f} server_floor_ms={served[1]:.3f}"
            print(
                f"update_cpu app_dir={app_dir} over_rounds={label} update_ms={update:.3f} trivial_ms={trivial:.3f} "
                f"floor_ms={floor:.3f} trivial/update={trivial / update:.2f} floor/update={floor / update:.2f}{server}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
