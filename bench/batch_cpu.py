"""CPU per imported contact (or pushed user), in-process: what ``bench/batch.py``'s rates are made of.

    .venv/bin/python bench/batch_cpu.py [--database URL] [--count 2000] [--runs 3]
                                        [--app-dir CHECKOUT] [--profile N] [--operation push]

A fake FluentCRM in a process of its own (``crm_process.py``, no delay) lists ``--count``
tagged contacts; each run is a fresh Python process that creates a fresh schema, starts an
``import`` batch and runs a delivery worker in-process (``DeliveryWorker.run(once=True)``, the
default concurrency of 1) until the batch is done. It prints the CPU time of that process per
contact (``time.process_time()``: the dispatcher, the page jobs, the listing ahead) and, on
PostgreSQL, the CPU time of the server's backends that served it (read from ``/proc``: the
parsing and planning of the statements), medians of ``--runs``. ``--operation push`` pushes
``--count`` local users to the fake instead (one create each).

``--app-dir`` runs the same measurement with another checkout's code, alternating with this
one in the same run (A/B). ``--profile N`` prints the N costliest functions of one extra run of
each checkout, profiled on the worker's threads and the listing ahead with their own CPU clocks
(``BENCH_PROFILE_SORT=tottime`` to sort by own time); ``--statements`` lists the statements of
one extra run, per page.
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

TAG = "bench"

CHILD = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
from bridge import create_app
from bridge.delivery import batches
from bridge.delivery.worker import DeliveryWorker
from bridge.extensions import db
from bridge.models import Batch

sys.path.insert(0, os.environ["BENCH_DIR"])
from child_probes import count_statements, measured, profiler, with_probes
from site_setup import fresh_site

app = create_app()
profiles = []
if os.environ.get("BENCH_PROFILE"):
    profiled = profiler(profiles)
    DeliveryWorker._run_one = profiled(DeliveryWorker._run_one)
    DeliveryWorker._record_and_claim = profiled(DeliveryWorker._record_and_claim)
    from bridge.inbound import batch_import
    batch_import._Prefetch.run = profiled(batch_import._Prefetch.run)  # the listing ahead
operation = os.environ["BENCH_OPERATION"]
with fresh_site(json.loads(os.environ["BENCH_CRM"])):
    if operation == "push":
        from sqlalchemy import insert
        from bridge.models import User
        count = int(os.environ["BENCH_COUNT"])
        run = os.urandom(4).hex()  # the fake CRM outlives a run: new emails, so every push is a create
        rows = [{"email": f"user{n}-{run}@example.com", "username": f"user{n}-{run}", "meta": {}} for n in range(count)]
        db.session.execute(insert(User), rows)
    params = {"tag": "bench"} if operation == "import" else {}
    batch_id = batches.start_batch(operation, "fluent", params).id
with app.app_context():
    worker = DeliveryWorker(app, concurrency=1)
    statements = count_statements(db.engine) if os.environ.get("BENCH_STATEMENTS") else {}
    _done, cost = measured(lambda: worker.run(once=True), db.engine)
    batch = db.session.get(Batch, batch_id)
    result = with_probes({"status": batch.status, "done": batch.done, "created": batch.created, **cost},
                         statements, profiles)
    db.session.remove()
    db.engine.dispose()
print(json.dumps(result))
"""


def one_run(app_dir: Path, env: dict[str, str], profile: int = 0) -> dict[str, Any]:
    env = {**env, "BENCH_PROFILE": str(profile)} if profile else env
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=app_dir, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"run in {app_dir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file each run)")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--operation", choices=["import", "push"], default="import")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--app-dir", help="also measure this checkout, alternating (A/B)")
    parser.add_argument("--profile", type=int, default=0, help="print the N costliest functions of a profiled run")
    parser.add_argument("--statements", action="store_true", help="print the statements of one more run, per page")
    args = parser.parse_args()
    from crm_process import FakeCrmProcess

    checkouts = {"this": HERE.parent}
    if args.app_dir:
        checkouts["other"] = Path(args.app_dir).resolve()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
    seeded = args.count if args.operation == "import" else 0
    with FakeCrmProcess(0.0, contacts=seeded, tag=TAG) as crm:
        for _ in range(args.runs):
            for name, app_dir in checkouts.items():
                workdir = tempfile.mkdtemp(prefix="bench-batch-cpu-")
                env = {
                    **os.environ,
                    "DATABASE_URL": args.database or f"sqlite:///{workdir}/bench.sqlite3",
                    "BRIDGE_INSTANCE_PATH": workdir,
                    "SECRET_KEY": "bench-secret",
                    "BRIDGE_ALLOW_PRIVATE_TARGETS": "1",
                    "BENCH_CRM": json.dumps(crm.settings),
                    "BENCH_OPERATION": args.operation,
                    "BENCH_COUNT": str(args.count),
                    "BENCH_DIR": str(HERE),
                }
                run = one_run(app_dir, env)
                if run["done"] != args.count or run["status"] != "succeeded":
                    raise RuntimeError(f"{name}: the import did not finish: {run}")
                results[name].append(run)
        if args.profile:
            for name, app_dir in checkouts.items():
                env["DATABASE_URL"] = args.database or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
                print(f"== profile of {name} ({app_dir})\n{one_run(app_dir, env, args.profile)['profile']}")
        if args.statements:
            pages = -(-args.count // 100)
            for name, app_dir in checkouts.items():
                env["DATABASE_URL"] = args.database or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
                counted = one_run(app_dir, {**env, "BENCH_STATEMENTS": "1"})["statements"]
                print(f"== statements of {name}, per page of 100: {sum(n for _s, n in counted) / pages:.1f}")
                for statement, number in counted:
                    print(f"{number / pages:6.2f}  {statement}")
    backend = "postgresql" if (args.database or "").startswith("postgresql") else "sqlite"
    figures = {}
    for name, runs in results.items():
        per = {key: statistics.median(r[key] for r in runs) / args.count * 1e6 for key in ("cpu_s", "server_cpu_s")}
        wall = statistics.median(r["wall_s"] for r in runs)
        figures[name] = per
        print(
            f"batch_cpu backend={backend} operation={args.operation} checkout={name} count={args.count} "
            f"runs={args.runs} cpu_us_per_item={per['cpu_s']:.0f} server_cpu_us_per_item={per['server_cpu_s']:.0f} "
            f"wall_s={wall:.2f} load={os.getloadavg()[0]:.2f}",
            flush=True,
        )
    if "other" in figures and figures["other"]["cpu_s"]:
        ratio = figures["this"]["cpu_s"] / figures["other"]["cpu_s"]
        print(f"batch_cpu backend={backend} this_over_other_cpu={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
