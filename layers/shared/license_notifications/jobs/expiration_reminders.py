"""License expiration reminders for one enterprise (spec 003): fetch, decide, claim, alias, send, mark.

Licenses are streamed one license-manager page (<= 500) at a time and sent in Braze batches of 50:
one ``/users/alias/new`` and one ``/campaigns/trigger/send`` request per 50 reminders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from license_notifications.adapters.braze import MAX_RECIPIENTS_PER_REQUEST, Recipient, UserAlias
from license_notifications.adapters.ledger import Claim
from license_notifications.errors import AuthenticationError, ConfigurationError, PermissionDeniedError, UpstreamError
from license_notifications.jobs.enterprise_run import EnterpriseJob
from license_notifications.jobs.outcome import EnterpriseOutcome
from license_notifications.models import EnterpriseCustomer, License, SubscriptionPlan
from license_notifications.rules.expiration import (
    ReminderDecision,
    braze_datetime,
    days_until_expiration,
    expires_in_window,
    reminder_decision,
)

logger = logging.getLogger(__name__)

JOB = "license_expiration_reminders"
COMMAND = "send_license_expiration_reminders"
LEDGER_KIND = "expiration_reminder"
RECORD_RETENTION = timedelta(days=90)  # ledger records live until the plan expired this long ago


def ledger_key(license_uuid: UUID | str) -> str:
    return f"{LEDGER_KIND}#{license_uuid}"


@dataclass(frozen=True)
class ReminderRun:
    run_id: str
    as_of: datetime
    days_before_expiration: int = 30
    dry_run: bool = False


class ExpirationReminders(EnterpriseJob):
    """The job, wired to its adapters. A dry run reads the ledger (to report only what is due) but writes nothing."""

    name = JOB
    logger = logger

    def __init__(self, *, campaign_id: str, **adapters: Any):
        if not campaign_id:
            raise ConfigurationError("missing setting(s): BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN")
        super().__init__(**adapters)
        self.campaign_id = campaign_id

    def describe(self, run: ReminderRun) -> str:
        return f"days_before_expiration={run.days_before_expiration}"

    def process(self, enterprise_customer_uuid: str, run: ReminderRun, outcome: EnterpriseOutcome) -> None:
        _EnterpriseReminders(self, enterprise_customer_uuid, run, outcome).process()


class _EnterpriseReminders:
    """One enterprise's pass; holds the lazily fetched enterprise customer."""

    def __init__(self, job: ExpirationReminders, enterprise_uuid: str, run: ReminderRun, outcome: EnterpriseOutcome):
        self.job = job
        self.enterprise_uuid = enterprise_uuid
        self.run = run
        self.outcome = outcome
        self._customer: EnterpriseCustomer | None = None

    @property
    def customer(self) -> EnterpriseCustomer:
        if self._customer is None:
            self._customer = self.job.lms.enterprise_customer(self.enterprise_uuid)
        return self._customer

    def process(self) -> None:
        agreement = self.job.license_manager.customer_agreement(self.enterprise_uuid)
        if agreement is None:
            logger.warning(
                "Enterprise %s has no customer agreement in license-manager: no licenses to process",
                self.enterprise_uuid,
                extra={"enterprise_customer_uuid": self.enterprise_uuid},
            )
            return
        if agreement.disable_expiration_notifications:
            self.outcome.skipped[ReminderDecision.OPTED_OUT] += 1
            logger.info(
                "Skipping enterprise %s: its customer agreement disables expiration notifications",
                self.enterprise_uuid,
                extra={"enterprise_customer_uuid": self.enterprise_uuid, "skip_reason": "opted_out"},
            )
            return
        for plan in agreement.subscriptions:
            if plan.is_active and expires_in_window(
                plan.expiration_date, self.run.as_of, self.run.days_before_expiration
            ):
                self.process_plan(plan)

    def process_plan(self, plan: SubscriptionPlan) -> None:
        for page in self.job.license_manager.license_pages(plan.uuid):
            due = self.due_licenses(plan, page)
            logger.info(
                "Found %d licenses to process for enterprise %s",
                len(due),
                self.enterprise_uuid,
                extra={"enterprise_customer_uuid": self.enterprise_uuid, "subscription_plan_uuid": str(plan.uuid)},
            )
            for start in range(0, len(due), MAX_RECIPIENTS_PER_REQUEST):
                self.send_batch(plan, due[start : start + MAX_RECIPIENTS_PER_REQUEST])

    def due_licenses(self, plan: SubscriptionPlan, page: list[License]) -> list[License]:
        sent = self.job.ledger.sent_at(ledger_key(lic.uuid) for lic in page)
        due = []
        for lic in page:
            decision = reminder_decision(
                status=lic.status,
                email=lic.user_email,
                expiration_date=plan.expiration_date,
                already_sent=ledger_key(lic.uuid) in sent,
                opted_out=False,
                now=self.run.as_of,
                days_before_expiration=self.run.days_before_expiration,
            )
            if decision is ReminderDecision.DUE:
                due.append(lic)
            else:
                self.outcome.skipped[decision] += 1
        self.outcome.due += len(due)
        return due

    def send_batch(self, plan: SubscriptionPlan, licenses: list[License]) -> None:
        if self.run.dry_run:
            customer = self.customer  # a preview still checks the enterprise is known to the LMS
            for lic in licenses:
                logger.info(
                    "[dry run] Would send license expiration reminder to %s for license %s expiring on %s",
                    self.job.emails(lic.user_email),
                    lic.uuid,
                    plan.expiration_date.date().isoformat(),
                    extra={"enterprise_customer_uuid": str(customer.uuid), "license_uuid": str(lic.uuid)},
                )
            self.outcome.would_send += len(licenses)
            return

        self.customer  # noqa: B018 - fetch (once) before claiming: an unknown enterprise fails with nothing held
        claims = self.claim(plan, licenses)
        taken = [(lic, claim) for lic, claim in zip(licenses, claims, strict=True) if claim is not None]
        if len(taken) < len(licenses):
            self.outcome.skipped["claimed_elsewhere"] += len(licenses) - len(taken)
        if not taken:
            return
        try:
            recipients = [self.recipient(plan, lic) for lic, _ in taken]
            self.job.braze.create_aliases([UserAlias(lic.user_email) for lic, _ in taken])
            dispatch_id = self.job.braze.trigger_campaign(self.job.campaign_id, recipients)
        except Exception as exc:
            self.job.ledger.release_many([claim for _, claim in taken])
            logger.exception(
                "Failed to send license expiration reminders for %d license(s) of enterprise %s: %s",
                len(taken),
                self.enterprise_uuid,
                exc,
                extra={
                    "enterprise_customer_uuid": self.enterprise_uuid,
                    "license_uuids": [str(lic.uuid) for lic, _ in taken],
                },
            )
            self.outcome.fail(
                f"{type(exc).__name__}: {exc}", subject_kind="license", subjects=[str(lic.uuid) for lic, _ in taken]
            )
            if not isinstance(exc, UpstreamError) or isinstance(exc, AuthenticationError | PermissionDeniedError):
                raise  # a bug or bad credentials: every further batch would fail the same way
            return
        self.job.ledger.mark_sent_many(
            [claim for _, claim in taken], as_of=self.run.as_of, run_id=self.run.run_id, dispatch_id=dispatch_id
        )
        self.outcome.sent += len(taken)
        for lic, _ in taken:
            logger.info(
                "Successfully sent license expiration reminder to %s for license %s expiring on %s",
                self.job.emails(lic.user_email),
                lic.uuid,
                plan.expiration_date.date().isoformat(),
                extra={
                    "enterprise_customer_uuid": self.enterprise_uuid,
                    "license_uuid": str(lic.uuid),
                    "dispatch_id": dispatch_id,
                },
            )

    def claim(self, plan: SubscriptionPlan, licenses: list[License]) -> list[Claim | None]:
        expires_at = plan.expiration_date + RECORD_RETENTION
        return self.job.ledger.claim_many(
            [
                {
                    "key": ledger_key(lic.uuid),
                    "kind": LEDGER_KIND,
                    "run_id": self.run.run_id,
                    "expires_at": expires_at,
                    "enterprise_customer_uuid": self.enterprise_uuid,
                    "subject_uuid": str(lic.uuid),
                }
                for lic in licenses
            ]
        )

    def recipient(self, plan: SubscriptionPlan, lic: License) -> Recipient:
        customer = self.customer
        email = lic.user_email or ""
        return Recipient(
            user_alias=UserAlias(email),
            attributes={"email": email, "enterprise_default_language": customer.default_language},
            trigger_properties={
                "license_uuid": str(lic.uuid),
                "expiration_date": braze_datetime(plan.expiration_date),
                "days_until_expiration": days_until_expiration(plan.expiration_date, self.run.as_of),
                "subscription_plan_title": plan.title,
                "enterprise_customer_name": customer.name,
                "enterprise_customer_slug": customer.slug,
                "enterprise_sender_alias": customer.sender_alias_or_default,
                "enterprise_contact_email": customer.contact_email,
            },
        )
