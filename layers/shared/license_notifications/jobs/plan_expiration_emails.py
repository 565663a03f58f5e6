"""Post-expiration emails (license-manager's ``send_subscription_plan_expiration_emails``, contract 2.5):
one email per activated license after its subscription plan expired.

The ledger identity of the email lives here, so that the job and the cutover (``import-sent``) name the
same record: one ``plan_expiration_email#<license uuid>`` record per license, kept until the plan expired
``RECORD_RETENTION`` ago. A license stays due until its plan expired ``days_since_expiration`` ago, so the record
must outlive the widest window a run may use (DynamoDB deletes a record once its TTL passed, and a deleted
record is an email sent again): the retention is that window plus 90 days, whatever window the run used, so
the records ``import-sent`` writes (which know no window) are kept as long.

The job, for one enterprise: the agreement's active plans that expired inside the window
``(as_of - days_since_expiration, as_of]`` (``rules/plan_expiration.py``), their activated licenses one page at
a time, each due license sent once through the campaign ``BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN``, in
Braze batches of 50 (the flow is ``jobs/license_emails.py``, shared with the expiration reminders). Beyond
license-manager: an opted-out enterprise is skipped, and a learner whose email holds an activated or assigned
license in a renewal of the plan gets nothing (reason ``renewed``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import JobRun, malformed_reporter
from license_notifications.jobs.license_emails import EnterpriseLicenses, LicenseEmailJob
from license_notifications.models import License, SubscriptionPlan
from license_notifications.outcome import EnterpriseOutcome
from license_notifications.rules.plan_expiration import (
    CONTINUING_STATUSES,
    MAX_DAYS_SINCE_EXPIRATION,
    PlanExpirationDecision,
    calendar_days_since_expiration,
    continues_under_renewal,
    email_key,
    plan_expiration_decision,
    plan_expired_in_window,
    renewals_of,
)

logger = logging.getLogger(__name__)

COMMAND = "send_subscription_plan_expiration_emails"
LEDGER_KIND = "plan_expiration_email"
RECORD_RETENTION = timedelta(days=MAX_DAYS_SINCE_EXPIRATION + 90)  # outlives the widest window (see above)


def ledger_key(license_uuid: UUID | str) -> str:
    return f"{LEDGER_KIND}#{license_uuid}"


class PlanExpirationEmails(LicenseEmailJob):
    """The job, wired to its adapters. A dry run reads the ledger (to report only what is due) but writes nothing."""

    name = Job.PLAN_EXPIRATION_EMAILS
    logger = logger

    def describe(self, run: JobRun) -> str:
        return f"days_since_expiration={run.days_since_expiration}"

    def enterprise_pass(self, enterprise_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> EnterpriseLicenses:
        return _EnterprisePlanExpiration(self, enterprise_uuid, run, outcome)


class _EnterprisePlanExpiration(EnterpriseLicenses):
    """One enterprise's post-expiration emails.

    Renewals: the plans of the agreement that list an expired plan in ``prior_renewals`` (and are active and not
    expired themselves) are its renewals. A renewal's ``activated`` and ``assigned`` licenses are read (pages of
    500, that status filter) the first time a license of the expired plan would otherwise be due, so an hourly
    run that finds everything already sent reads no renewal at all. What is kept of them is one set of
    lower-cased emails per renewal plan for this message: memory grows with the renewal's size, about 0.12 KiB
    a license (100,000 licenses with 40-character emails: 12 MiB, measured with tracemalloc), and only while the
    enterprise is processed. A renewal that
    cannot be read fails the enterprise (nothing was claimed for its plan yet; SQS delivers it again), and a
    plan of the agreement that does not parse may be a renewal, so while one does, every license otherwise due
    waits (``renewal_unknown``; the malformed plan is reported): no learner is told their plan expired because
    a renewal could not be checked."""

    ledger_key = staticmethod(ledger_key)
    ledger_kind = LEDGER_KIND
    record_retention = RECORD_RETENTION
    email_name = "subscription plan expiration email"
    expiry_verb = "expired"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._renewals: dict[str, list[str]] = {}  # expired plan uuid -> the uuids of its renewals
        self._continuing: dict[str, set[str]] = {}  # renewal plan uuid -> email_key of its learners

    def in_window(self, plan: SubscriptionPlan) -> bool:
        return plan_expired_in_window(
            is_active=plan.is_active,
            expiration_date=plan.expiration_date,
            now=self.run.as_of,
            days=self.run.days_since_expiration,
        )

    def decide(self, plan: SubscriptionPlan, lic: License, *, already_sent: bool) -> PlanExpirationDecision:
        def decision(continues: bool | None) -> PlanExpirationDecision:
            return plan_expiration_decision(
                status=lic.status,
                email=lic.user_email,
                plan_is_active=plan.is_active,
                expiration_date=plan.expiration_date,
                already_sent=already_sent,
                opted_out=False,  # the whole enterprise was skipped if it opted out
                continues_under_renewal=continues,
                now=self.run.as_of,
                days_since_expiration=self.run.days_since_expiration,
            )

        first = decision(False)  # the renewal is decided last: looked up only for a license otherwise due
        if first is PlanExpirationDecision.DUE and self.unreadable_plans:
            return decision(None)  # an unreadable plan of the agreement may renew this one
        renewals = self.renewals(plan) if first is PlanExpirationDecision.DUE else []
        if not renewals:
            return first
        return decision(any(continues_under_renewal(lic.user_email, self.continuing(r)) for r in renewals))

    def day_count(self, plan: SubscriptionPlan) -> dict[str, int]:
        return {"days_since_expiration": calendar_days_since_expiration(plan.expiration_date, self.run.as_of)}

    # -- renewals ------------------------------------------------------------------------------------------------

    def renewals(self, plan: SubscriptionPlan) -> list[str]:
        key = str(plan.uuid)
        if key not in self._renewals:
            plans = self.agreement.subscriptions if self.agreement is not None else []
            self._renewals[key] = renewals_of(plan.uuid, plans, self.run.as_of)
        return self._renewals[key]

    def continuing(self, renewal_uuid: str) -> set[str]:
        """The ``email_key`` of every activated or assigned license's email in the renewal plan (read once)."""
        if renewal_uuid not in self._continuing:
            on_malformed = malformed_reporter(self.logger, self.outcome, "license", "uuid")
            emails: set[str] = set()
            for page in self.job.license_manager.license_pages(
                renewal_uuid, statuses=CONTINUING_STATUSES, on_malformed=on_malformed
            ):
                emails.update(email_key(lic.user_email) for lic in page if lic.status in CONTINUING_STATUSES)
            emails.discard("")
            self._continuing[renewal_uuid] = emails
            self.logger.info(
                "Renewal plan %s of enterprise %s: %d learner(s) with an activated or assigned license there get "
                "no post-expiration email for the plan it renews",
                renewal_uuid,
                self.enterprise_uuid,
                len(emails),
                extra={**self.where, "renewal_plan_uuid": renewal_uuid},
            )
        return self._continuing[renewal_uuid]
