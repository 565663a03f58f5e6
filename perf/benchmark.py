"""``make benchmark``: speed, request and memory figures of the expiration-reminder worker, side by side, with
their goals (issue 8). Prints a report and writes it as JSON (``.benchmark/benchmark.json``); asserts nothing.

Everything runs here over loopback: the stand-ins (LMS, license-manager, Braze) in one child process, AWS's
DynamoDB Local (the ledger's engine) in another, moto (the giant simulation's queue) in a third, the workers in
this one (see ``perf/fleet.py`` and ``perf/memory.py``).

1. Cold start: ``import worker`` (the handler module) against ``import boto3``, each in a fresh interpreter in a
   Lambda-like environment (the runtime's variables set, Powertools tracing on so the X-Ray SDK loads as in
   Lambda), rounds interleaved. Goal: the handler at most 2x boto3.
2. The expiration rule alone: decisions per second (no goal).
3. Requests per 50 reminders, from section 4's concurrency-1 run on DynamoDB Local (no retries there): Braze
   (goal: at most 2) and DynamoDB (every HTTP request botocore sends, counted through botocore's history
   recorder, so any ledger implementation, pynamodb or plain botocore, is counted the same way; no goal).
4. Throughput: N reminders (default 10,000) over 20 enterprises, Braze stand-in latency 50 ms (threads taking
   enterprises from one queue, each with its own Services, like concurrent Lambda workers):
   - the real ledger on DynamoDB Local (the template's table, ``AWS_ENDPOINT_URL_DYNAMODB``), at concurrency 20
     and 1. Just before and just after the concurrency-20 run the engine's time per request is measured on the
     same engine, one request at a time, with the service's own ledger (a 50-key claim transaction, a 50-key
     record transaction, a 100-key BatchGetItem of ``sent()``; the mean of both); times the requests the run made,
     that is the floor DynamoDB
     Local sets on this machine (it serves one transaction at a time; DynamoDB in AWS does not). Goal: the run
     within 1.5x that floor;
   - a ledger double shared by the workers, with and without DynamoDB's per-request latency as
     ``perf/giant.py`` models it (10 ms a request the real ledger would make, waited in parallel, as DynamoDB in
     AWS serves them): what the service does when the ledger costs what DynamoDB costs, or nothing;
   - license-manager's own pattern (contract section 5) replayed against the same Braze stand-in: sequential,
     per batch of 25 reminders three alias-step calls and one trigger. Goal: concurrency 20 on the ledger
     double with DynamoDB's latency at least 20x faster than the replay.
   The ideal bound (Braze requests x latency / concurrency) and each run's ratio to it; CPU seconds of this
   process, DynamoDB Local and the stand-ins show what bounds a run (this process's threads share one GIL).
   ``--moto`` also runs the concurrency-20 fleet with its ledger on moto, this section's previous engine, once:
   moto copies the ledger table once per transaction item (a patch in devstack made that bearable until the
   ledger moved to DynamoDB Local), so the run takes minutes and fails sends on read timeouts.
5. Peak RSS growth of one worker for one enterprise of 20,000 and of 200,000 activated licenses (fresh child
   process, a ledger double that keeps nothing). Goal: within 5 MiB of each other (bounded by a page, not N).
6. The scaled giant-enterprise simulation (``perf/giant.py``): one enterprise of 200,000 due reminders (the
   largest memory enterprise) through the work queue, split into continuation messages that the template's
   workers share, every AWS latency and the function's timeout x 0.2, the wall time scaled back; then again
   with a 90 s timeout, so workers hand their rest on at deadlines. Goal: within 15 minutes in AWS terms, every
   reminder sent once, no failed message, no DLQ, no error notification.
7. Post-expiration emails (``perf/plan_expiration.py``): the real job over enterprises of plans that expired two
   days ago, with renewed learners among them, on in-process stand-ins; Braze requests per 50 emails (goal: at
   most 2), and a second run an hour later that sends nothing and makes no Braze request.

8. The cutover importer (``license-notifications import-sent``, issue 13): a licenses export of N rows (default
   10,000; a ``mysql --batch`` TSV, every row with a reminder date, every tenth with a post-expiration email
   date too) read, checked and written into a fresh ledger table on DynamoDB Local (its own process), then
   imported again (every key already there). Rows per second, and what that makes of a 100,000-row file (no goal:
   the local engine, one transaction at a time, is the bound, as in section 4). The export's plans expired 15 days
   before the wall clock's today, so their records' TTL lies ahead (DynamoDB Local deletes expired items).

``--quick`` runs a smaller version in a few minutes (2,000 reminders, 2,000 / 20,000 licenses, 2,000 import
rows, 3 cold-start rounds); ``--rounds`` repeats the throughput runs, interleaved; ``--skip`` leaves sections out. The JSON's
directory holds a ``.gitignore`` of its own, so it never shows up in ``git status``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.fakes import InMemoryLedger  # the ledger double the unit tests use

from perf.fleet import (
    LICENSE_MANAGER_BATCH,
    LICENSE_MANAGER_CALLS,
    NOW,
    Calibration,
    FleetResult,
    Group,
    LedgerEngine,
    Moto,
    ReplayResult,
    StandIns,
    apply_env,
    replay_license_manager,
    run_fleet,
)
from perf.giant import DYNAMODB_SECONDS, LatentLedger, print_giant, simulate
from perf.memory import peak_rss_run
from perf.plan_expiration import measure as plan_expiration_measure
from perf.plan_expiration import print_figure as print_plan_expiration

ROOT = Path(__file__).resolve().parent.parent

OUTPUT = ROOT / ".benchmark" / "benchmark.json"
ENTERPRISES = 20
BRAZE_LATENCY = 0.050
GOAL_COLD_START_RATIO = 2.0
GOAL_BRAZE_PER_50 = 2.0
GOAL_VS_LICENSE_MANAGER = 20.0  # the ledger double + DynamoDB's latency per request
GOAL_X_FLOOR = 1.5  # the ledger on DynamoDB Local: wall time / the floor the engine sets
GOAL_RSS_SPREAD_MIB = 5.0
WARM_UP_LICENSES = 1_000
GIANT_SCALE = 0.2  # every AWS time x this in the giant-enterprise simulation (perf/giant.py)
GIANT_SHORT_TIMEOUT = 90.0  # a second giant run with this function timeout (AWS seconds): hand-offs at deadlines


# ------------------------------------------------------------------------------------------------ helpers
def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def say(text: str = "") -> None:
    print(text, flush=True)


class ErrorLog(logging.Handler):
    """Keeps the service's error log lines out of the report, counted (shown under the run they happened in)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages[record.getMessage()[:160]] += 1

    def take(self) -> Counter[str]:
        taken, self.messages = self.messages, Counter()
        return taken


def quiet_service_logs() -> ErrorLog:
    handler = ErrorLog()
    logger = logging.getLogger("license_notifications")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.ERROR)
    return handler


# ----------------------------------------------------------------------------------------------- cold start
def lambda_environment() -> dict[str, str]:
    """What the Lambda runtime sets for the worker (plus the template's plain Powertools settings)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "functions" / "worker"), str(ROOT / "layers" / "shared")]),
        "AWS_LAMBDA_FUNCTION_NAME": "license-notifications-worker",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "worker"),
        "_HANDLER": "worker.lambda_handler",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "POWERTOOLS_TRACE_DISABLED": "false",
    }
    try:
        from devstack.aws import load_template

        variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    except Exception:  # the template's layout changed: the runtime's variables above still apply
        variables = {}
    env.update({k: v for k, v in variables.items() if k.startswith("POWERTOOLS_") and isinstance(v, str)})
    return env


def _import_seconds(module: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds inside the interpreter for ``import module``, seconds of the whole process)."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        f"import {module}\n"
        "elapsed = time.perf_counter() - t\n"
        f"assert {module!r} != 'worker' or 'aws_xray_sdk' in sys.modules, 'X-Ray SDK not loaded'\n"
        "print(elapsed)\n"
    )
    started = time.perf_counter()
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False, cwd=str(ROOT)
    )
    total = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"import {module} failed in a Lambda-like environment:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1]), total


def cold_start(rounds: int) -> dict[str, Any]:
    env = lambda_environment()
    for module in ("boto3", "worker"):  # untimed: writes any missing .pyc, fills the page cache
        _import_seconds(module, env)
    times: dict[str, list[float]] = {"boto3": [], "worker": []}
    process: dict[str, list[float]] = {"boto3": [], "worker": []}
    for i in range(rounds):
        for module in ("boto3", "worker") if i % 2 == 0 else ("worker", "boto3"):
            inside, whole = _import_seconds(module, env)
            times[module].append(inside)
            process[module].append(whole)
    ratios = [w / b for w, b in zip(times["worker"], times["boto3"], strict=True)]
    ratio = statistics.median(times["worker"]) / statistics.median(times["boto3"])
    return {
        "boto3": spread(times["boto3"]),
        "worker": spread(times["worker"]),
        "boto3_process": spread(process["boto3"]),
        "worker_process": spread(process["worker"]),
        "ratio_of_medians": ratio,
        "ratio_per_round": spread(ratios),
        "goal": f"worker handler import <= {GOAL_COLD_START_RATIO:g}x import boto3",
        "pass": ratio <= GOAL_COLD_START_RATIO,
    }


def print_cold_start(r: dict[str, Any]) -> None:
    n = r["boto3"]["n"]
    say(f"1. Cold start: import in a fresh interpreter, Lambda-like environment (tracing on), {n} interleaved rounds")
    say(f"   {'':<34} {'min':>7} {'median':>7} {'max':>7}   (ms; whole process, median)")
    for key, label in (("boto3", "import boto3"), ("worker", "import worker (the handler module)")):
        s, p = r[key], r[f"{key}_process"]
        say(f"   {label:<34} {s['min'] * 1e3:>7.0f} {s['median'] * 1e3:>7.0f} {s['max'] * 1e3:>7.0f}"
            f"   ({p['median'] * 1e3:.0f})")  # fmt: skip
    rr = r["ratio_per_round"]
    say(f"   handler / boto3: {r['ratio_of_medians']:.2f}x (per round {rr['min']:.2f}-{rr['max']:.2f})"
        f"   goal <= {GOAL_COLD_START_RATIO:g}x   {verdict(r['pass'])}")  # fmt: skip


# --------------------------------------------------------------------------------------------------- the rule
def rule_throughput(n: int = 300_000) -> float:
    from license_notifications.rules.expiration import reminder_decision

    expiry = NOW + timedelta(days=10)
    start = time.perf_counter()
    for i in range(n):
        reminder_decision(
            status="activated" if i % 4 else "assigned",
            email="a@example.com",
            expiration_date=expiry,
            already_sent=i % 7 == 0,
            opted_out=False,
            now=NOW,
            days_before_expiration=30,
        )
    return n / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------- the fleet
LABELS = {
    "ddb_c20": "concurrency 20, ledger on DynamoDB Local",
    "ddb_c1": "concurrency 1, ledger on DynamoDB Local",
    "latent_c20": f"concurrency 20, ledger double + {DYNAMODB_SECONDS * 1e3:.0f} ms a request",
    "double_c20": "concurrency 20, ledger double",
    "license_manager": "license-manager's pattern, replayed",
}
MOTO_LABEL = "concurrency 20, ledger on moto (--moto)"


def fleet_row(result: FleetResult, errors: Counter[str], latency: float, expected: int) -> dict[str, Any]:
    ideal = result.braze_requests * latency / result.concurrency
    row = asdict(result)
    row["dynamodb_requests"] = dict(result.dynamodb_requests)
    row["dynamodb_total"] = result.dynamodb_total
    row.update(
        ideal_seconds=ideal,
        x_ideal=result.seconds / ideal if ideal else None,
        braze_per_50=result.braze_requests / result.reminders * 50 if result.reminders else None,
        dynamodb_per_50=result.dynamodb_total / result.reminders * 50 if result.reminders else None,
        complete=not result.failures and result.reminders == expected,
        error_log=dict(errors.most_common(5)),
        error_log_lines=sum(errors.values()),
    )
    return row


def busy(row: dict[str, Any]) -> str:
    """How busy each process was over the run's wall time (a share of one core). This process's threads share
    one GIL, so near 100 % it bounds the run; on a loaded machine every figure stays lower, waiting for a core.
    DynamoDB Local is multi-threaded java: it can exceed 100 %."""
    wall = row["seconds"]
    parts = [f"workers {row['worker_cpu'] / wall:.0%}"]
    if row.get("engine_cpu") is not None:
        parts.append(f"{row.get('engine', 'DynamoDB Local')} {row['engine_cpu'] / wall:.0%}")
    parts.append(f"stand-ins {row['stand_ins_cpu'] / wall:.0%}")
    return ", ".join(parts)


def engine_floor(row: dict[str, Any], before: Calibration, after: Calibration) -> dict[str, Any]:
    """The floor DynamoDB Local sets on a run: its time per request, measured just before and just after the run
    (their mean), x the requests the run made."""
    calibration = Calibration.mean(before, after)
    requests = Counter(row["dynamodb_requests"])
    floor = calibration.floor(requests)
    return {
        "calibration": asdict(calibration),
        "before": asdict(before),
        "after": asdict(after),
        "transaction_seconds": calibration.transaction_seconds,
        "transactions": requests.get("TransactWriteItems", 0),
        "reads": sum(requests.values()) - requests.get("TransactWriteItems", 0),
        "seconds": floor,
        "x_floor": row["seconds"] / floor if floor else None,
    }


def throughput(stand_ins: StandIns, engine: LedgerEngine, per_enterprise: int, rounds: int,
               errors: ErrorLog, *, with_moto: bool = False) -> dict[str, Any]:  # fmt: skip
    enterprises = stand_ins.enterprises("fleet")
    reminders = len(enterprises) * per_enterprise
    stand_ins.set_latency(BRAZE_LATENCY)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LABELS}
    order = list(runs)
    if with_moto:  # the previous engine, once, first (it may take minutes)
        started = time.perf_counter()
        with Moto() as moto:
            apply_env(moto.env)  # every DynamoDB client to moto while this run lasts
            result = run_fleet(stand_ins, enterprises, concurrency=20, run_id="bench-moto", engine=moto)
        apply_env(engine.env)
        row = {**fleet_row(result, errors.take(), BRAZE_LATENCY, reminders), "engine": "moto"}
        row["busy"] = busy(row)
        say(f"   ... moto_c20: {row['seconds']:.1f} s (ran {time.perf_counter() - started:.0f} s)")
        runs["moto_c20"] = [row]
    for round_number in range(rounds):
        for name in order if round_number % 2 == 0 else list(reversed(order)):
            started = time.perf_counter()
            run_id = f"bench-{name}-{round_number}"
            if name == "license_manager":
                replay: ReplayResult = replay_license_manager(stand_ins, reminders)
                row = asdict(replay)
                row["ideal_seconds"] = replay.braze_requests * BRAZE_LATENCY
                row["x_ideal"] = replay.seconds / row["ideal_seconds"]
            elif name.startswith("ddb"):
                concurrency = 1 if name.endswith("c1") else 20
                before = engine.calibrate() if concurrency == 20 else None
                result = run_fleet(stand_ins, enterprises, concurrency=concurrency, run_id=run_id, engine=engine)
                row = fleet_row(result, errors.take(), BRAZE_LATENCY, reminders)
                if before is not None:
                    row["floor"] = engine_floor(row, before, engine.calibrate())
                engine.drop_tables()
            else:
                # One ledger for every worker, as the table is; "latent" waits DynamoDB's latency per request.
                shared = InMemoryLedger()
                ledger = LatentLedger(shared, DYNAMODB_SECONDS) if name == "latent_c20" else shared
                result = run_fleet(stand_ins, enterprises, concurrency=20, run_id=run_id,
                                   ledger_factory=lambda ledger=ledger: ledger)  # fmt: skip
                row = fleet_row(result, errors.take(), BRAZE_LATENCY, reminders)
                if isinstance(ledger, LatentLedger):
                    row["dynamodb_total"] = ledger.requests  # the requests the real ledger would have made
            if name != "license_manager":
                row["busy"] = busy(row)
            runs[name].append(row)
            say(f"   ... {name} round {round_number + 1}/{rounds}: {row['seconds']:.1f} s"
                f" (ran {time.perf_counter() - started:.0f} s)")  # fmt: skip
    return summarise_throughput(runs, reminders)


def moto_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The ``--moto`` run beside the DynamoDB Local one (None without ``--moto``)."""
    if "moto_c20" not in runs:
        return None
    moto, local = runs["moto_c20"][0], runs["ddb_c20"][-1]
    replay = statistics.median(row["seconds"] for row in runs["license_manager"])
    return {
        "seconds": moto["seconds"],
        "sent": moto["reminders"],
        "failed_enterprises": len(moto["failures"]),
        "engine_cpu": moto["engine_cpu"],
        "dynamodb_requests": moto["dynamodb_total"],
        "vs_license_manager": replay / moto["seconds"],
        "dynamodb_local_seconds": local["seconds"],
        "dynamodb_local_engine_cpu": local["engine_cpu"],
    }


def summarise_throughput(runs: dict[str, list[dict[str, Any]]], reminders: int) -> dict[str, Any]:
    seconds = {name: spread([row["seconds"] for row in rows]) for name, rows in runs.items() if name in LABELS}
    replay = seconds["license_manager"]["median"]
    complete = {name: all(row["complete"] for row in runs[name]) for name in LABELS if name != "license_manager"}
    x_floor = statistics.median(row["floor"]["x_floor"] for row in runs["ddb_c20"])
    latent_ratio = replay / seconds["latent_c20"]["median"]
    clean = runs["ddb_c1"][-1]  # no concurrency, so no retries inflate the counts
    return {
        "reminders": reminders,
        "enterprises": ENTERPRISES,
        "braze_latency_seconds": BRAZE_LATENCY,
        "dynamodb_latency_seconds": DYNAMODB_SECONDS,
        "runs": runs,
        "seconds": seconds,
        "complete": complete,
        "moto": moto_summary(runs),
        "vs_license_manager": {name: replay / seconds[name]["median"] for name in LABELS if name != "license_manager"},
        "floor": {
            "x_floor": x_floor,
            "goal": f"concurrency 20, ledger on DynamoDB Local: wall time within {GOAL_X_FLOOR:g}x the floor "
            "DynamoDB Local sets on this machine (its time per request, measured in the run, x the run's requests)",
            "pass": complete["ddb_c20"] and x_floor <= GOAL_X_FLOOR,
        },
        "latent": {
            "ratio": latent_ratio,
            "goal": f"concurrency 20, ledger double + DynamoDB's {DYNAMODB_SECONDS * 1e3:g} ms a request "
            f"(perf/giant.py): >= {GOAL_VS_LICENSE_MANAGER:g}x faster than license-manager's pattern",
            "pass": complete["latent_c20"] and latent_ratio >= GOAL_VS_LICENSE_MANAGER,
        },
        "requests_per_50": {
            "from": "ledger on DynamoDB Local, concurrency 1",
            "braze": clean["braze_per_50"],
            "braze_goal": f"<= {GOAL_BRAZE_PER_50:g}",
            "braze_pass": clean["braze_per_50"] is not None and clean["braze_per_50"] <= GOAL_BRAZE_PER_50 + 1e-9,
            "dynamodb": clean["dynamodb_per_50"],
            "dynamodb_by_operation": {
                op: n / clean["reminders"] * 50 for op, n in clean["dynamodb_requests"].items() if clean["reminders"]
            },
        },
    }


def print_requests(t: dict[str, Any]) -> None:
    r = t["requests_per_50"]
    say(f"3. Requests per 50 reminders ({t['reminders']:,} reminders, {r['from']})")
    say(f"   Braze      {r['braze']:>7.2f}   goal {r['braze_goal']}   {verdict(r['braze_pass'])}")
    ops = ", ".join(f"{op} {n:.2f}" for op, n in sorted(r["dynamodb_by_operation"].items()))
    say(f"   DynamoDB   {r['dynamodb']:>7.2f}   ({ops}; every HTTP request botocore sent, retries included; no goal)")


def print_throughput(t: dict[str, Any]) -> None:
    runs, seconds = t["runs"], t["seconds"]
    rounds = len(runs["ddb_c20"])
    say(f"4. Throughput: {t['reminders']:,} reminders over {t['enterprises']} enterprises, Braze stand-in latency "
        f"{t['braze_latency_seconds'] * 1e3:.0f} ms, {rounds} interleaved round(s)")  # fmt: skip
    say(f"   {'run':<48} {'wall s min/med/max':>19} {'Braze req':>9} {'ideal s':>7} {'x ideal':>7} "
        f"{'DDB req':>7} {'LM / run':>8} {'CPU s: workers/DDB Local/stand-ins':>34}")  # fmt: skip
    for name, label in LABELS.items():
        s, last = seconds[name], runs[name][-1]
        wall = f"{s['min']:.1f}/{s['median']:.1f}/{s['max']:.1f}"
        if name == "license_manager":
            cpu, ddb, ratio = f"-/-/{last['stand_ins_cpu']:.1f}", "-", "-"
        else:
            engine_cpu = "-" if last["engine_cpu"] is None else f"{last['engine_cpu']:.1f}"
            cpu = f"{last['worker_cpu']:.1f}/{engine_cpu}/{last['stand_ins_cpu']:.1f}"
            ddb = f"{last['dynamodb_total']:,}" if name != "double_c20" else "-"
            ratio = f"{t['vs_license_manager'][name]:.1f}x"
        say(f"   {label:<48} {wall:>19} {last['braze_requests']:>9,} {last['ideal_seconds']:>7.2f} "
            f"{last['x_ideal']:>7.1f} {ddb:>7} {ratio:>8} {cpu:>34}")  # fmt: skip
    say(f"   (license-manager: per batch of {LICENSE_MANAGER_BATCH}, {len(LICENSE_MANAGER_CALLS)} sequential calls: "
        f"{', '.join(LICENSE_MANAGER_CALLS)}; its database writes are not replayed. LM / run: how many times "
        "faster than it each run is)")  # fmt: skip
    for name in LABELS:
        if name == "license_manager":
            continue
        for i, row in enumerate(runs[name]):
            sent = f"sent {row['reminders']:,} of {t['reminders']:,}"
            state = "complete" if row["complete"] else f"INCOMPLETE: {len(row['failures'])} enterprise(s) failed"
            if row["skipped"]:
                state += ", skipped " + ", ".join(f"{n} {reason}" for reason, n in row["skipped"].items())
            if row["redelivered"]:
                state += f", {len(row['redelivered'])} failed attempt(s) delivered again (as SQS would)"
            say(f"   {LABELS[name]} (round {i + 1}): {sent}, {state}; CPU over wall: {row['busy']}")
            for failure in row["failures"][:3]:
                say(f"      failure: {failure[:150]}")
            for attempt in row["redelivered"][:3]:
                say(f"      delivered again after: {attempt[:150]}")
            for message, count in list(row["error_log"].items())[:3]:
                say(f"      error log x{count}: {message}")
    for i, row in enumerate(runs["ddb_c20"]):
        f, c = row["floor"], row["floor"]["calibration"]
        b, a = f["before"], f["after"]
        say(f"   DynamoDB Local's floor (round {i + 1}): its time per request, measured one at a time just before and "
            f"just after the run ({b['rounds']} of each, medians, before / after / mean): a 50-key claim transaction "
            f"{b['claim_seconds'] * 1e3:.1f} / {a['claim_seconds'] * 1e3:.1f} / {c['claim_seconds'] * 1e3:.1f} ms, a "
            f"50-key record transaction {b['record_seconds'] * 1e3:.1f} / {a['record_seconds'] * 1e3:.1f} / "
            f"{c['record_seconds'] * 1e3:.1f} ms, a 100-key read {b['read_seconds'] * 1e3:.1f} / "
            f"{a['read_seconds'] * 1e3:.1f} / {c['read_seconds'] * 1e3:.1f} ms (the client's own CPU, "
            f"{c['client_cpu_seconds'] * 1e3:.1f} ms a request, left out); the run made {f['transactions']:,} "
            f"transactions and {f['reads']:,} reads: {f['transactions']:,} x {f['transaction_seconds'] * 1e3:.1f} ms + "
            f"{f['reads']:,} x {c['read_seconds'] * 1e3:.1f} ms = {f['seconds']:.1f} s; wall {row['seconds']:.1f} s = "
            f"{f['x_floor']:.2f}x the floor")  # fmt: skip
    say(
        "   (DynamoDB Local serves one transaction at a time, so a run on it cannot be much faster than that floor; "
        "below 1x, concurrent requests overlapped the part of a request's time that is not the engine's own work; "
        "DynamoDB in AWS serves a table's requests in parallel, as the ledger-double run with its latency per "
        "request models)"
    )
    fl, la = t["floor"], t["latent"]
    say(f"   concurrency 20 on DynamoDB Local: {fl['x_floor']:.2f}x its floor   goal <= {GOAL_X_FLOOR:g}x   "
        f"{verdict(fl['pass'])}")  # fmt: skip
    say(f"   license-manager / concurrency 20 with the ledger double + {DYNAMODB_SECONDS * 1e3:g} ms a DynamoDB "
        f"request: {la['ratio']:.1f}x faster   goal >= {GOAL_VS_LICENSE_MANAGER:g}x   {verdict(la['pass'])}")  # fmt: skip
    m = t["moto"]
    if m is None:
        say(
            "   (the ledger on moto, this section's previous engine: run with --moto; it takes minutes, as moto copies "
            "the table once per item of a transaction)"
        )
    else:
        row = runs["moto_c20"][0]
        state = "complete" if row["complete"] else f"INCOMPLETE: {m['failed_enterprises']} enterprise(s) failed"
        say(f"   {MOTO_LABEL}: {m['seconds']:.1f} s, sent {m['sent']:,} of {t['reminders']:,}, {state}; "
            f"{m['dynamodb_requests']:,} DynamoDB requests; moto's CPU {m['engine_cpu']:.1f} s "
            f"({m['vs_license_manager']:.1f}x license-manager's pattern{', not comparable: incomplete' if not row['complete'] else ''}); "
            "beside it DynamoDB Local: "
            f"{m['dynamodb_local_seconds']:.1f} s, its CPU {m['dynamodb_local_engine_cpu']:.1f} s")  # fmt: skip
        for failure in row["failures"][:3]:
            say(f"      failure: {failure[:150]}")


# ----------------------------------------------------------------------------------------------------- memory
def memory(stand_ins: StandIns, sizes: list[int], rounds: int) -> dict[str, Any]:
    stand_ins.set_latency(0.0)
    env = stand_ins.settings_env()
    warm_up = stand_ins.enterprises("warm-up")[0]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for round_number in range(rounds):
        for n in sizes if round_number % 2 == 0 else list(reversed(sizes)):
            result = peak_rss_run(env, warm_up, stand_ins.enterprises(f"memory-{n}")[0])
            if result["sent"] != n or result["error"]:
                raise RuntimeError(f"memory run for {n} licenses did not send every reminder: {result}")
            runs[n].append(result)
            say(f"   ... {n:,} licenses round {round_number + 1}/{rounds}: {result['seconds']:.1f} s")
    growth = {n: statistics.median(r["growth_mib"] for r in rows) for n, rows in runs.items()}
    small, large = sizes[0], sizes[-1]
    difference = growth[large] - growth[small]
    return {
        "runs": {str(n): rows for n, rows in runs.items()},
        "growth_mib": {str(n): g for n, g in growth.items()},
        "difference_mib": difference,
        "goal": f"peak RSS growth for {large:,} licenses within {GOAL_RSS_SPREAD_MIB:g} MiB of {small:,}",
        "pass": difference <= GOAL_RSS_SPREAD_MIB,
    }


def print_memory(m: dict[str, Any]) -> None:
    say("5. Peak RSS of one worker for one enterprise (fresh process; growth over a "
        f"{WARM_UP_LICENSES:,}-license warm-up run; ledger double that keeps nothing; no Braze latency)")  # fmt: skip
    say(
        f"   {'licenses':>9} {'growth MiB':>11} {'peak MiB':>9} {'seconds':>8} {'reminders/s':>12} {'Braze req/50':>13}"
    )
    for n, rows in m["runs"].items():
        for row in rows:
            rate = row["sent"] / row["seconds"]
            per_50 = row["braze_requests"] / row["sent"] * 50
            say(f"   {int(n):>9,} {row['growth_mib']:>11.2f} {row['peak_mib']:>9.1f} {row['seconds']:>8.1f}"
                f" {rate:>12,.0f} {per_50:>13.2f}")  # fmt: skip
    say(f"   difference: {m['difference_mib']:+.2f} MiB   goal: {m['goal']}   {verdict(m['pass'])}")


# ------------------------------------------------------------------------------------------ giant enterprise
def giant_enterprise(
    stand_ins: StandIns, enterprise: str, reminders: int, timeouts: list[float | None]
) -> dict[str, Any]:
    """Section 6 (``perf/giant.py``): the template's timeout, then each shorter one (deadline hand-offs)."""
    rows = []
    with Moto() as moto:
        apply_env(moto.env)
        for timeout in timeouts:
            started = time.perf_counter()
            result = simulate(stand_ins, enterprise, reminders, moto_endpoint=moto.env["AWS_ENDPOINT_URL"],
                              scale=GIANT_SCALE, timeout=timeout, run_id=f"bench-giant-{timeout}")  # fmt: skip
            say(
                f"   ... giant enterprise, timeout {result.timeout_seconds:.0f} s: {time.perf_counter() - started:.0f} s"
            )
            rows.append(result.as_dict())
    return {
        "goal": f"one enterprise of {reminders:,} due reminders within 15 min in AWS terms, each sent once, no failed "
        "message, no DLQ, no notification",
        "runs": rows,
        "pass": all(row["within_goal"] for row in rows),
    }


# ------------------------------------------------------------------------------------ post-expiration emails
def plan_expiration_section(report: dict[str, Any], *, quick: bool) -> None:
    """Section 7: the post-expiration emails' Braze requests per 50 (perf/plan_expiration.py)."""
    report["plan_expiration"] = plan_expiration_measure(enterprises=2 if quick else 4, due=200 if quick else 500)
    say()
    print_plan_expiration(report["plan_expiration"], say)


def plan_expiration_goal(report: dict[str, Any]) -> list[dict[str, Any]]:
    if "plan_expiration" not in report:
        return []
    p = report["plan_expiration"]
    measured = "n/a" if p["braze_per_50"] is None else f"{p['braze_per_50']:.2f}"
    return [{"goal": p["goal"], "measured": measured, "pass": p["pass"]}]


# ---------------------------------------------------------------------------------------- import-sent (issue 13)
def _licenses_export(path: Path, rows: int) -> None:
    """A licenses export as ``mysql --batch`` prints it: 32-hex-digit UUIDs, UTC datetimes, ``\\N`` for NULL. The
    plans expired 15 days before today (the wall clock's), the reminders went out 30 days before that, a tenth of
    the learners were told 5 days after it: the records' TTL (90 days after the plan) lies ahead."""
    from datetime import UTC, datetime
    from uuid import UUID

    expired = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=15)
    reminded, told_at = expired - timedelta(days=30), expired + timedelta(days=5, hours=8)

    header = ("uuid", "enterprise_customer_uuid", "subscription_plan_uuid", "plan_expiration_date",
              "expiration_reminder_sent_date", "subscription_plan_expiration_email_sent_date")  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        out.write("\t".join(header) + "\n")
        for n in range(rows):
            enterprise, plan = UUID(int=1_000_000 + n // 500), UUID(int=2_000_000 + n // 500)
            told = told_at.strftime("%Y-%m-%d %H:%M:%S.123456") if n % 10 == 0 else "\\N"
            out.write(f"{UUID(int=n + 1).hex}\t{enterprise.hex}\t{plan.hex}\t{expired:%Y-%m-%d %H:%M:%S}\t"
                      f"{reminded:%Y-%m-%d} 09:00:00\t{told}\n")  # fmt: skip


def import_sent_rate(rows: int, local: Any = None) -> dict[str, Any]:
    """Section 8: read and check an export of ``rows`` rows, import it into a fresh table on DynamoDB Local (``local``,
    a running :class:`devstack.dynamodb_local.DynamoDBLocal`, or one started here), import it again."""
    from license_notifications.adapters.ledger import Ledger
    from license_notifications.ops.import_sent import import_sent, new_run_id, read_files

    with tempfile.TemporaryDirectory() as tmp, LedgerEngine(local) as engine:
        apply_env(engine.env)
        path = Path(tmp) / "licenses.tsv"
        _licenses_export(path, rows)
        ledger = Ledger(engine.table())
        requests: Counter[str] = Counter()

        def count(request: Any = None, **kwargs: Any) -> None:
            requests[request.headers["X-Amz-Target"].decode().rsplit(".", 1)[-1]] += 1

        ledger.client.meta.events.register("before-send.dynamodb", count)
        engine_cpu = engine.cpu()
        started = time.perf_counter()
        plan = read_files(path)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        first = import_sent(ledger, plan, run_id=new_run_id())
        write_seconds = time.perf_counter() - started
        writes = dict(requests)
        started = time.perf_counter()
        again = import_sent(ledger, plan, run_id=new_run_id())
        again_seconds = time.perf_counter() - started
        engine_cpu = engine.cpu() - engine_cpu
    records = len(plan.records)
    total = read_seconds + write_seconds
    return {
        "rows": rows,
        "records": records,
        "read_seconds": read_seconds,
        "write_seconds": write_seconds,
        "rows_per_second": rows / total,
        "records_per_second": records / total,
        "projected_100000_rows_minutes": 100_000 / (rows / total) / 60,
        "imported": first.imported.total(),
        "already_on_second_import": again.already.total(),
        "imported_on_second_import": again.imported.total(),
        "again_seconds": again_seconds,
        "dynamodb_requests": writes,
        "engine_cpu_seconds": engine_cpu,
        "errors": [str(e) for e in (first.error, again.error) if e is not None],
        "goal": None,
    }


def print_import_sent(r: dict[str, Any]) -> None:
    say(f"8. import-sent: a licenses export of {r['rows']:,} rows ({r['records']:,} records) into a fresh ledger "
        "table on DynamoDB Local")  # fmt: skip
    say(f"   read and check the file: {r['read_seconds']:.2f} s ({r['rows'] / r['read_seconds']:,.0f} rows/s)")
    say(f"   write: {r['write_seconds']:.1f} s; {r['imported']:,} imported; DynamoDB requests "
        f"{dict(sorted(r['dynamodb_requests'].items()))}")  # fmt: skip
    say(f"   rate: {r['rows_per_second']:,.0f} rows/s ({r['records_per_second']:,.0f} records/s) on DynamoDB Local; a "
        f"100,000-row file: about {r['projected_100000_rows_minutes']:.1f} min (DynamoDB Local's CPU "
        f"{r['engine_cpu_seconds']:.1f} s over both imports)")  # fmt: skip
    say(f"   imported again: {r['again_seconds']:.1f} s, {r['imported_on_second_import']} imported, "
        f"{r['already_on_second_import']:,} already in the ledger")  # fmt: skip
    for error in r["errors"]:
        say(f"   ERROR: {error}")


# ---------------------------------------------------------------------------------------------------- main
def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal with its figure, side by side (sections that were skipped are left out)."""
    rows = []
    if "cold_start" in report:
        c = report["cold_start"]
        rows.append({"goal": c["goal"], "measured": f"{c['ratio_of_medians']:.2f}x", "pass": c["pass"]})
    if "throughput" in report:
        t = report["throughput"]
        r = t["requests_per_50"]
        rows.append({"goal": f"Braze requests per 50 reminders {r['braze_goal']}", "measured": f"{r['braze']:.2f}",
                     "pass": r["braze_pass"]})  # fmt: skip
        floor, last = t["floor"], t["runs"]["ddb_c20"][-1]["floor"]
        measured = (
            f"{floor['x_floor']:.2f}x ({t['seconds']['ddb_c20']['median']:.1f} s against a floor of "
            f"{last['seconds']:.1f} s: {last['transactions']:,} transactions x {last['transaction_seconds'] * 1e3:.1f} "
            f"ms + {last['reads']:,} reads x {last['calibration']['read_seconds'] * 1e3:.1f} ms; "
            f"{t['vs_license_manager']['ddb_c20']:.1f}x faster than license-manager's pattern"
            f"{'' if t['complete']['ddb_c20'] else '; the run did not complete'})"
        )
        rows.append({"goal": floor["goal"], "measured": measured, "pass": floor["pass"]})
        latent = t["latent"]
        measured = (
            f"{latent['ratio']:.1f}x ({t['seconds']['latent_c20']['median']:.1f} s against "
            f"{t['seconds']['license_manager']['median']:.1f} s"
            f"{'' if t['complete']['latent_c20'] else '; the run did not complete'})"
        )
        rows.append({"goal": latent["goal"], "measured": measured, "pass": latent["pass"]})
    if "memory" in report:
        m = report["memory"]
        rows.append({"goal": m["goal"], "measured": f"{m['difference_mib']:+.2f} MiB", "pass": m["pass"]})
    if "giant_enterprise" in report:
        g = report["giant_enterprise"]
        for run in g["runs"]:
            measured = (f"{run['reminders']:,} reminders in {run['aws_seconds'] / 60:.1f} min (timeout "
                        f"{run['timeout_seconds']:.0f} s), {run['failed_deliveries']} failed, DLQ {run['dead_letters']}, "
                        f"{run['notifications']} notifications, {run['duplicated']} sent twice")  # fmt: skip
            rows.append({"goal": g["goal"], "measured": measured, "pass": run["within_goal"]})
    rows += plan_expiration_goal(report)
    if "import_sent" in report:
        i = report["import_sent"]
        measured = (f"{i['rows_per_second']:,.0f} rows/s on DynamoDB Local ({i['rows']:,} rows); 100,000 rows: about "
                    f"{i['projected_100000_rows_minutes']:.1f} min")  # fmt: skip
        rows.append({"goal": "import-sent: a 100,000-row export in minutes on DynamoDB Local (no goal)", "measured": measured,
                     "pass": None if not i["errors"] else False})  # fmt: skip
    return rows


def ledger_description() -> str:
    import inspect

    from license_notifications.adapters import ledger

    source = inspect.getsource(ledger)
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    kind = next((name for name in ("pynamodb", "botocore") if any(name in line for line in imports)), "?")
    return f"{ledger.Ledger.__module__}.Ledger ({kind})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (a few minutes)")
    parser.add_argument("--reminders", type=int, help="reminders of the throughput runs (default 10,000; quick 2,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the throughput runs (default 1)")
    parser.add_argument("--moto", action="store_true",
                        help="also run the concurrency-20 fleet with its ledger on moto, the previous engine (minutes)")  # fmt: skip
    parser.add_argument("--import-rows", type=int, help="rows of the import-sent export (default 10,000; quick 2,000)")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["cold-start", "throughput", "memory", "giant", "plan-expiration", "import-sent"],
    )
    parser.add_argument("--json", type=Path, default=OUTPUT, help=f"where to write the figures (default {OUTPUT})")
    args = parser.parse_args(argv)

    reminders = args.reminders or (2_000 if args.quick else 10_000)
    per_enterprise = max(1, reminders // ENTERPRISES)
    rounds = args.rounds or 1
    cold_rounds = 3 if args.quick else 7
    memory_sizes = [2_000, 20_000] if args.quick else [20_000, 200_000]
    began = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(), "python": platform.python_version(),
        },
    }  # fmt: skip
    errors = quiet_service_logs()
    say(f"license-notifications benchmark (expiration reminders), {report['mode']}: {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")  # fmt: skip
    say(f"ledger: {ledger_description()}\n")

    if "cold-start" not in args.skip:
        report["cold_start"] = cold_start(cold_rounds)
        print_cold_start(report["cold_start"])
        say()

    rates = [rule_throughput() for _ in range(3)]
    report["rule"] = {"decisions_per_second": spread(rates), "goal": None}
    s = report["rule"]["decisions_per_second"]
    say(f"2. The expiration rule: {s['median']:,.0f} decisions/s (min {s['min']:,.0f}, max {s['max']:,.0f}, 3 runs;"
        " no goal)\n")  # fmt: skip

    groups = [Group("fleet", ENTERPRISES, per_enterprise), Group("warm-up", 1, WARM_UP_LICENSES)]
    if not {"memory", "giant"} <= set(args.skip):  # the giant simulation reuses the largest memory enterprise
        groups += [Group(f"memory-{n}", 1, n) for n in memory_sizes]
    started = time.perf_counter()
    with StandIns(groups) as stand_ins:
        say(f"   (stand-ins ready in {time.perf_counter() - started:.0f} s)")
        if "throughput" not in args.skip:
            with LedgerEngine() as engine:
                apply_env(engine.env)
                report["throughput"] = throughput(stand_ins, engine, per_enterprise, rounds, errors,
                                                  with_moto=args.moto)  # fmt: skip
            say()
            print_requests(report["throughput"])
            say()
            print_throughput(report["throughput"])
            say()
        if "memory" not in args.skip:
            report["memory"] = memory(stand_ins, memory_sizes, 2 if args.quick else 1)
            print_memory(report["memory"])
            say()
        if "giant" not in args.skip:
            giant = memory_sizes[-1]
            enterprise = stand_ins.enterprises(f"memory-{giant}")[0]
            report["giant_enterprise"] = giant_enterprise(stand_ins, enterprise, giant, [None, GIANT_SHORT_TIMEOUT])
            print_giant(report["giant_enterprise"]["runs"], say)

    if "plan-expiration" not in args.skip:
        plan_expiration_section(report, quick=args.quick)

    if "import-sent" not in args.skip:
        say()
        report["import_sent"] = import_sent_rate(args.import_rows or (2_000 if args.quick else 10_000))
        print_import_sent(report["import_sent"])

    report["goals"] = goals(report)
    say("\nGoals:")
    for goal in report["goals"]:
        say(f"   {verdict(goal['pass']):<4}  {goal['goal']}: {goal['measured']}")

    report["seconds"] = time.perf_counter() - began
    report["machine"]["load_average_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if args.json.parent == OUTPUT.parent:
        (args.json.parent / ".gitignore").write_text("*\n", encoding="utf-8")  # the directory ignores itself
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    say(f"\ntook {report['seconds'] / 60:.1f} min; figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
