"""``bridge worker --concurrency N [--processes P]``: how N deliveries in flight are spread over
processes (one process tops out near one core), and the mistakes the command refuses."""

from __future__ import annotations

import json

import pytest

from bridge.delivery import supervisor as worker_supervisor
from bridge.delivery.supervisor import split_concurrency


@pytest.mark.parametrize(
    ("concurrency", "cores", "threads"),
    [
        (1, 2, [1]),  # the default: one delivery, one process
        (4, 8, [4]),  # a few threads waiting on CRMs do not fill a core
        (15, 2, [15]),
        (16, 2, [8, 8]),
        (32, 2, [16, 16]),  # the issue's --concurrency 32 on a two-core machine
        (33, 2, [17, 16]),  # the remainder goes to the first processes
        (32, 1, [32]),  # never more processes than cores
        (64, 16, [8] * 8),  # at least 8 deliveries per process
    ],
)
def test_the_default_spreads_concurrency_over_the_usable_cores(concurrency, cores, threads):
    assert split_concurrency(concurrency, cores=cores) == threads
    assert sum(threads) == concurrency


def test_explicit_processes_share_the_concurrency():
    assert split_concurrency(32, 1, cores=8) == [32]
    assert split_concurrency(10, 3, cores=1) == [4, 3, 3]  # asked for: more processes than cores
    with pytest.raises(ValueError, match="at least 3"):
        split_concurrency(2, 3)


@pytest.fixture
def started(monkeypatch):
    """The command's plan, captured instead of run (running it would fork the test process)."""
    plans: list[list[int]] = []

    def run(app, *, threads, once=False):
        plans.append(threads)
        return [{"worker": f"w{n}", "processed": 0} for n, _ in enumerate(threads)]

    monkeypatch.setattr(worker_supervisor, "run_worker_command", run)
    monkeypatch.setattr(worker_supervisor, "usable_cores", lambda: 4)
    return plans


def test_the_command_spreads_its_concurrency_by_default(app, started):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["bridge", "worker", "--concurrency", "32", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert started == [[8, 8, 8, 8]]
    summary = json.loads(result.output)
    assert summary["processed"] == 0 and [w["worker"] for w in summary["workers"]] == ["w0", "w1", "w2", "w3"]

    one = runner.invoke(args=["bridge", "worker", "--concurrency", "32", "--processes", "1", "--once"])
    assert one.exit_code == 0 and started[-1] == [32]
    assert "Worker w0 finished 0 deliveries." in one.output


def test_more_processes_than_deliveries_is_refused(app, started):
    result = app.test_cli_runner().invoke(args=["bridge", "worker", "--processes", "2", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "invalid_argument"
    assert started == []  # nothing ran


def test_the_worker_command_lowers_its_cpu_priority_before_forking(app, monkeypatch):
    """Web requests first on shared cores (issue 21): the command, and so every worker it
    forks, runs ``BRIDGE_WORKER_NICE`` lower (0 in tests: pytest itself runs the command here)."""
    asked: list[int] = []
    monkeypatch.setattr(worker_supervisor.os, "nice", lambda increment: asked.append(increment) or increment)
    app.config["BRIDGE_WORKER_NICE"] = 10
    result = app.test_cli_runner().invoke(args=["bridge", "worker", "--concurrency", "1", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert asked == [10]
