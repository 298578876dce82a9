"""What the in-process CPU benches' measured children share (``batch_cpu.py``, ``drain_cpu.py``).

Each child is a fresh ``python -c`` in the checkout it measures, which imports this module
from the bench folder (``BENCH_DIR``; the server's CPU is ``pg_backends.py``): the statements
it ran, and profiles of chosen methods, each on its own thread's CPU clock. Nothing here
imports the app: the child passes in what it measures.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable
from typing import Any


def count_statements(engine: Any, width: int = 90) -> dict[str, int]:
    """From now on, how many times each statement (its first ``width`` characters) runs."""
    from sqlalchemy import event

    seen: dict[str, int] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        key = " ".join(statement.split())[:width] + (" [many]" if executemany else "")
        seen[key] = seen.get(key, 0) + 1

    return seen


def profiler(profiles: list[cProfile.Profile]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator for methods to profile: each call on its thread's own CPU clock, its profile
    kept in ``profiles``."""

    def profiled(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            profile = cProfile.Profile(time.thread_time)
            profiles.append(profile)
            profile.enable()
            try:
                return method(self, *args, **kwargs)
            finally:
                profile.disable()

        return wrapper

    return profiled


def profile_text(profiles: list[cProfile.Profile], lines: int) -> str:
    """The ``lines`` costliest functions over ``profiles`` (``BENCH_PROFILE_SORT``, default
    cumulative; ``BENCH_PROFILE_DUMP``: also saved there for ``pstats``)."""
    out = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=out)
    for profile in profiles[1:]:
        stats.add(profile)
    if os.environ.get("BENCH_PROFILE_DUMP"):
        stats.dump_stats(os.environ["BENCH_PROFILE_DUMP"])
    stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative"))
    stats.print_stats(lines)
    return out.getvalue()


def measured(run: Callable[[], Any], engine: Any) -> tuple[Any, dict[str, float]]:
    """``run()``'s result, and what it cost: this process's CPU (``cpu_s``), the database
    server's backends' CPU (``server_cpu_s``: PostgreSQL on this machine, else 0, see
    ``pg_backends.py``; a backend that opened during the run counts from its start) and the wall
    time (``wall_s``)."""
    from pg_backends import backend_cpu, backend_pids

    pids = backend_pids(engine)
    server = backend_cpu(pids)
    cpu, wall = time.process_time(), time.perf_counter()
    value = run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server = backend_cpu(set(pids) | set(backend_pids(engine))) - server
    return value, {"cpu_s": cpu, "server_cpu_s": server, "wall_s": wall}


def with_probes(result: dict[str, Any], statements: dict[str, int], profiles: list[cProfile.Profile]) -> dict[str, Any]:
    """``result`` with the statements counted (most frequent first) and the profile's text
    (``BENCH_PROFILE`` lines), when the child collected them."""
    if statements:
        result["statements"] = sorted(statements.items(), key=lambda kv: -kv[1])
    if profiles:
        result["profile"] = profile_text(profiles, int(os.environ["BENCH_PROFILE"]))
    return result
