"""License expiration reminders for one enterprise (spec 003): fetch, decide, claim, alias, send, mark.

Licenses are streamed one license-manager page (<= 500) at a time and sent in Braze batches of 50:
one ``/users/alias/new`` and one ``/campaigns/trigger/send`` request per 50 reminders.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from license_notifications.adapters.braze import MAX_RECIPIENTS_PER_REQUEST, Recipient, UserAlias, braze_datetime
from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import EnterpriseJob, JobRun, malformed_reporter
from license_notifications.jobs.pipeline import BatchSender, Campaign, Delivery, OutOfTimeError
from license_notifications.models import EnterpriseCustomer, License, SubscriptionPlan
from license_notifications.outcome import EnterpriseOutcome
from license_notifications.rules.expiration import (
    ReminderDecision,
    days_until_expiration,
    expires_in_window,
    reminder_decision,
)

logger = logging.getLogger(__name__)

COMMAND = "send_license_expiration_reminders"
LEDGER_KIND = "expiration_reminder"
RECORD_RETENTION = timedelta(days=90)  # ledger records live until the plan expired this long ago


def ledger_key(license_uuid: UUID | str) -> str:
    return f"{LEDGER_KIND}#{license_uuid}"


class ExpirationReminders(EnterpriseJob):
    """The job, wired to its adapters. A dry run reads the ledger (to report only what is due) but writes nothing."""

    name = Job.EXPIRATION_REMINDERS
    logger = logger

    def __init__(self, *, campaign_id: str, **adapters: Any):
        super().__init__(**adapters)
        self.campaign_id = campaign_id

    def describe(self, run: JobRun) -> str:
        return f"days_before_expiration={run.days_before_expiration}"

    def process(self, enterprise_customer_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> None:
        _EnterpriseReminders(self, enterprise_customer_uuid, run, outcome).process()


class _EnterpriseReminders:
    """One enterprise's pass; holds the lazily fetched enterprise customer."""

    def __init__(self, job: ExpirationReminders, enterprise_uuid: str, run: JobRun, outcome: EnterpriseOutcome):
        self.job = job
        self.enterprise_uuid = enterprise_uuid
        self.run = run
        self.outcome = outcome
        self.where = {"enterprise_customer_uuid": enterprise_uuid}
        self.sender = BatchSender(job, run, outcome, subject_kind="license")
        self.campaign = Campaign(job.campaign_id)
        self._customer: EnterpriseCustomer | None = None

    @property
    def customer(self) -> EnterpriseCustomer:
        if self._customer is None:
            self._customer = self.job.lms.enterprise_customer(self.enterprise_uuid)
        return self._customer

    def process(self) -> None:
        agreement = self.job.license_manager.customer_agreement(
            self.enterprise_uuid, on_malformed=malformed_reporter(logger, self.outcome, "plan", "uuid")
        )
        if agreement is None:
            # On the real license-manager a service account without the enterprise_openedx_operator:* role
            # gets an empty 200, not a 403 (contract 2.4): never take "no agreement" for "nothing to do".
            self.outcome.fail_enterprise(
                f"license-manager returned no customer agreement for enterprise {self.enterprise_uuid}: the "
                "service account likely lacks the enterprise_openedx_operator:* role (missing permissions answer "
                "an empty 200), or the enterprise has no agreement"
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
        # Due licenses wait here until a Braze batch is full, across pages and plans (recipients carry their
        # own plan data), so an enterprise costs 2 Braze requests per 50 reminders plus one final partial batch.
        pending: list[Delivery] = []
        on_malformed = malformed_reporter(logger, self.outcome, "license", "uuid")
        for plan in agreement.subscriptions:
            window = expires_in_window(plan.expiration_date, self.run.as_of, self.run.days_before_expiration)
            if not (plan.is_active and window):
                continue
            for page in self.job.license_manager.license_pages(plan.uuid, on_malformed=on_malformed):
                due = self.due_licenses(plan, page)
                logger.info(
                    "Found %d licenses to process for enterprise %s",
                    len(due),
                    self.enterprise_uuid,
                    extra={**self.where, "subscription_plan_uuid": str(plan.uuid)},
                )
                pending.extend(self.delivery(plan, lic) for lic in due)
                while len(pending) >= MAX_RECIPIENTS_PER_REQUEST:
                    self.sender.send(self.campaign, pending[:MAX_RECIPIENTS_PER_REQUEST])
                    del pending[:MAX_RECIPIENTS_PER_REQUEST]
                if self.run.out_of_time():  # nothing is claimed for what waits in ``pending``
                    raise OutOfTimeError("stopped between license pages: the invocation's time is nearly up")
        self.sender.send(self.campaign, pending)

    def due_licenses(self, plan: SubscriptionPlan, page: list[License]) -> list[License]:
        sent = self.job.ledger.sent(ledger_key(lic.uuid) for lic in page)
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

    def delivery(self, plan: SubscriptionPlan, lic: License) -> Delivery:
        email = lic.user_email or ""
        customer = self.customer  # fetched once, before anything is claimed: an unknown enterprise holds nothing
        return Delivery(
            subject=str(lic.uuid),
            claim={
                "key": ledger_key(lic.uuid),
                "kind": LEDGER_KIND,
                "run_id": self.run.run_id,
                "expires_at": plan.expiration_date + RECORD_RETENTION,
                "enterprise_customer_uuid": self.enterprise_uuid,
                "subject_uuid": str(lic.uuid),
            },
            alias=UserAlias(email),
            recipient=Recipient(
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
            ),
            description=(
                f"license expiration reminder to {self.job.emails(email)} for license {lic.uuid} "
                f"expiring on {plan.expiration_date.date().isoformat()}"
            ),
            log_extra={"license_uuid": str(lic.uuid)},
        )
