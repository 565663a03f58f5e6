"""``make demo``: the real handlers on the embedded local stack, over several simulated schedule runs.

Set-up: moto (server mode, 127.0.0.1) with the table and queues created from template.yaml and the two
secrets in Secrets Manager; local stand-ins for license-manager, the LMS (OAuth2) and Braze serving the
sample dataset (devstack/dataset.py). Then, for each simulated run: invoke the dispatcher with the
schedule's event, and drain the work queue into the worker the way the SQS event source mapping does.

The report is read from what the Lambdas logged (their JSON log lines go to .demo/lambda-logs.jsonl) and
from the Braze stand-in's outbox (.demo/braze-outbox.json). The demo checks its own claims (nothing sent
twice, the expected counts) and exits non-zero if one does not hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from devstack.aws import MotoStack, StackResources, create_resources_from_template, create_secret, load_template
from devstack.dataset import ACME, GLOBEX, INITECH, UMBRELLA, Dataset, build_sample_dataset
from devstack.lambda_local import ROOT, LocalEventSourceMapping, invoke, load_handler
from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn

OUT = ROOT / ".demo"
BRAZE_KEY = "demo-braze-rest-key"
CAMPAIGNS = {"BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": "demo-license-expiration-reminder"}


@dataclass
class Stack:
    moto: MotoStack
    resources: StackResources
    dataset: Dataset
    lms: LmsStandIn
    license_manager: LicenseManagerStandIn
    braze: BrazeStandIn
    log: TextIO

    def log_lines(self) -> list[dict[str, Any]]:
        self.log.flush()
        lines = []
        for raw in Path(self.log.name).read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
        return lines


@contextlib.contextmanager
def local_stack(now: datetime) -> Iterator[Stack]:
    OUT.mkdir(exist_ok=True)
    dataset = build_sample_dataset(now)
    with contextlib.ExitStack() as stack:
        moto = stack.enter_context(MotoStack())
        os.environ.update(moto.env())
        resources = create_resources_from_template(moto.endpoint_url, suffix="-demo")
        lms = stack.enter_context(LmsStandIn(dataset))
        lm = stack.enter_context(LicenseManagerStandIn(dataset, lms.registry))
        braze = stack.enter_context(BrazeStandIn(BRAZE_KEY, known_campaigns=CAMPAIGNS.values()))
        os.environ.update(
            {
                **resources.lambda_env(),
                **CAMPAIGNS,
                "LICENSE_MANAGER_URL": lm.url,
                "LMS_URL": lms.url,
                "OAUTH_CLIENT_ID": lms.client_id,
                # In Lambda the secrets come from Secrets Manager through Powertools Parameters: so here too.
                "OAUTH_CLIENT_SECRET_ARN": create_secret(
                    moto.endpoint_url, "demo/oauth-client-secret", lms.client_secret
                ),
                "BRAZE_API_URL": braze.url,
                "BRAZE_API_KEY_SECRET_ARN": create_secret(moto.endpoint_url, "demo/braze-api-key", BRAZE_KEY),
                "HTTP_MAX_ATTEMPTS": "3",
                "HTTP_MAX_WAIT_SECONDS": "0.5",
                "POWERTOOLS_SERVICE_NAME": "license-notifications",
                "POWERTOOLS_METRICS_NAMESPACE": "LicenseNotifications",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
        )
        log = stack.enter_context((OUT / "lambda-logs.jsonl").open("w"))
        yield Stack(moto, resources, dataset, lms, lm, braze, log)


def worker_batch_size() -> int:
    return int(load_template()["Parameters"]["WorkerBatchSize"]["Default"])


@dataclass
class RunReport:
    title: str
    result: dict[str, Any]
    enterprises: list[dict[str, Any]]
    braze_requests: int
    new_sends: Counter[str]
    failed_deliveries: int
    invocations: int


def run_schedule(stack: Stack, title: str, event: dict[str, Any], *, fail_first_trigger: bool = False) -> RunReport:
    """One schedule firing: dispatcher, then the queue drained into the worker (failures redelivered)."""
    with contextlib.redirect_stdout(stack.log):  # Lambda's stdout: JSON logs and EMF metrics
        dispatcher, worker = load_handler("dispatcher"), load_handler("worker")
        log_start = len(stack.log_lines())
        braze_before = stack.braze.request_count()
        outbox_before = len(stack.braze.outbox)
        if fail_first_trigger:  # Braze fails one batch past the client's retries: the message is retried
            stack.braze.fail_next("/campaigns/trigger/send", 503, times=3)
        result = invoke(dispatcher.lambda_handler, event, "dispatcher")
        esm = LocalEventSourceMapping(
            stack.moto.client("sqs"),
            stack.resources.work_queue_url,
            worker.lambda_handler,
            batch_size=worker_batch_size(),
        )
        drained = esm.drain(redeliver_failures=True)
    completed = [
        line
        for line in stack.log_lines()[log_start:]
        if str(line.get("message", "")).startswith("Completed processing for enterprise")
    ]
    sends = Counter(
        props["license_uuid"] for sent in stack.braze.outbox[outbox_before:] for props in _recipient_props(sent)
    )
    return RunReport(
        title,
        result,
        completed,
        stack.braze.request_count() - braze_before,
        sends,
        drained.failed_deliveries,
        drained.invocations,
    )


def _recipient_props(sent: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for recipient in sent["recipients"]:
        yield {**sent.get("trigger_properties", {}), **recipient.get("trigger_properties", {})}


def print_report(stack: Stack, report: RunReport) -> None:
    names = {c.uuid: c.name for c in stack.dataset.customers.values()}
    print(f"\n== {report.title}")
    print(f"   run {report.result['run_id']}  as_of {report.result['as_of']}  dry_run={report.result['dry_run']}")
    print(f"   dispatcher enqueued {report.result['enqueued']} enterprise(s); worker invocations {report.invocations}")
    header = (
        f"   {'enterprise':<22} {'passes':>6} {'due':>5} {'sent':>5} {'would':>5} {'failed':>6}  skipped (last pass)"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    passes: dict[str, list[dict[str, Any]]] = {}
    for line in report.enterprises:  # an enterprise whose message failed is processed again on redelivery
        passes.setdefault(line["enterprise_customer_uuid"], []).append(line)
    for uuid, lines in passes.items():
        due = lines[0]["due"]
        sent = sum(line["sent"] for line in lines)
        failed = sum(line["failed"] for line in lines)
        would = due if report.result["dry_run"] else 0
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(lines[-1].get("skipped", {}).items())) or "-"
        name = names.get(uuid, uuid)[:22]
        print(f"   {name:<22} {len(lines):>6} {due:>5} {sent:>5} {would:>5} {failed:>6}  {skipped}")
    retried = len(report.enterprises) - len(passes)
    print(
        f"   Braze: {report.braze_requests} request(s), {sum(report.new_sends.values())} reminder(s) accepted; "
        f"failed deliveries retried by SQS: {report.failed_deliveries}"
        + (f" ({retried} enterprise pass(es) repeated)" if retried else "")
    )


def ledger_count(stack: Stack) -> int:
    table = stack.resources.ledger_table_name
    return stack.moto.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--now", help="the demo's 'now' (ISO-8601, default: the real clock)")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00")) if args.now else datetime.now(UTC)
    now = now.replace(microsecond=0)
    problems: list[str] = []
    with local_stack(now) as stack:
        print("license-notifications demo: the real dispatcher and worker handlers on the embedded local stack")
        print(
            f"   moto (DynamoDB, SQS, SNS, Secrets Manager) at {stack.moto.endpoint_url}, resources from template.yaml"
        )
        print(f"   license-manager {stack.license_manager.url}, LMS {stack.lms.url}, Braze {stack.braze.url}")
        print()
        print("\n".join(stack.dataset.describe()))

        schedule = json.loads((ROOT / "events" / "dispatcher-expiration-reminders.json").read_text())
        uuids = {slug: stack.dataset.customer_by_slug(slug).uuid for slug in (ACME, GLOBEX, INITECH, UMBRELLA)}
        schedule["enterprise_customer_uuids"] = ",".join(uuids.values())  # the dataset's, as in events/

        # 1. A dry run first, as the spec recommends: it reports, sends nothing and records nothing.
        dry = run_schedule(stack, "Dry run (as_of = now)", {**schedule, "dry_run": True, "as_of": _iso(now)})
        print_report(stack, dry)
        expect(problems, "dry run sends nothing", sum(dry.new_sends.values()) == 0 and ledger_count(stack) == 0)

        # 2. The hourly schedule fires. One Braze batch fails past its retries: SQS redelivers that message.
        first = run_schedule(
            stack, "Hourly schedule, hour 0", {**schedule, "as_of": _iso(now)}, fail_first_trigger=True
        )
        print_report(stack, first)
        expect(
            problems,
            "hour 0 reminds Acme (120) and Umbrella's expiring plan (25)",
            sum(first.new_sends.values()) == 145,
        )
        expect(problems, "a failed batch was retried through SQS", first.failed_deliveries >= 1)

        # 3. The next hour: everything due was sent already.
        second = run_schedule(stack, "Hourly schedule, hour 1", {**schedule, "as_of": _iso(now + timedelta(hours=1))})
        print_report(stack, second)
        expect(problems, "hour 1 sends nothing twice", sum(second.new_sends.values()) == 0)

        # 4. A week later Globex's plan (35 days out today) is inside the 30-day window.
        week = run_schedule(
            stack, "Hourly schedule, 7 days later", {**schedule, "as_of": _iso(now + timedelta(days=7))}
        )
        print_report(stack, week)
        expect(problems, "a week later Globex's 12 learners are reminded", sum(week.new_sends.values()) == 12)

        totals = Counter[str]()
        for sent in stack.braze.outbox:
            totals.update(p["license_uuid"] for p in _recipient_props(sent))
        twice = [uuid for uuid, n in totals.items() if n > 1]
        expect(problems, "no license was reminded twice", not twice)
        outbox = stack.braze.save_outbox(OUT / "braze-outbox.json")
        print("\n== Summary")
        print(f"   reminders sent: {sum(totals.values())} to {len(totals)} licenses; sent twice: {len(twice)}")
        print(f"   ledger records: {ledger_count(stack)} (table {stack.resources.ledger_table_name})")
        print(f"   Braze outbox: {outbox.relative_to(ROOT)}; Lambda logs and EMF metrics: .demo/lambda-logs.jsonl")
    if problems:
        print("\nDEMO FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("\nAll demo checks held.")
    return 0


def expect(problems: list[str], claim: str, holds: bool) -> None:
    print(f"   [{'ok' if holds else 'FAILED'}] {claim}")
    if not holds:
        problems.append(claim)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


if __name__ == "__main__":
    sys.exit(main())
