"""The worker's logic: run one work message (one enterprise of one run) through its job."""

from __future__ import annotations

from license_notifications.errors import ConfigurationError
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.outcome import EnterpriseOutcome
from license_notifications.services import Services


class EnterpriseFailedError(Exception):
    """Raised for a message whose enterprise did not complete, so SQS delivers it again (then to the DLQ)."""

    def __init__(self, outcome: EnterpriseOutcome):
        self.outcome = outcome
        detail = outcome.error or f"{outcome.failed} recipient(s) failed"
        super().__init__(f"{outcome.job} for enterprise {outcome.enterprise_customer_uuid} failed: {detail}")


def process_work_message(
    message: WorkMessage, services: Services, *, deadline: float | None = None
) -> EnterpriseOutcome:
    """Route the message to its job, then publish an error notification for each failure (if configured).

    ``deadline`` (monotonic seconds): no new Braze batch starts after it (the worker derives it from the
    Lambda's remaining time, so an invocation never times out between a send and its ledger record)."""
    enterprise = str(message.enterprise_customer_uuid)
    try:
        outcome = _run(message, enterprise, services, deadline)
    except ConfigurationError as exc:  # stops the run; still tell the operators which enterprise it hit
        outcome = EnterpriseOutcome(message.job, enterprise, dry_run=message.dry_run)
        outcome.fail_enterprise(f"ConfigurationError: {exc}")
        if services.settings.error_topic_arn:
            services.notifier.publish(outcome, run_id=message.run_id)
        raise
    if (outcome.failures or outcome.problems) and services.notifier is not None:
        services.notifier.publish(outcome, run_id=message.run_id)
    return outcome


def _run(message: WorkMessage, enterprise: str, services: Services, deadline: float | None) -> EnterpriseOutcome:
    job = services.expiration_reminders() if message.job is Job.EXPIRATION_REMINDERS else services.utilization()
    return job.run_enterprise(enterprise, JobRun.from_message(message, deadline=deadline))
