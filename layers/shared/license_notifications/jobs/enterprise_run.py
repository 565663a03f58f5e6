"""What every job does around one enterprise: the spec's start and completion log lines, Braze request
accounting, and turning an upstream error into a failed enterprise instead of a crashed run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from license_notifications.adapters.braze import BrazeClient
from license_notifications.adapters.http import call_deadline
from license_notifications.adapters.ledger import Ledger
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.lms import LmsClient
from license_notifications.errors import ConfigurationError
from license_notifications.events import Job, WorkMessage
from license_notifications.observability import EmailRenderer, mask_emails
from license_notifications.outcome import EnterpriseOutcome
from license_notifications.rules.expiration import DEFAULT_DAYS_BEFORE_EXPIRATION
from license_notifications.rules.plan_expiration import DEFAULT_DAYS_SINCE_EXPIRATION


@dataclass(frozen=True)
class PagesPart:
    """One plan's license pages ``first_page..last_page`` (inclusive; None: to the end)."""

    plan_uuid: str
    first_page: int = 1
    last_page: int | None = None


HandOff = Callable[[list[PagesPart]], None]


@dataclass(frozen=True, kw_only=True)
class JobRun:
    """One run of a job, as one enterprise sees it: ``as_of`` drives every rule and record (the run behaves
    as if the clock read that instant); ``deadline`` (monotonic seconds, from the Lambda's remaining time
    less ``Services.time_margin_seconds``) is when no new Braze request and no new page may start;
    ``days_before_expiration`` is the reminders' window, ``days_since_expiration`` the post-expiration emails'
    (each job reads its own)."""

    run_id: str
    as_of: datetime
    dry_run: bool = False
    deadline: float | None = None
    days_before_expiration: int = DEFAULT_DAYS_BEFORE_EXPIRATION
    days_since_expiration: int = DEFAULT_DAYS_SINCE_EXPIRATION
    part: PagesPart | None = None  # a continuation: one plan's page range
    handoff: HandOff | None = None  # hands the rest of the run on (None: it is not handed on)

    @classmethod
    def from_message(
        cls,
        message: WorkMessage,
        *,
        deadline: float | None = None,
        enqueue: Callable[[list[WorkMessage]], object] | None = None,
    ) -> JobRun:
        part = (
            PagesPart(str(message.plan_uuid), message.first_page or 1, message.last_page)
            if message.plan_uuid is not None
            else None
        )
        handoff = None
        if enqueue is not None:

            def handoff(parts: list[PagesPart]) -> None:
                enqueue([message.continuation(p.plan_uuid, p.first_page, p.last_page) for p in parts])

        return cls(
            run_id=message.run_id,
            as_of=message.as_of,
            dry_run=message.dry_run,
            deadline=deadline,
            days_before_expiration=message.days_before_expiration,
            days_since_expiration=message.days_since_expiration,
            part=part,
            handoff=handoff,
        )

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


class EnterpriseJob:
    """What both jobs hold: the adapters they share, and ``run_enterprise`` around their own ``process``."""

    name: Job
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

    def describe(self, run: JobRun) -> str:
        raise NotImplementedError

    def process(self, enterprise_customer_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> None:
        raise NotImplementedError

    def run_enterprise(self, enterprise_customer_uuid: str, run: JobRun) -> EnterpriseOutcome:
        """Process one enterprise. Upstream errors are recorded in the outcome (the caller decides what a
        failed enterprise means); configuration errors propagate: they stop the whole run."""
        outcome = EnterpriseOutcome(self.name, enterprise_customer_uuid, dry_run=run.dry_run)
        where = {"enterprise_customer_uuid": enterprise_customer_uuid}
        braze_before = self.braze.request_count
        self.logger.info(
            "Processing enterprise %s, %s, dry_run=%s",
            enterprise_customer_uuid,
            self.describe(run),
            run.dry_run,
            extra=where,
        )
        try:
            with call_deadline(run.deadline):  # no retry of any call starts after it
                self.process(enterprise_customer_uuid, run, outcome)
        except ConfigurationError:
            raise
        except Exception as exc:
            self.logger.exception("Failed processing enterprise %s: %s", enterprise_customer_uuid, exc, extra=where)
            outcome.fail_enterprise(f"{type(exc).__name__}: {exc}")
        outcome.braze_requests = self.braze.request_count - braze_before
        self.logger.info(
            "Completed processing for enterprise %s. Success: %d, Failures: %d",
            enterprise_customer_uuid,
            outcome.would_send if run.dry_run else outcome.sent,
            outcome.failed + (1 if outcome.error else 0),
            extra={**where, **outcome.counts()},
        )
        return outcome


def malformed_reporter(
    logger: logging.Logger, outcome: EnterpriseOutcome, subject_kind: str, id_field: str
) -> Callable[[Any, Exception], None]:
    """The ``on_malformed`` callback of the adapters: one upstream record that does not parse is skipped,
    logged and counted as failed (named by ``id_field`` when it has one), and the rest go on. Not redelivered:
    the same record would fail again."""

    def report(item: Any, exc: Exception) -> None:
        raw_id = item.get(id_field) if isinstance(item, dict) else None
        subject = mask_emails(str(raw_id))[:80] if raw_id not in (None, "") else "?"
        logger.error(
            "Skipping malformed %s record %s: %s",
            subject_kind,
            subject,
            exc,
            extra={"enterprise_customer_uuid": outcome.enterprise_customer_uuid, f"{subject_kind}_id": subject},
        )
        outcome.malformed += 1
        outcome.fail(
            f"malformed {subject_kind} record: {exc}", subject_kind=subject_kind, subjects=[subject], retry=False
        )

    return report
