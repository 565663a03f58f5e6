"""License expiration reminders for one enterprise (spec 003): fetch, decide, claim, alias, send, mark.

Licenses are streamed one license-manager page (<= 500) at a time and sent in Braze batches of 50:
one ``/users/alias/new`` and one ``/campaigns/trigger/send`` request per 50 reminders. The enterprise flow
(agreement, opt-out, pages, batches, continuations) is ``jobs/license_emails.py``, shared with the
post-expiration emails; this module says which plans and licenses are due and what a reminder carries.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import UUID

from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.license_emails import (
    PAGES_PER_MESSAGE,
    EnterpriseLicenses,
    LicenseEmailJob,
)
from license_notifications.models import License, SubscriptionPlan
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
__all__ = ["COMMAND", "LEDGER_KIND", "PAGES_PER_MESSAGE", "RECORD_RETENTION", "ExpirationReminders", "ledger_key"]


def ledger_key(license_uuid: UUID | str) -> str:
    return f"{LEDGER_KIND}#{license_uuid}"


class ExpirationReminders(LicenseEmailJob):
    """The job, wired to its adapters. A dry run reads the ledger (to report only what is due) but writes nothing."""

    name = Job.EXPIRATION_REMINDERS
    logger = logger

    def describe(self, run: JobRun) -> str:
        return f"days_before_expiration={run.days_before_expiration}"

    def enterprise_pass(self, enterprise_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> EnterpriseLicenses:
        return _EnterpriseReminders(self, enterprise_uuid, run, outcome)


class _EnterpriseReminders(EnterpriseLicenses):
    """One enterprise's reminders: plans expiring in the window, activated licenses not yet reminded."""

    ledger_key = staticmethod(ledger_key)
    ledger_kind = LEDGER_KIND
    record_retention = RECORD_RETENTION
    email_name = "license expiration reminder"
    expiry_verb = "expiring"

    def in_window(self, plan: SubscriptionPlan) -> bool:
        return plan.is_active and expires_in_window(
            plan.expiration_date, self.run.as_of, self.run.days_before_expiration
        )

    def decide(self, plan: SubscriptionPlan, lic: License, *, already_sent: bool) -> ReminderDecision:
        return reminder_decision(
            status=lic.status,
            email=lic.user_email,
            expiration_date=plan.expiration_date,
            already_sent=already_sent,
            opted_out=False,
            now=self.run.as_of,
            days_before_expiration=self.run.days_before_expiration,
        )

    def day_count(self, plan: SubscriptionPlan) -> dict[str, int]:
        return {"days_until_expiration": days_until_expiration(plan.expiration_date, self.run.as_of)}
