"""What every job does around one enterprise: the spec's start and completion log lines, Braze request
accounting, and turning an upstream error into a failed enterprise instead of a crashed run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from license_notifications.adapters.braze import BrazeClient
from license_notifications.adapters.ledger import Claim, Ledger
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.lms import LmsClient
from license_notifications.errors import (
    AmbiguousOutcomeError,
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    UpstreamError,
)
from license_notifications.jobs.outcome import EnterpriseOutcome, Failure
from license_notifications.observability import EmailRenderer


class OutOfTimeError(Exception):
    """The invocation is about to hit its timeout: stop before the next batch, with nothing in flight.
    The enterprise counts as failed, so SQS delivers its message again and the next attempt continues."""


@dataclass(frozen=True, kw_only=True)
class JobRun:
    """One run of a job, as one enterprise sees it: ``as_of`` drives every rule and record (the run behaves
    as if the clock read that instant); ``deadline`` (monotonic seconds, from the Lambda's remaining time)
    is when no new Braze batch may start."""

    run_id: str
    as_of: datetime
    dry_run: bool = False
    deadline: float | None = None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


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


def send_claimed(
    job: EnterpriseJob,
    outcome: EnterpriseOutcome,
    *,
    run_id: str,
    as_of: datetime,
    claims: Sequence[Claim],
    subject_kind: str,
    subjects: Sequence[str],
    what: str,
    send: Callable[[], str],
) -> str | None:
    """Steps 2 and 3 of the ledger protocol for one Braze batch whose keys this worker has claimed.

    ``send`` makes the one Braze request and returns its dispatch id. Then:
    - accepted: mark the claims sent (``as_of``, run id, dispatch id) and return the dispatch id;
    - refused or failed before Braze processed it: release the claims (a later run retries them), record
      the failure, and re-raise errors that would fail every further batch (bad credentials, bugs);
    - outcome unknown (no reply to a send that went out): keep the claims and mark them sent as
      ``unconfirmed``, since a retry could deliver twice; the failure names them for an operator to check.
    A send Braze accepted but the ledger could not record is reported (it may be sent again after the
    claim's lease), never counted as failed delivery.
    """
    where = {"enterprise_customer_uuid": outcome.enterprise_customer_uuid, f"{subject_kind}_ids": list(subjects)}
    try:
        dispatch_id = send()
    except AmbiguousOutcomeError as exc:
        job.logger.error(
            "Braze outcome unknown for %s: %s; recorded as sent to avoid a duplicate", what, exc, extra=where
        )
        job.ledger.mark_sent_many(claims, as_of=as_of, run_id=run_id, dispatch_id=f"unconfirmed:{run_id}")
        outcome.fail(
            f"{type(exc).__name__}: {exc} (recorded as sent, not retried: check Braze's delivery log)",
            subject_kind=subject_kind,
            subjects=list(subjects),
        )
        return None
    except Exception as exc:
        job.ledger.release_many(claims)
        job.logger.exception("Failed to send %s: %s", what, exc, extra=where)
        outcome.fail(f"{type(exc).__name__}: {exc}", subject_kind=subject_kind, subjects=list(subjects))
        if not isinstance(exc, UpstreamError) or isinstance(exc, AuthenticationError | PermissionDeniedError):
            raise  # a bug or bad credentials: every further batch would fail the same way
        return None
    try:
        marked = job.ledger.mark_sent_many(claims, as_of=as_of, run_id=run_id, dispatch_id=dispatch_id)
    except Exception as exc:
        marked = 0
        job.logger.exception("Sent %s (dispatch %s) but could not record it: %s", what, dispatch_id, exc, extra=where)
    if marked < len(claims):
        outcome.problems.append(
            Failure(
                outcome.job,
                outcome.enterprise_customer_uuid,
                f"sent (dispatch {dispatch_id}) but {len(claims) - marked} of {len(claims)} not recorded in the "
                "ledger: they may be sent again once their claim's lease runs out",
                subject_kind,
                tuple(subjects),
            )
        )
    return dispatch_id
