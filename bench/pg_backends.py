"""The CPU time PostgreSQL's server processes spent for a bench (read from ``/proc``).

An in-process bench measures its own CPU with ``time.process_time()``; on PostgreSQL part of
the work (parsing, planning, executing, and answering each round trip) happens in the server's
backend processes instead. Reading their ``utime + stime`` before and after a measured stretch
gives the server's share, as steady as the client's figure on a shared machine. Only a server
on this machine can be read (the benches' default, 127.0.0.1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Engine

TICKS = os.sysconf("SC_CLK_TCK")


def backend_pids(engine: Engine) -> list[int]:
    """The server processes of ``engine``'s database (none when it is not PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        query = "select pid from pg_stat_activity where datname = current_database()"
        return [row[0] for row in connection.execute(text(query))]


def backend_cpu(pids: Iterable[int]) -> float:
    """Seconds of CPU (user + system) the processes ``pids`` have used so far; a process that
    has exited counts as nothing."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS
