"""`make bench`: every benchmark, on SQLite and (when reachable) PostgreSQL.

Each script prints its figures as ratios against a baseline measured in the same run; this
runner only sequences them. PostgreSQL is used when BENCH_DATABASE_URL is set, or when the
local server at 127.0.0.1:5432 answers (database `test`). ``wpfusion.py`` needs the wp-peer
(shared/peer/setup.sh): without it, it says so and exits 0.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCRIPTS = ("inbound.py", "add.py", "delivery.py", "storm.py", "hostile.py", "wpfusion.py", "batch.py")
# Shorter than a script's own default where that takes minutes: batch.py's push of 10,000 users
# runs one create at a time against a CRM answering in 10 ms (about 2.5 minutes per database);
# its rates and ratios hold at 2,000 (20 import pages, 2,000 pushes).
ARGUMENTS = {"batch.py": ["--count", "2000"]}


def postgres_url() -> str | None:
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"]
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return LOCAL_PG
    except OSError:
        return None


def main() -> int:
    scripts = [name for name in SCRIPTS if (HERE / name).exists()]
    databases = ["sqlite"] + ([pg] if (pg := postgres_url()) else [])
    failures = 0
    for script in scripts:
        for database in databases:
            label = "sqlite" if database == "sqlite" else "postgresql"
            print(f"== {script} on {label}", flush=True)
            extra = [] if database == "sqlite" else ["--database", database]  # no URL: a fresh SQLite file
            command = [sys.executable, str(HERE / script), *ARGUMENTS.get(script, []), *extra]
            result = subprocess.run(command, check=False)
            failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
