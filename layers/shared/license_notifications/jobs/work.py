"""The worker's logic: run one work message (one enterprise of one run) through its job."""

from __future__ import annotations

from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.expiration_reminders import ReminderRun
from license_notifications.jobs.outcome import EnterpriseOutcome
from license_notifications.services import Services


class EnterpriseFailedError(Exception):
    """Raised for a message whose enterprise did not complete, so SQS delivers it again (then to the DLQ)."""

    def __init__(self, outcome: EnterpriseOutcome):
        self.outcome = outcome
        detail = outcome.error or f"{outcome.failed} recipient(s) failed"
        super().__init__(f"{outcome.job} for enterprise {outcome.enterprise_customer_uuid} failed: {detail}")


def process_work_message(message: WorkMessage, services: Services) -> EnterpriseOutcome:
    enterprise = str(message.enterprise_customer_uuid)
    if message.job is Job.EXPIRATION_REMINDERS:
        run = ReminderRun(
            run_id=message.run_id,
            as_of=message.as_of,
            days_before_expiration=message.days_before_expiration,
            dry_run=message.dry_run,
        )
        return services.expiration_reminders().run_enterprise(enterprise, run)
    raise NotImplementedError(f"job {message.job.value!r} is not handled by this worker yet")
