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
import io
import json
import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from devstack.aws import MotoStack, StackResources, create_resources_from_template, create_secret, load_template
from devstack.dataset import ACME, GLOBEX, INITECH, TYRELL, UMBRELLA, WAYNE, Dataset, build_sample_dataset, iso_z
from devstack.lambda_local import ROOT, LocalEventSourceMapping, invoke, load_handler
from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn
from license_notifications.cli import run as cli_run

OUT = ROOT / ".demo"
BRAZE_KEY = "demo-braze-rest-key"
CAMPAIGNS = {
    "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": "demo-license-expiration-reminder",
    "LIMITED_ALLOCATIONS_REMAINING_CAMPAIGN": "demo-limited-allocations-remaining",
    "NO_ALLOCATIONS_REMAINING_CAMPAIGN": "demo-no-allocations-remaining",
    "WEEKLY_LICENSE_UTILIZATION_CAMPAIGN": "demo-weekly-license-utilization",
    "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN": "demo-subscription-plan-expiration",
}
LEARNER_JOBS = ("license_expiration_reminders", "subscription_plan_expiration_emails")
TYPE_BY_CAMPAIGN = {
    CAMPAIGNS["LIMITED_ALLOCATIONS_REMAINING_CAMPAIGN"]: "75%",
    CAMPAIGNS["NO_ALLOCATIONS_REMAINING_CAMPAIGN"]: "100%",
    CAMPAIGNS["WEEKLY_LICENSE_UTILIZATION_CAMPAIGN"]: "weekly",
}


@dataclass
class Stack:
    moto: MotoStack
    resources: StackResources
    dataset: Dataset
    lms: LmsStandIn
    license_manager: LicenseManagerStandIn
    braze: BrazeStandIn
    log: TextIO

    error_notifications: Callable[[], list[dict[str, Any]]]  # what the worker published on the error topic

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
                "ENTERPRISE_ADMIN_PORTAL_BASE_URL": "https://portal.example.com",
                "HTTP_MAX_ATTEMPTS": "3",
                "HTTP_MAX_WAIT_SECONDS": "0.5",
                "POWERTOOLS_SERVICE_NAME": "license-notifications",
                "POWERTOOLS_METRICS_NAMESPACE": "LicenseNotifications",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": "INFO",
            }
        )
        log = stack.enter_context((OUT / "lambda-logs.jsonl").open("w"))
        yield Stack(moto, resources, dataset, lms, lm, braze, log, resources.error_inbox("demo-error-inbox"))


def worker_batch_size() -> int:
    return int(load_template()["Parameters"]["WorkerBatchSize"]["Default"])


@dataclass
class RunReport:
    title: str
    job: str
    result: dict[str, Any]
    enterprises: list[dict[str, Any]]  # the worker's "Completed processing" log records of this run
    braze_requests: int
    accepted: list[dict[str, Any]]  # the sends Braze accepted during this run
    failed_deliveries: int
    invocations: int

    def recipients(self, campaign: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(campaign, merged trigger properties + recipient id) for every recipient Braze accepted."""
        out = []
        for sent in self.accepted:
            if campaign is None or sent["campaign_id"] == campaign:
                for recipient in sent["recipients"]:
                    props = {**sent.get("trigger_properties", {}), **recipient.get("trigger_properties", {})}
                    who = recipient.get("external_user_id") or recipient["user_alias"]["alias_name"]
                    out.append((sent["campaign_id"], {**props, "_recipient": who}))
        return out


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
    return RunReport(
        title,
        event["job"],
        result,
        completed,
        stack.braze.request_count() - braze_before,
        stack.braze.outbox[outbox_before:],
        drained.failed_deliveries,
        drained.invocations,
    )


def print_report(stack: Stack, report: RunReport) -> None:
    names = {c.uuid: c.name for c in stack.dataset.customers.values()}
    reminders = report.job in LEARNER_JOBS  # one email per license: sent / would columns
    print(f"\n== {report.title}")
    print(f"   run {report.result['run_id']}  as_of {report.result['as_of']}  dry_run={report.result['dry_run']}")
    print(f"   dispatcher enqueued {report.result['enqueued']} enterprise(s); worker invocations {report.invocations}")
    middle = f"{'sent':>5} {'would':>5}" if reminders else f"{'75%':>4} {'100%':>4} {'weekly':>6} {'would':>5}"
    header = f"   {'enterprise':<22} {'passes':>6} {'due':>5} {middle} {'failed':>6}  skipped (last pass)"
    print(header)
    print("   " + "-" * (len(header) - 3))
    passes: dict[str, list[dict[str, Any]]] = {}
    for line in report.enterprises:  # an enterprise whose message failed is processed again on redelivery
        passes.setdefault(line["enterprise_customer_uuid"], []).append(line)
    for uuid, lines in passes.items():
        due = lines[0]["due"]
        failed = sum(line["failed"] for line in lines)
        would = due if report.result["dry_run"] else 0
        if reminders:
            middle = f"{sum(line['sent'] for line in lines):>5} {would:>5}"
        else:
            by_type = Counter[str]()
            for line in lines:
                by_type.update(line.get("sent_by_type", {}))
            middle = (
                f"{by_type['limited_allocations_remaining']:>4} {by_type['no_allocations_remaining']:>4} "
                f"{by_type['periodic_informational']:>6} {would:>5}"
            )
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(lines[-1].get("skipped", {}).items())) or "-"
        print(f"   {names.get(uuid, uuid)[:22]:<22} {len(lines):>6} {due:>5} {middle} {failed:>6}  {skipped}")
    retried = len(report.enterprises) - len(passes)
    print(
        f"   Braze: {report.braze_requests} request(s), {len(report.recipients())} recipient(s) accepted; "
        f"failed deliveries retried by SQS: {report.failed_deliveries}"
        + (f" ({retried} enterprise pass(es) repeated)" if retried else "")
    )


def ledger_count(stack: Stack) -> int:
    table = stack.resources.ledger_table_name
    return stack.moto.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"]


def expiration_reminders(stack: Stack, now: datetime, problems: list[str]) -> list[RunReport]:
    schedule = json.loads((ROOT / "events" / "dispatcher-expiration-reminders.json").read_text())
    uuids = [stack.dataset.customer_by_slug(slug).uuid for slug in (ACME, GLOBEX, INITECH, UMBRELLA)]
    schedule["enterprise_customer_uuids"] = ",".join(uuids)  # the dataset's, as in events/

    def sent(report: RunReport) -> int:
        return len(report.recipients(CAMPAIGNS["BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"]))

    print("\n#### License expiration reminders (hourly schedule)")
    # 1. A dry run first, as the spec recommends: it reports, sends nothing and records nothing.
    dry = run_schedule(stack, "Dry run (as_of = now)", {**schedule, "dry_run": True, "as_of": iso_z(now)})
    print_report(stack, dry)
    expect(problems, "the dry run sends nothing and records nothing", sent(dry) == 0 and ledger_count(stack) == 0)
    # 2. The hourly schedule fires. One Braze batch fails past its retries: SQS redelivers that message.
    first = run_schedule(stack, "Hour 0", {**schedule, "as_of": iso_z(now)}, fail_first_trigger=True)
    print_report(stack, first)
    expect(problems, "hour 0 reminds Acme's 120 learners and Umbrella's 25 on the expiring plan", sent(first) == 145)
    expect(problems, "the failed batch was retried through SQS and then sent", first.failed_deliveries >= 1)
    # 3. The next hour: everything due was sent already.
    second = run_schedule(stack, "Hour 1", {**schedule, "as_of": iso_z(now + timedelta(hours=1))})
    print_report(stack, second)
    expect(problems, "hour 1 sends nothing twice", sent(second) == 0)
    # 4. A week later Globex's plan (35 days out today) is inside the 30-day window.
    week = run_schedule(stack, "7 days later", {**schedule, "as_of": iso_z(now + timedelta(days=7))})
    print_report(stack, week)
    expect(problems, "a week later Globex's 12 learners are reminded", sent(week) == 12)
    return [dry, first, second, week]


def plan_expiration_emails(stack: Stack, now: datetime, problems: list[str]) -> list[RunReport]:
    """The post-expiration emails on one day: a dry run, the hourly schedule (enterprises discovered), the next
    hour (nothing again)."""
    schedule = json.loads((ROOT / "events" / "dispatcher-plan-expiration-emails-discover.json").read_text())
    campaign = CAMPAIGNS["BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"]
    globex, initech, tyrell = (stack.dataset.customer_by_slug(slug).uuid for slug in (GLOBEX, INITECH, TYRELL))

    def sent(report: RunReport) -> int:
        return len(report.recipients(campaign))

    def skipped(report: RunReport, reason: str) -> int:
        return sum(line["skipped"].get(reason, 0) for line in report.enterprises)

    print("\n#### Post-expiration emails (hourly schedule, enterprises discovered in license-manager)")
    records = ledger_count(stack)
    dry = run_schedule(stack, "Dry run (as_of = now)", {**schedule, "dry_run": True, "as_of": iso_z(now)})
    print_report(stack, dry)
    expect(problems, "the dry run would email 21 learners, sends nothing and records nothing",
           sum(line["would_send"] for line in dry.enterprises) == 21 and sent(dry) == 0
           and ledger_count(stack) == records)  # fmt: skip
    first = run_schedule(stack, "Hour 0", {**schedule, "as_of": iso_z(now)})
    print_report(stack, first)
    expect(problems, "discovery finds Globex, Initech and Tyrell (an active plan expired in the last 7 days)",
           sorted(first.result["enterprise_customer_uuids"]) == sorted([globex, initech, tyrell]))  # fmt: skip
    titles = Counter(p["subscription_plan_title"] for _, p in first.recipients(campaign))
    expect(problems, "hour 0 emails Globex's 10 learners (expired 5 days ago), Tyrell's 6 (an hour ago) and the 5 "
           "Tyrell learners not renewed", titles == {"Globex University 2024": 10, "Tyrell Replicant Training": 6,
                                                      "Tyrell 2025": 5})  # fmt: skip
    expect(problems, "the 15 Tyrell learners who moved to the renewal are skipped as renewed, opted-out Initech "
           "is skipped", skipped(first, "renewed") == 15 and skipped(first, "opted_out") == 1)  # fmt: skip
    days = {p["subscription_plan_title"]: p["days_since_expiration"] for _, p in first.recipients(campaign)}
    calendar = {t: (now.date() - stack.dataset.plan_by_title(t).expiration_date.date()).days for t in days}
    expect(problems, f"days_since_expiration counts whole UTC calendar days since the expiry ({calendar})",
           days == calendar and len(days) == 3)  # fmt: skip
    second = run_schedule(stack, "Hour 1", {**schedule, "as_of": iso_z(now + timedelta(hours=1))})
    print_report(stack, second)
    expect(problems, "hour 1 sends no post-expiration email twice", sent(second) == 0)
    licenses = Counter(p["license_uuid"] for r in (dry, first, second) for _, p in r.recipients(campaign))
    expect(problems, "no license got the post-expiration email twice", all(n == 1 for n in licenses.values()))
    return [dry, first, second]


def utilization(stack: Stack, now: datetime, problems: list[str]) -> list[RunReport]:
    schedule = json.loads((ROOT / "events" / "dispatcher-utilization.json").read_text())
    wayne = stack.dataset.customer_by_slug(WAYNE)

    def count(report: RunReport, kind: str) -> int:
        return sum(1 for campaign, _ in report.recipients() if TYPE_BY_CAMPAIGN.get(campaign) == kind)

    print("\n#### License utilization emails to admins (daily schedule, enterprises discovered in license-manager)")
    runs = []
    for day in (0, 1, 4, 7, 11):
        if day == 1:  # Wayne's last two free licenses are assigned overnight: 80 % -> 100 %
            for lic in [
                lic for lic in stack.dataset.licenses_of(_auto_plan(stack, wayne.uuid)) if lic.status == "unassigned"
            ]:
                lic.status = "assigned"
        report = run_schedule(
            stack, f"Day {day}", {**schedule, "as_of": iso_z(now + timedelta(days=day))}, fail_first_trigger=day == 1
        )
        print_report(stack, report)
        runs.append(report)
    day0, day1, day4, day7, day11 = runs
    expect(problems, "day 0: Wayne's 2 admins get the 75 % email, Cyberdyne's 3 the 100 % one",
           (count(day0, "75%"), count(day0, "100%")) == (2, 3))  # fmt: skip
    expect(problems, "day 0: 59 admins who joined 7+ days ago get the weekly digest", count(day0, "weekly") == 59)
    expect(problems, "day 1: Wayne reaches 100 %: its 2 admins get that email (after one SQS retry)",
           count(day1, "100%") == 2 and count(day1, "75%") == 0 and day1.failed_deliveries >= 1)  # fmt: skip
    expect(problems, "day 4: the 2 admins who joined on day -3 get their first digest", count(day4, "weekly") == 2)
    expect(problems, "day 7: the day-0 digests come round again", count(day7, "weekly") == count(day0, "weekly"))
    expect(problems, "day 11: ... and the day-4 ones", count(day11, "weekly") == 2)
    return runs


def _auto_plan(stack: Stack, enterprise_uuid: str) -> str:
    return next(p.uuid for p in stack.dataset.plans_of(enterprise_uuid) if p.should_auto_apply_licenses)


def check_never_twice(problems: list[str], reminders: list[RunReport], utilization_runs: list[RunReport]) -> None:
    licenses = Counter(p["license_uuid"] for r in reminders for _, p in r.recipients())
    expect(problems, "no license was reminded twice", all(n == 1 for n in licenses.values()))
    thresholds = Counter(
        (campaign, p["enterprise_customer_id"], p["subscription_plan_uuid"], p["_recipient"])
        for r in utilization_runs
        for campaign, p in r.recipients()
        if TYPE_BY_CAMPAIGN[campaign] != "weekly"
    )
    expect(problems, "no admin got the same threshold email twice", all(n == 1 for n in thresholds.values()))
    last_digest: dict[tuple[str, str], datetime] = {}
    too_soon = 0
    for r in utilization_runs:
        as_of = datetime.fromisoformat(r.result["as_of"])
        for campaign, p in r.recipients():
            if TYPE_BY_CAMPAIGN[campaign] == "weekly":
                key = (p["enterprise_customer_id"], p["_recipient"])
                if key in last_digest and (as_of.date() - last_digest[key].date()).days < 7:
                    too_soon += 1
                last_digest[key] = as_of
    expect(problems, "no admin got two weekly digests within a week", too_soon == 0)


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
        preflight(problems)
        reminder_runs = expiration_reminders(stack, now, problems)
        report_of(reminder_runs[1], problems)
        plan_expiration_emails(stack, now, problems)
        utilization_runs = utilization(stack, now, problems)
        print("\n== Summary")
        check_never_twice(problems, reminder_runs, utilization_runs)
        notifications = stack.error_notifications()
        expect(problems, "each failure was announced on the error topic, naming the enterprise", bool(notifications)
               and all(n["enterprise_customer_uuid"] for n in notifications))  # fmt: skip
        for n in notifications:
            who = ", ".join(n.get("admin_ids", [])[:3]) or f"{len(n.get('license_uuids', []))} license(s)"
            print(
                f"   error notification: {n['job']} enterprise {n['enterprise_customer_uuid']} ({who}): {n['error'][:70]}"
            )
        outbox = stack.braze.save_outbox(OUT / "braze-outbox.json")
        print(f"   ledger records: {ledger_count(stack)} (table {stack.resources.ledger_table_name})")
        print(f"   Braze outbox: {outbox.relative_to(ROOT)}; Lambda logs and EMF metrics: .demo/lambda-logs.jsonl")
    if problems:
        print("\nDEMO FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("\nAll demo checks held.")
    return 0


def preflight(problems: list[str]) -> None:
    """``license-notifications check``, as an operator runs it after a deploy (it sends and writes nothing)."""
    print("\n#### Preflight: license-notifications check")
    out = io.StringIO()
    code, checks = cli_run(["check"], out=out)
    print(textwrap.indent(out.getvalue().rstrip(), "   "))
    expect(
        problems,
        "the preflight passes on the local stack (exit 0)",
        code == 0 and all(c.status == "PASS" for c in checks),
    )


def report_of(run: RunReport, problems: list[str]) -> None:
    """``license-notifications report --run-id``: what that run sent, from the ledger's by-run index."""
    run_id = run.result["run_id"]
    print(f"\n#### license-notifications report --run-id {run_id}   (first 5 rows)")
    out = io.StringIO()
    code, rows = cli_run(["report", "--run-id", run_id], out=out)
    lines = out.getvalue().rstrip().splitlines()
    print(textwrap.indent("\n".join([*lines[:6], "   ...", lines[-1]]), "   "))
    sent = len(run.recipients(CAMPAIGNS["BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"]))
    expect(problems, f"the report lists every reminder of {run.title} ({sent})", code == 0 and len(rows) == sent)


def expect(problems: list[str], claim: str, holds: bool) -> None:
    print(f"   [{'ok' if holds else 'FAILED'}] {claim}")
    if not holds:
        problems.append(claim)


if __name__ == "__main__":
    sys.exit(main())
