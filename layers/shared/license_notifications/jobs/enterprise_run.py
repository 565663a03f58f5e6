"""What every job does around one enterprise: the spec's start and completion log lines, Braze request
accounting, and turning an upstream error into a failed enterprise instead of a crashed run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from license_notifications.adapters.braze import BrazeClient
from license_notifications.adapters.ledger import Ledger
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.lms import LmsClient
from license_notifications.errors import ConfigurationError
from license_notifications.jobs.outcome import EnterpriseOutcome
from license_notifications.observability import EmailRenderer


class EnterpriseJob:
    """What both jobs hold: the adapters they share, and ``run_enterprise`` around their own ``process``."""

    name: str  # the job name, as in work messages and logs
    logger: logging.Logger

    def __init__(
        self,
        *,
        license_manager: LicenseManagerClient,
        lms: LmsClient,
        braze: BrazeClient,
        ledger: Ledger,
        emails: EmailRenderer | None = None,
    ):
        self.license_manager = license_manager
        self.lms = lms
        self.braze = braze
        self.ledger = ledger
        self.emails = emails or EmailRenderer()

    def describe(self, run) -> str:
        raise NotImplementedError

    def process(self, enterprise_customer_uuid: str, run, outcome: EnterpriseOutcome) -> None:
        raise NotImplementedError

    def run_enterprise(self, enterprise_customer_uuid: str, run) -> EnterpriseOutcome:
        """Process one enterprise; see :func:`run_guarded`."""
        return run_guarded(
            self.logger,
            self.name,
            enterprise_customer_uuid,
            dry_run=run.dry_run,
            braze=self.braze,
            describe=self.describe(run),
            body=lambda outcome: self.process(enterprise_customer_uuid, run, outcome),
        )


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
