"""What every job does around one enterprise: the spec's start and completion log lines, Braze request
accounting, and turning an upstream error into a failed enterprise instead of a crashed run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from license_notifications.adapters.braze import BrazeClient
from license_notifications.errors import ConfigurationError
from license_notifications.jobs.outcome import EnterpriseOutcome


def run_guarded(
    logger: logging.Logger,
    job: str,
    enterprise_customer_uuid: str,
    *,
    dry_run: bool,
    braze: BrazeClient,
    describe: str,
    body: Callable[[EnterpriseOutcome], None],
) -> EnterpriseOutcome:
    """Run ``body`` for one enterprise. Upstream errors are recorded in the outcome (the caller decides what a
    failed enterprise means); configuration errors propagate: they stop the whole run."""
    outcome = EnterpriseOutcome(job, enterprise_customer_uuid, dry_run=dry_run)
    where = {"enterprise_customer_uuid": enterprise_customer_uuid}
    braze_before = braze.request_count
    logger.info("Processing enterprise %s, %s, dry_run=%s", enterprise_customer_uuid, describe, dry_run, extra=where)
    try:
        body(outcome)
    except ConfigurationError:
        raise
    except Exception as exc:
        logger.exception("Failed processing enterprise %s: %s", enterprise_customer_uuid, exc, extra=where)
        outcome.fail_enterprise(f"{type(exc).__name__}: {exc}")
    outcome.braze_requests = braze.request_count - braze_before
    logger.info(
        "Completed processing for enterprise %s. Success: %d, Failures: %d",
        enterprise_customer_uuid,
        outcome.would_send if dry_run else outcome.sent,
        outcome.failed + (1 if outcome.error else 0),
        extra={
            **where,
            "due": outcome.due,
            "sent": outcome.sent,
            "would_send": outcome.would_send,
            "failed": outcome.failed,
            "skipped": dict(outcome.skipped),
            "sent_by_type": dict(outcome.sent_by_type),
            "braze_requests": outcome.braze_requests,
            "error": outcome.error,
        },
    )
    return outcome
