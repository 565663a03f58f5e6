"""The dispatcher's logic: validate the request, fix the run's ``as_of`` and run id, enqueue one message
per enterprise. Nothing is enqueued when the request or the configuration is unusable."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from license_notifications.adapters.queue import WorkQueue
from license_notifications.clock import new_run_id, resolve_as_of, utcnow
from license_notifications.config import Settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage, parse_enterprise_uuids
from license_notifications.jobs.expiration_reminders import COMMAND as REMINDERS_COMMAND

logger = logging.getLogger(__name__)

# The settings each job cannot run without (checked before anything is enqueued).
REQUIRED_SETTINGS: dict[Job, tuple[str, ...]] = {
    Job.EXPIRATION_REMINDERS: ("expiration_reminder_campaign",),
}


@dataclass
class DispatchResult:
    job: Job
    run_id: str
    as_of: datetime
    dry_run: bool
    enterprise_customer_uuids: list[str] = field(default_factory=list)
    invalid_enterprise_customer_uuids: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "job": self.job.value,
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "enqueued": len(self.enterprise_customer_uuids),
            "enterprise_customer_uuids": self.enterprise_customer_uuids,
            "invalid_enterprise_customer_uuids": self.invalid_enterprise_customer_uuids,
        }


def plan_run(
    request: DispatchRequest,
    settings: Settings,
    *,
    discover: Callable[[datetime], Iterable[str]] | None = None,
) -> tuple[DispatchResult, list[WorkMessage]]:
    """Validate and build the run's messages (no I/O but ``discover``). Raises ConfigurationError."""
    settings.require(*REQUIRED_SETTINGS.get(request.job, ()))
    as_of = resolve_as_of(request.as_of)
    valid, invalid = parse_enterprise_uuids(request.enterprise_customer_uuids)
    if invalid:
        logger.warning(
            "Ignoring invalid enterprise customer UUID(s): %s", ", ".join(invalid), extra={"invalid": invalid}
        )
    if not valid:
        if request.enterprise_customer_uuids in (None, "", []) and discover is not None:
            valid = list(dict.fromkeys(discover(as_of)))
        else:
            raise ConfigurationError(
                "No valid enterprise customer UUIDs provided"
                + (f" (invalid: {', '.join(invalid)})" if invalid else " (enterprise_customer_uuids is empty)")
            )
    result = DispatchResult(request.job, new_run_id(request.job.value, as_of), as_of, request.dry_run, valid, invalid)
    dispatched_at = utcnow()
    messages = [
        WorkMessage(
            job=request.job,
            run_id=result.run_id,
            enterprise_customer_uuid=uuid,
            as_of=as_of,
            days_before_expiration=request.days_before_expiration,
            dry_run=request.dry_run,
            dispatched_at=dispatched_at,
        )
        for uuid in valid
    ]
    return result, messages


def dispatch(
    request: DispatchRequest,
    settings: Settings,
    queue: WorkQueue,
    *,
    discover: Callable[[datetime], Iterable[str]] | None = None,
) -> DispatchResult:
    """Plan the run and enqueue it."""
    result, messages = plan_run(request, settings, discover=discover)
    logger.info(
        "Starting %s for %d enterprise customer(s), days_before_expiration=%s, dry_run=%s",
        REMINDERS_COMMAND if request.job is Job.EXPIRATION_REMINDERS else request.job.value,
        len(messages),
        request.days_before_expiration,
        request.dry_run,
        extra={"run_id": result.run_id, "as_of": result.as_of.isoformat(), "job": request.job.value},
    )
    queue.send(messages)
    logger.info("Enqueued %d work message(s) for run %s", len(messages), result.run_id)
    return result
