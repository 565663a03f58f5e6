"""``license-notifications``: run a job inline (no queue), like license-manager's management commands.

    license-notifications expiration-reminders --enterprise-customer-uuid "uuid1,uuid2" \\
        [--days-before-expiration 30] [--dry-run] [--as-of 2026-03-01T09:00:00Z]
    license-notifications utilization [--enterprise-customer-uuid "uuid1 uuid2"] [--dry-run] [--as-of ...]

The same planning as the dispatcher and the same per-enterprise logic as the worker; settings come from the
environment (see README). Exit status: 0 all done; 1 something failed (the run still went through every
enterprise); 2 bad input or configuration: caught before anything was sent, or (a rejected OAuth client,
say) it stopped the run, after the summary of what was done up to then.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError

from license_notifications.clock import parse_as_of
from license_notifications.config import load_settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job
from license_notifications.jobs.dispatch import COMMANDS, plan_run
from license_notifications.jobs.work import process_work_message
from license_notifications.outcome import RunSummary
from license_notifications.rules.expiration import DEFAULT_DAYS_BEFORE_EXPIRATION
from license_notifications.services import Services

logger = logging.getLogger("license_notifications.cli")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


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
    for p in (rem, util):
        p.add_argument("--dry-run", action="store_true", help="log what would be sent; send and record nothing")
        p.add_argument("--as-of", type=_as_of, default=None, help="evaluate as if the clock read this instant")
    return parser


def run(argv: Sequence[str] | None = None, *, services: Services | None = None) -> tuple[int, RunSummary | None]:
    args = build_parser().parse_args(argv)
    job = Job.EXPIRATION_REMINDERS if args.command == "expiration-reminders" else Job.UTILIZATION
    command = COMMANDS[job]
    try:
        request = DispatchRequest(
            job=job,
            enterprise_customer_uuids=args.enterprise_customer_uuid,
            days_before_expiration=getattr(args, "days_before_expiration", DEFAULT_DAYS_BEFORE_EXPIRATION),
            dry_run=args.dry_run,
            as_of=args.as_of,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        logger.error("Invalid arguments: %s", problems)
        return EXIT_USAGE, None
    try:
        svc = services or Services(load_settings())
        result, messages = plan_run(request, svc.settings, svc.license_manager)
    except ConfigurationError as exc:  # nothing was sent
        logger.error("Configuration error: %s", exc)
        return EXIT_USAGE, None
    logger.info(
        "Starting %s command for %d enterprise customer(s), %s, dry_run=%s",
        command,
        len(messages),
        f"days_before_expiration={request.days_before_expiration}"
        if job is Job.EXPIRATION_REMINDERS
        else f"as_of={result.as_of.isoformat()}",
        request.dry_run,
    )
    summary = RunSummary(request.job, result.run_id, invalid_uuids=result.invalid_enterprise_customer_uuids)
    code = None
    try:
        for message in messages:
            summary.add(process_work_message(message, svc.job_for, svc.notifier))
    except ConfigurationError as exc:  # systemic (e.g. the OAuth client was rejected): stop the run here
        logger.error("Configuration error, run stopped after %d enterprise(s): %s", len(summary.outcomes), exc)
        code = EXIT_USAGE
    logger.info(
        "Completed %s command for %d enterprise customer(s). Total Success: %d, Total Failures: %d",
        command,
        len(summary.outcomes),
        sum(o.would_send if o.dry_run else o.sent for o in summary.outcomes),
        summary.failed,
    )
    if code is None:
        code = EXIT_OK if summary.ok and not summary.invalid_uuids else EXIT_FAILURES
    return code, summary


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    for noisy in ("botocore", "urllib3", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    code, _ = run(argv)
    return code


if __name__ == "__main__":
    sys.exit(main())
