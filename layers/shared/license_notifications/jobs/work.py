"""The worker's logic: run one work message (one enterprise of one run) through its job."""

from __future__ import annotations

from collections.abc import Callable

from license_notifications.adapters.notifier import ErrorNotifier
from license_notifications.errors import ConfigurationError
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import EnterpriseJob, JobRun
from license_notifications.outcome import EnterpriseOutcome


class EnterpriseFailedError(Exception):
    """Raised for a message whose enterprise did not complete, so SQS delivers it again (then to the DLQ)."""

    def __init__(self, outcome: EnterpriseOutcome):
        self.outcome = outcome
        detail = outcome.error or f"{outcome.failed} recipient(s) failed"
        super().__init__(f"{outcome.job} for enterprise {outcome.enterprise_customer_uuid} failed: {detail}")


def process_work_message(
    message: WorkMessage,
    job_for: Callable[[Job], EnterpriseJob],
    notifier: ErrorNotifier | None,
    *,
    deadline: float | None = None,
    enqueue: Callable[[list[WorkMessage]], object] | None = None,
) -> EnterpriseOutcome:
    """Run the message through ``job_for(message.job)``, then publish an error notification for each failure
    and problem (``notifier`` None: notifications are off).

    ``deadline`` (monotonic seconds): no new Braze request or page starts after it (the worker derives it from
    the Lambda's remaining time, so an invocation never times out between a send and its ledger record).
    ``enqueue`` takes the continuation messages a large enterprise or a timeout hands the rest of the run on
    in (the work queue; the CLI's own list); without it the run is not handed on."""
    enterprise = str(message.enterprise_customer_uuid)
    try:
        run = JobRun.from_message(message, deadline=deadline, enqueue=enqueue)
        outcome = job_for(message.job).run_enterprise(enterprise, run)
    except ConfigurationError as exc:  # stops the run; still tell the operators which enterprise it hit
        outcome = EnterpriseOutcome(message.job, enterprise, dry_run=message.dry_run)
        outcome.fail_enterprise(f"ConfigurationError: {exc}")
        if notifier is not None:
            notifier.publish(outcome, run_id=message.run_id)
        raise
    if (outcome.failures or outcome.problems) and notifier is not None:
        notifier.publish(outcome, run_id=message.run_id)
    return outcome
