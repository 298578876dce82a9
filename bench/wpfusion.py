"""crm-bridge side by side with WP Fusion against the same real FluentCRM (issue 21, c=4).

    .venv/bin/python bench/wpfusion.py [--database URL] [--contacts 40] [--duration 10] [--rounds 1]

``--rounds 3`` on a busy machine: each round measures everything once, who goes first
alternates, and a ratio is the median of the rounds' ratios.

Needs the wp-peer (``shared/peer/setup.sh``; addresses in ``/opt/wp-peer/env``): site A is the
FluentCRM, site B runs WP Fusion against it. Without the peer (no env file, or A or B not
answering) this prints why and exits 0, so ``make bench`` passes on a machine without it.

1. Makes ``--contacts`` contacts in FluentCRM (REST API) with the tag ``customer``, then runs
   ``wpf_action=add`` for each on both sides (4 at a time), so both have a linked user per
   contact. crm-bridge serves a fresh instance as README's production command does (gunicorn
   ``-w 4 --preload``; ``--threads 4`` on PostgreSQL) with one FluentCRM connection to site A.
2. Measures, for ``--duration`` seconds each at 4 connections (wrk, one thread walking the
   contacts round robin, so no two requests in flight name one contact: WP Fusion ignores a
   webhook for a contact it is still processing, with a 200), on both sides:
   - ``id_only``: ``update&contact_id=ID``, no body: the site reads the contact from the CRM
     (crm-bridge: one read with tags and custom values; WP Fusion: ``load_contact`` and
     ``get_tags``, two reads);
   - ``body``: ``update`` with FluentCRM's webhook body (the subscriber's ``id``, fields and
     tags as objects; what ``FluentCrmAdapter.parse`` and WP Fusion's ``format_post_data``
     both read): crm-bridge needs no CRM call, WP Fusion still reads the fields
     (``pull_user_meta``) and takes the tags from the body;
   - ``async``: ``update&contact_id=ID&async=true``: accepting the webhook. crm-bridge's
     worker is off (``BRIDGE_WORKER=off``, as ``bench/inbound.py --async``): its rate is the
     rate of accepting (202), repeats for a queued contact answered with the queued job's id;
     WP Fusion queues two batch items and dispatches its background process, which then runs
     on site B (and reads the CRM) during and after the measurement.
   And the ceiling of ``id_only``: FluentCRM's own rate for crm-bridge's read
   (``GET subscribers/ID`` with tags and custom values, Basic auth), measured the same way.
3. Every answer is checked (status and body: WP Fusion answers 200 to failures too): only the
   right answers count as throughput, the others are printed as errors per side.

Prints a table, then one machine-readable line per scenario and the targets of issue 21
(``id_only`` at least 2 times WP Fusion's rate, ``body`` 20 times). Exits 1 when crm-bridge
answered wrongly. Contacts and WordPress users it makes stay in the peer (their emails carry a
random suffix). Run under ``nice``, crm-bridge gets the lower priority: the peer's PHP servers
and database keep theirs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "live"))
sys.path.insert(0, str(HERE))

import inbound as inbound_bench  # noqa: E402 (bench scripts are not a package)
from wp_peer import PEER_ENV, FluentCrm, read_peer_env  # noqa: E402

CONCURRENCY = 4  # issue 21's c=4
TAG = "customer"  # one of the tags the peer's FluentCRM is set up with
TARGETS = {"id_only": 2.0, "body": 20.0}  # crm-bridge / WP Fusion, issue 21
READ_QUERY = "with%5B%5D=tags&with%5B%5D=subscriber.custom_values"  # crm-bridge's one read

# One wrk thread walks ``paths`` (and ``bodies``) round robin; ``response`` counts answers that
# are not 2xx or lack ``marker``; ``done`` prints the counts in bench/inbound.py's format. Read
# errors are apart: PHP's built-in server (the peer) closes the connection after every answer,
# which wrk counts as one; an answer cut short is not a completed request, so not counted.
WRK_SCRIPT = r"""
local paths = {%(paths)s}
local bodies = {%(bodies)s}
local headers = {%(headers)s}
local marker = %(marker)s
local n = 0
wrong = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  n = n %% #paths + 1
  return wrk.format("%(method)s", paths[n], headers, bodies[n])
end

response = function(status, headers, body)
  if status < 200 or status > 299 or not string.find(body, marker, 1, true) then
    wrong = wrong + 1
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors
  local wrong_total = 0
  for _, thread in ipairs(threads) do
    wrong_total = wrong_total + thread:get("wrong")
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"non_2xx": %%d, "socket_errors": %%d, "read_errors": %%d, "wrong": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.write + errors.timeout, errors.read, wrong_total))
end
"""


@dataclass
class Side:
    """One webhook receiver: where it listens, its access key, and the text each scenario's
    right answer contains."""

    name: str
    url: str
    key: str
    markers: dict[str, str]


@dataclass
class Scenario:
    name: str
    query: str  # appended to the webhook URL; ``{id}`` is the contact id
    with_body: bool = False


SCENARIOS = [
    Scenario("id_only", "wpf_action=update&contact_id={id}"),
    Scenario("body", "wpf_action=update", with_body=True),
    Scenario("async", "wpf_action=update&contact_id={id}&async=true"),
]
BRIDGE_MARKERS = {"id_only": '"matched":true', "body": '"matched":true', "async": '"queued":true'}
# WP Fusion answers through ``wp_die``: HTML, or JSON (tags stripped) to a JSON request. Its
# failures ("No matching user found", "Doing it wrong", "Abort") are 200s too.
WPF_MARKERS = {"id_only": "Updated user meta", "body": "Updated user meta", "async": "pushed to async queue"}


def lua(value: str) -> str:
    """A Lua string literal (JSON's escapes of ASCII text are Lua's)."""
    return json.dumps(value, ensure_ascii=True)


def wrk_run(
    url: str,
    paths: list[str],
    marker: str,
    args: argparse.Namespace,
    *,
    method: str = "POST",
    bodies: list[str] | None = None,
    headers: dict[str, str] | None = None,
    duration: int | None = None,
) -> dict[str, Any]:
    """``method`` on ``paths`` in turn (with ``bodies`` in turn) at CONCURRENCY: the result of
    ``inbound_bench.run_wrk`` plus ``ok`` (right answers), ``ok_rps`` and ``errors``."""
    script = WRK_SCRIPT % {
        "paths": ", ".join(lua(p) for p in paths),
        "bodies": ", ".join(lua(b) for b in bodies or []),
        "headers": ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in (headers or {}).items()),
        "marker": lua(marker),
        "method": method,
    }
    result = inbound_bench.run_wrk(url, script, connections=CONCURRENCY, duration=duration or args.duration, threads=1)
    result["ok"] = result["requests"] - result["wrong"]
    result["ok_rps"] = result["ok"] / (result["duration_us"] / 1_000_000)
    result["errors"] = result["wrong"] + result["socket_errors"]
    return result


# -- the peer ---------------------------------------------------------------------------------


def peer_unreachable(env: dict[str, str] | None) -> str | None:
    """Why the peer cannot be used, or None when FluentCRM and WP Fusion both answer."""
    if env is None:
        return f"no {PEER_ENV} (set the peer up with shared/peer/setup.sh)"
    try:
        crm = FluentCrm(env).call("GET", "/tags", params={"per_page": 1})
        if crm.status_code != 200:
            return f"FluentCRM at {env['A_REST']} answered {crm.status_code}"
        wpf = requests.post(f"{env['B_URL']}/?wpf_action=test&access_key={env['WPF_ACCESS_KEY']}", timeout=30)
        if wpf.status_code != 200 or '"success":true' not in wpf.text:
            return f"WP Fusion at {env['B_URL']} answered {wpf.status_code} to wpf_action=test"
    except (requests.RequestException, KeyError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None


def make_contacts(crm: FluentCrm, count: int) -> list[dict[str, Any]]:
    """``count`` new contacts tagged TAG (4 created at a time), as FluentCRM answered them."""
    tag = next(t for t in crm.tags() if t["slug"] == TAG)
    run = secrets.token_hex(3)

    def create(n: int) -> dict[str, Any]:
        body = {
            "email": f"wpf-bench-{run}-{n}@example.com",
            "first_name": "Bench",
            "last_name": f"Contact{n}",
            "status": "subscribed",
            "tags": [tag["id"]],
        }
        created = crm.call("POST", "/subscribers", json=body)
        created.raise_for_status()
        return {**created.json()["contact"], "tags": [{k: tag[k] for k in ("id", "title", "slug")}]}

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(create, range(count)))


def webhook_body(contact: dict[str, Any]) -> str:
    """FluentCRM's outgoing-webhook body for the contact (tests/fixtures: ``with_tags.json``)."""
    fields = ("id", "first_name", "last_name", "email", "status", "tags")
    return json.dumps({name: contact[name] for name in fields})


def add_all(side: Side, contacts: list[dict[str, Any]], answered: Callable[[requests.Response], bool]) -> list[float]:
    """``wpf_action=add`` for every contact, 4 at a time; each answer's milliseconds. Raises
    when one is not ``answered`` rightly: the measurements need every user linked."""

    def add(contact: dict[str, Any]) -> float:
        started = time.perf_counter()
        response = requests.post(
            f"{side.url}/?wpf_action=add&access_key={side.key}&contact_id={contact['id']}", timeout=60
        )
        if not answered(response):
            raise RuntimeError(
                f"{side.name} add of contact {contact['id']}: {response.status_code} {response.text[:300]}"
            )
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(add, contacts))


# -- crm-bridge -------------------------------------------------------------------------------


def serve_bridge(env: dict[str, str], database_url: str, workdir: Path, args: argparse.Namespace) -> tuple[Any, Side]:
    """A fresh crm-bridge instance with one FluentCRM connection to site A, under gunicorn."""
    os.environ["BRIDGE_ALLOW_PRIVATE_TARGETS"] = "1"  # site A is on loopback
    settings = {"base_url": env["A_URL"], "username": env["A_APP_USER"], "app_password": env["A_APP_PASSWORD"]}
    instance = workdir / "instance"
    key = inbound_bench.prepare_database(database_url, instance, users=0, settings=settings)
    server_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BRIDGE_INSTANCE_PATH": str(instance),
        "SECRET_KEY": inbound_bench.SECRET_KEY,
        "BRIDGE_WORKER": "off",
    }
    port = inbound_bench.free_port()
    log = open(workdir / "gunicorn.log", "w")  # noqa: SIM115 (open as long as this process)
    server = inbound_bench.start_gunicorn("app:create_app()", inbound_bench.REPO, server_env, port, args, log)
    url = f"http://127.0.0.1:{port}"
    inbound_bench.wait_until_serving(url + "/")
    return server, Side("crm-bridge", url, key, BRIDGE_MARKERS)


# -- measuring and reporting ------------------------------------------------------------------


def measure(sides: list[Side], env: dict[str, str], contacts: list[dict[str, Any]], args: argparse.Namespace) -> dict:
    """Per round: the CRM's read, then each scenario on each side in turn. ``{name: [results]}``
    with names ``ceiling`` and ``<scenario>/<side>``."""
    ids = [str(c["id"]) for c in contacts]
    bodies = [webhook_body(c) for c in contacts]
    auth = base64.b64encode(f"{env['A_APP_USER']}:{env['A_APP_PASSWORD']}".encode()).decode()
    read_paths = [f"/wp-json/fluent-crm/v2/subscribers/{i}?{READ_QUERY}" for i in ids]
    read_headers = {"Authorization": f"Basic {auth}"}
    json_headers = {"Content-Type": "application/json"}

    def run(side: Side, scenario: Scenario, duration: int | None = None) -> dict[str, Any]:
        paths = [f"/?access_key={side.key}&" + scenario.query.replace("{id}", i) for i in ids]
        extra = {"bodies": bodies, "headers": json_headers} if scenario.with_body else {}
        return wrk_run(side.url + "/", paths, side.markers[scenario.name], args, duration=duration, **extra)

    if args.warmup:  # unmeasured: every gunicorn worker imports, connects and reads the CRM once
        for side in sides:
            run(side, SCENARIOS[0], args.warmup)
    results: dict[str, list[dict[str, Any]]] = {}
    for number in range(args.rounds):
        ceiling = wrk_run(env["A_URL"] + "/", read_paths, '"subscriber"', args, method="GET", headers=read_headers)
        results.setdefault("ceiling", []).append(ceiling)
        for scenario in SCENARIOS:
            for side in sides if number % 2 == 0 else sides[::-1]:  # who goes first alternates
                results.setdefault(f"{scenario.name}/{side.name}", []).append(run(side, scenario))
    return results


def paired_ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> float:
    """The median over rounds of each round's ratio (measured minutes apart, not a whole run
    apart, on a machine whose load drifts); nan when the other side had a round without a right
    answer (no comparison: a target is then missed)."""
    if not all(t["ok_rps"] for t in theirs):
        return float("nan")
    return statistics.median(o["ok_rps"] / t["ok_rps"] for o, t in zip(ours, theirs, strict=True))


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    median = statistics.median
    return {
        "rps": median(r["ok_rps"] for r in runs),
        "p50_ms": median(r["p50_us"] for r in runs) / 1000,
        "p99_ms": median(r["p99_us"] for r in runs) / 1000,
        "errors": sum(r["errors"] for r in runs),
        "answers": sum(r["requests"] for r in runs),
    }


def cells(figures: dict[str, float]) -> str:
    """rps, p50/p99 and errors of one side, as a table's cells."""
    latency = f"{figures['p50_ms']:.1f}/{figures['p99_ms']:.1f}"
    return f"{figures['rps']:>8.1f} {latency:>13} {figures['errors']:>6}"


def report(results: dict[str, list[dict[str, Any]]], header: str) -> bool:
    """Print the table, the machine-readable lines and the targets; True when crm-bridge
    answered every request rightly."""
    ceiling = summary(results["ceiling"])
    print(header)
    side_heads = f"{'rps':>8} {'p50/p99 ms':>13} {'errors':>6}"
    print(f"{'':<10} {'crm-bridge':^29} | {'WP Fusion':^29} |")
    print(f"{'scenario':<10} {side_heads} | {side_heads} | {'ratio':>6}")
    lines, clean = [], True
    for scenario in SCENARIOS:
        our_runs, their_runs = results[f"{scenario.name}/crm-bridge"], results[f"{scenario.name}/WP Fusion"]
        ours, theirs = summary(our_runs), summary(their_runs)
        ratio = paired_ratio(our_runs, their_runs)
        clean = clean and not ours["errors"]
        print(f"{scenario.name:<10} {cells(ours)} | {cells(theirs)} | {ratio:>6.2f}")
        line = (
            f"wpfusion_{scenario.name} bridge_rps={ours['rps']:.1f} bridge_p50_ms={ours['p50_ms']:.1f} "
            f"bridge_p99_ms={ours['p99_ms']:.1f} bridge_errors={ours['errors']}/{ours['answers']} "
            f"wpf_rps={theirs['rps']:.1f} wpf_p50_ms={theirs['p50_ms']:.1f} wpf_p99_ms={theirs['p99_ms']:.1f} "
            f"wpf_errors={theirs['errors']}/{theirs['answers']} ratio={ratio:.2f}"
        )
        if scenario.name == "id_only":
            line += f" of_crm_read={paired_ratio(our_runs, results['ceiling']):.2f}"
        lines.append(line)
        if scenario.name in TARGETS:
            lines.append(inbound_bench.target(f"{scenario.name}/wpfusion", ratio, TARGETS[scenario.name]))
    print(
        f"{'crm read':<10} {cells(ceiling)} | FluentCRM's own GET subscribers/ID at c={CONCURRENCY}: id_only's ceiling"
    )
    print(
        f"wpfusion_crm_read rps={ceiling['rps']:.1f} p50_ms={ceiling['p50_ms']:.1f} "
        f"p99_ms={ceiling['p99_ms']:.1f} errors={ceiling['errors']}/{ceiling['answers']}"
    )
    print("\n".join(lines))
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database", default=os.environ.get("DATABASE_URL"), help="SQLAlchemy URL (default: temp SQLite)"
    )
    parser.add_argument("--contacts", type=int, default=40, help="contacts made in FluentCRM and added on both sides")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measurement")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every measurement (medians)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured id_only load per side first")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (README: -w 4)")
    parser.add_argument("--threads", type=int, help="gunicorn threads (README: 4 on PostgreSQL, 1 on SQLite)")
    args = parser.parse_args()
    env = read_peer_env()
    reason = peer_unreachable(env)
    if reason or env is None:
        print(f"wpfusion: skipped, the WP Fusion peer is not reachable: {reason}")
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (`make bench` installs it with apt; or apt-get install -y wrk)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="bench-wpfusion-"))
    database_url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    if args.threads is None:
        args.threads = 1 if database_url.startswith("sqlite") else 4
    load_before = os.getloadavg()
    server, bridge = serve_bridge(env, database_url, workdir, args)
    wpf = Side("WP Fusion", env["B_URL"], env["WPF_ACCESS_KEY"], WPF_MARKERS)
    try:
        contacts = make_contacts(FluentCrm(env), args.contacts)
        bridge_adds = add_all(bridge, contacts, lambda r: r.status_code == 200 and '"user_id"' in r.text)
        wpf_adds = add_all(wpf, contacts, lambda r: r.status_code == 200 and "User imported with ID" in r.text)
        results = measure([bridge, wpf], env, contacts, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
    backend = database_url.split(":", 1)[0].split("+", 1)[0]
    load = " ".join(f"{a:.2f}" for a in os.getloadavg())
    header = (
        f"# wpfusion backend={backend} workers={args.workers} threads={args.threads} contacts={args.contacts} "
        f"c={CONCURRENCY} duration={args.duration}s rounds={args.rounds} "
        f"load_before={' '.join(f'{a:.2f}' for a in load_before)} load_after={load} log={workdir / 'gunicorn.log'}\n"
        f"# setup add p50 ms (c={CONCURRENCY}): crm-bridge {statistics.median(bridge_adds):.0f}, "
        f"WP Fusion {statistics.median(wpf_adds):.0f}"
    )
    if report(results, header):
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"crm-bridge answered wrongly: see {workdir / 'gunicorn.log'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
