"""license-notifications: run a job inline (no queue), like license-manager's management commands, or an ops tool.

Why a command beside the Lambdas: an operator needs the jobs' exact behaviour where there is no queue (a
preview with ``--dry-run``, a backfill with ``--as-of``, a run by hand during an incident), so a job plans its
run as the dispatcher does and processes each enterprise, continuations included, as the worker does, in one
process, reading the same settings. The operators' tools (``check``, ``report``, ``redrive``) and the cutover's
``import-sent`` (``ops/import_sent.py``) share it, so one installed command covers operations; ``import-sent``
writes only the ledger, so it needs only ``LEDGER_TABLE_NAME`` (and AWS credentials), not the jobs' settings.

The exit status separates a run that could not go ahead or was stopped by a systemic error (2: bad arguments
or configuration, found before anything was sent; a rejected OAuth client) from one that went through every
enterprise with failures (1).

Commands, options and exit statuses: docs/operations.md#the-cli; settings: docs/operations.md#configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from license_notifications.adapters.ledger import Ledger
from license_notifications.clock import parse_as_of
from license_notifications.config import load_settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage
from license_notifications.jobs.dispatch import COMMANDS, plan_run, window_of
from license_notifications.jobs.work import process_work_message
from license_notifications.observability import install_log_redaction
from license_notifications.ops import import_sent
from license_notifications.ops.check import FAIL, Check, run_checks
from license_notifications.ops.redrive import RedriveResult, redrive
from license_notifications.ops.report import LedgerReport, ReportRow
from license_notifications.ops.report import as_json as report_json
from license_notifications.ops.report import as_table as report_table
from license_notifications.outcome import RunSummary
from license_notifications.rules.expiration import DEFAULT_DAYS_BEFORE_EXPIRATION
from license_notifications.rules.plan_expiration import DEFAULT_DAYS_SINCE_EXPIRATION
from license_notifications.services import Services

logger = logging.getLogger("license_notifications.cli")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
JOB_COMMANDS = {
    "expiration-reminders": Job.EXPIRATION_REMINDERS,
    "utilization": Job.UTILIZATION,
    "plan-expiration-emails": Job.PLAN_EXPIRATION_EMAILS,
}


def _as_of(value: str) -> datetime:
    """``--as-of``: the same rule as the dispatcher event's ``as_of`` (clock.parse_as_of); argparse turns a
    refusal into a usage error (exit 2) naming the option, before anything is planned or sent."""
    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="license-notifications", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rem = sub.add_parser("expiration-reminders", help="send license expiration reminders (spec 003)")
    rem.add_argument(
        "--enterprise-customer-uuid",
        default=None,
        help='UUID(s) separated by commas or spaces ("uuid1,uuid2 uuid3"); default: every enterprise with an '
        "active plan expiring within the window",
    )
    rem.add_argument("--days-before-expiration", type=int, default=30, help="the window in days (default 30)")
    util = sub.add_parser("utilization", help="send license utilization emails to enterprise admins (ADR 9)")
    util.add_argument(
        "--enterprise-customer-uuid",
        default=None,
        help="UUID(s) separated by commas or spaces; default: every enterprise with an auto-apply plan",
    )
    expired = sub.add_parser(
        "plan-expiration-emails",
        help="tell learners their subscription plan has expired (license-manager's "
        "send_subscription_plan_expiration_emails)",
    )
    expired.add_argument(
        "--enterprise-customer-uuid",
        default=None,
        help='UUID(s) separated by commas or spaces ("uuid1,uuid2 uuid3"); default: every enterprise with an '
        "active plan expired within the window",
    )
    expired.add_argument(
        "--days-since-expiration",
        type=int,
        default=DEFAULT_DAYS_SINCE_EXPIRATION,
        help=f"the window in days: plans expired less than this long ago (default {DEFAULT_DAYS_SINCE_EXPIRATION})",
    )
    for p in (rem, util, expired):
        p.add_argument("--dry-run", action="store_true", help="log what would be sent; send and record nothing")
        p.add_argument("--as-of", type=_as_of, default=None, help="evaluate as if the clock read this instant")
    sub.add_parser("check", help="preflight: configuration, OAuth, license-manager, LMS, Braze campaigns, ledger")
    report = sub.add_parser("report", help="what the ledger recorded: by license, run or enterprise")
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--license-uuid", help="the reminder and post-expiration email records of one license")
    which.add_argument("--run-id", help="what one run sent")
    which.add_argument("--enterprise-customer-uuid", help="what an enterprise was sent (with --since / --until)")
    report.add_argument("--since", type=_as_of, default=None, help="with --enterprise-customer-uuid: sent at or after")
    report.add_argument("--until", type=_as_of, default=None, help="with --enterprise-customer-uuid: sent at or before")
    report.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    redrive = sub.add_parser("redrive", help="move the dead-letter queue's messages back to the work queue")
    redrive.add_argument("--dry-run", action="store_true", help="only count them")
    cutover = sub.add_parser(
        "import-sent", help="the cutover: write license-manager's sent state into the ledger (never overwrites)"
    )
    cutover.add_argument("--licenses", required=True, type=Path, help="the licenses export (CSV or mysql --batch TSV)")
    cutover.add_argument("--notifications", type=Path, default=None, help="the subscriptions_notification export")
    cutover.add_argument("--dry-run", action="store_true", help="check the files and count; write nothing")
    return parser


def run(
    argv: Sequence[str] | None = None, *, services: Services | None = None, out: TextIO | None = None
) -> tuple[int, Any]:
    """Parse and run one command; returns the exit status and what the command produced (a RunSummary for
    the jobs, the checks, the report rows or the redrive result)."""
    install_log_redaction()  # no secret or JWT in any log record, whatever level the root logger is set to
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    if args.command == "check":
        return _check(services, out)
    if args.command == "import-sent":  # needs the ledger table only, not the jobs' settings
        return _import_sent(args, services, out)
    try:
        svc = services or Services(load_settings())
    except ConfigurationError as exc:
        logger.error("Configuration error: %s", exc)
        return EXIT_USAGE, None
    if args.command == "report":
        return _report(args, svc, out)
    if args.command == "redrive":
        return _redrive(args, svc, out)
    return _run_job(args, svc)


def _request(args: argparse.Namespace) -> DispatchRequest | None:
    """The job command's arguments as the dispatcher's request, or None (logged) when they are invalid."""
    try:
        return DispatchRequest(
            job=JOB_COMMANDS[args.command],
            enterprise_customer_uuids=args.enterprise_customer_uuid,
            days_before_expiration=getattr(args, "days_before_expiration", DEFAULT_DAYS_BEFORE_EXPIRATION),
            days_since_expiration=getattr(args, "days_since_expiration", DEFAULT_DAYS_SINCE_EXPIRATION),
            dry_run=args.dry_run,
            as_of=args.as_of,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        logger.error("Invalid arguments: %s", problems)
        return None


def _run_job(args: argparse.Namespace, svc: Services) -> tuple[int, RunSummary | None]:
    request = _request(args)
    if request is None:
        return EXIT_USAGE, None
    job = request.job
    try:
        result, messages = plan_run(request, svc.settings, svc.license_manager)
    except ConfigurationError as exc:  # nothing was sent
        logger.error("Configuration error: %s", exc)
        return EXIT_USAGE, None
    logger.info(
        "Starting %s command for %d enterprise customer(s), %s, dry_run=%s",
        COMMANDS[job],
        len(messages),
        f"as_of={result.as_of.isoformat()}" if job is Job.UTILIZATION else window_of(request),
        request.dry_run,
    )
    summary = RunSummary(job, result.run_id, invalid_uuids=result.invalid_enterprise_customer_uuids)
    code = _process(messages, svc, summary)
    logger.info(
        "Completed %s command for %d enterprise customer(s). Total Success: %d, Total Failures: %d",
        COMMANDS[job],
        len(summary.outcomes),
        sum(o.would_send if o.dry_run else o.sent for o in summary.outcomes),
        summary.failed,
    )
    if code == EXIT_OK and not (summary.ok and not summary.invalid_uuids):
        code = EXIT_FAILURES
    return code, summary


def _process(messages: list[WorkMessage], svc: Services, summary: RunSummary) -> int:
    """Each message inline, as the worker would; EXIT_USAGE when a systemic error stopped the run."""
    progress = Progress(len(messages))
    try:
        for message in messages:  # a large enterprise appends its continuation messages: run them too
            summary.add(process_work_message(message, svc.job_for, svc.notifier, enqueue=messages.extend))
            progress.total = len(messages)
            progress.show(len(summary.outcomes), summary.sent)
    except ConfigurationError as exc:  # systemic (e.g. the OAuth client was rejected): stop the run here
        logger.error("Configuration error, run stopped after %d enterprise(s): %s", len(summary.outcomes), exc)
        return EXIT_USAGE
    finally:
        progress.done()
    return EXIT_OK


class Progress:
    """``enterprises done / total, sent so far`` on one terminal line, for runs over many enterprises; silent
    when stderr is not a terminal (a schedule, a pipe, a log file)."""

    MIN_ENTERPRISES = 5

    def __init__(self, total: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = total >= self.MIN_ENTERPRISES and self.stream.isatty()

    def show(self, done: int, sent: int) -> None:
        if self.enabled:
            self.stream.write(f"\r{done}/{self.total} enterprises, {sent} sent")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _check(services: Services | None, out: TextIO) -> tuple[int, list[Check]]:
    checks = run_checks(services=services)
    for check in checks:
        print(check.line(), file=out)
    failed = sum(1 for c in checks if c.status == FAIL)
    print(f"{len(checks)} checks: {failed} failed", file=out)
    return (EXIT_FAILURES if failed else EXIT_OK), checks


def _report(args: argparse.Namespace, svc: Services, out: TextIO) -> tuple[int, list[ReportRow] | None]:

    if (args.since or args.until) and not args.enterprise_customer_uuid:
        logger.error("Invalid arguments: --since / --until go with --enterprise-customer-uuid")
        return EXIT_USAGE, None
    if not svc.settings.ledger_table_name:
        logger.error("Configuration error: missing setting(s): LEDGER_TABLE_NAME")
        return EXIT_USAGE, None
    ledger = LedgerReport(svc.settings.ledger_table_name)
    if args.license_uuid:
        rows = ledger.license(args.license_uuid)
    elif args.run_id:
        rows = ledger.run(args.run_id)
    else:
        rows = ledger.enterprise(args.enterprise_customer_uuid, args.since, args.until)
    print(report_json(rows) if args.json else report_table(rows), file=out)
    return EXIT_OK, rows


def _redrive(args: argparse.Namespace, svc: Services, out: TextIO) -> tuple[int, RedriveResult | None]:
    import boto3

    if not svc.settings.work_queue_url:
        logger.error("Configuration error: missing setting(s): WORK_QUEUE_URL")
        return EXIT_USAGE, None
    result = redrive(boto3.client("sqs"), svc.settings.work_queue_url, dry_run=args.dry_run)
    verb = "moved" if result.moved else "would move" if args.dry_run else "nothing moved"
    print(
        f"{result.messages} message(s) in {result.dead_letter_queue_arn}; {verb} to {result.work_queue_arn} "
        f"({result.how})",
        file=out,
    )
    return EXIT_OK, result


def _import_sent(
    args: argparse.Namespace, services: Services | None, out: TextIO
) -> tuple[int, import_sent.ImportResult | None]:
    try:
        plan = import_sent.read_files(args.licenses, args.notifications)
    except import_sent.InputError as exc:
        for line in exc.lines():
            logger.error("Invalid input: %s", line)
        logger.error("Nothing written: fix the file(s) and run it again")
        return EXIT_USAGE, None
    if services is not None:
        ledger = services.ledger
    else:
        table = os.environ.get("LEDGER_TABLE_NAME", "").strip()
        if not table:
            logger.error("Configuration error: missing setting(s): LEDGER_TABLE_NAME")
            return EXIT_USAGE, None
        ledger = Ledger(table)
    result = import_sent.import_sent(ledger, plan, run_id=import_sent.new_run_id(), dry_run=args.dry_run)
    print(import_sent.render(result), file=out)
    if result.configuration_error:
        logger.error("Configuration error: %s", result.error)
        return EXIT_USAGE, result
    return (EXIT_FAILURES if result.error is not None or result.plan.unmappable else EXIT_OK), result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code, _ = run(argv)
    return code


if __name__ == "__main__":
    sys.exit(main())
