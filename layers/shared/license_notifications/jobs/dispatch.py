"""The dispatcher's logic: validate the request, fix the run's ``as_of`` and run id, enqueue one message
per enterprise. Nothing is enqueued when the request or the configuration is unusable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.clock import new_run_id, resolve_as_of, utcnow
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage, parse_enterprise_uuids
from license_notifications.jobs.expiration_reminders import COMMAND as REMINDERS_COMMAND
from license_notifications.jobs.utilization import COMMAND as UTILIZATION_COMMAND
from license_notifications.rules.utilization import is_current
from license_notifications.services import REMINDER_SETTINGS, UTILIZATION_SETTINGS, Services

logger = logging.getLogger(__name__)

# The settings each job cannot run without (checked before anything is enqueued).
REQUIRED_SETTINGS: dict[Job, tuple[str, ...]] = {
    Job.EXPIRATION_REMINDERS: REMINDER_SETTINGS,
    Job.UTILIZATION: UTILIZATION_SETTINGS,
}
COMMANDS = {Job.EXPIRATION_REMINDERS: REMINDERS_COMMAND, Job.UTILIZATION: UTILIZATION_COMMAND}


def auto_apply_enterprises(license_manager: LicenseManagerClient, as_of: datetime) -> list[str]:
    """Enterprises with at least one active, current, auto-applying plan, from license-manager's all-plans
    feed (one pass, page by page; needs the operator role)."""
    found: dict[str, None] = {}
    for plan in license_manager.all_plans():
        if (
            plan.is_active
            and plan.should_auto_apply_licenses
            and is_current(plan.start_date, plan.expiration_date, as_of)
        ):
            found.setdefault(str(plan.enterprise_customer_uuid), None)
    return list(found)


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


def plan_run(request: DispatchRequest, services: Services) -> tuple[DispatchResult, list[WorkMessage]]:
    """Validate and build the run's messages. Raises ConfigurationError. The only I/O: a utilization run
    without an enterprise list discovers its enterprises in license-manager."""
    services.settings.require(*REQUIRED_SETTINGS.get(request.job, ()))
    as_of = resolve_as_of(request.as_of)
    valid, invalid = parse_enterprise_uuids(request.enterprise_customer_uuids)
    if invalid:
        logger.warning(
            "Ignoring invalid enterprise customer UUID(s): %s", ", ".join(invalid), extra={"invalid": invalid}
        )
    if not valid:
        if request.job is Job.UTILIZATION and request.enterprise_customer_uuids in (None, "", []):
            valid = auto_apply_enterprises(services.license_manager, as_of)
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


def dispatch(request: DispatchRequest, services: Services) -> DispatchResult:
    """Plan the run and enqueue it; a failure is announced on the error topic (when set) and re-raised."""
    try:
        return _dispatch(request, services)
    except Exception as exc:
        if services.settings.error_topic_arn:
            services.notifier.publish_run_failure(job=request.job.value, error=f"{type(exc).__name__}: {exc}")
        raise


def _dispatch(request: DispatchRequest, services: Services) -> DispatchResult:
    result, messages = plan_run(request, services)
    logger.info(
        "Starting %s for %d enterprise customer(s), days_before_expiration=%s, dry_run=%s",
        COMMANDS[request.job],
        len(messages),
        request.days_before_expiration,
        request.dry_run,
        extra={"run_id": result.run_id, "as_of": result.as_of.isoformat(), "job": request.job.value},
    )
    services.queue.send(messages)
    logger.info("Enqueued %d work message(s) for run %s", len(messages), result.run_id)
    return result
