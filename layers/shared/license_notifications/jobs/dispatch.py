"""The dispatcher's logic: validate the request, fix the run's ``as_of`` and run id, discover the
enterprises when no list is given, enqueue one message per enterprise. Nothing is enqueued when the request
or the configuration is unusable."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.adapters.notifier import ErrorNotifier
from license_notifications.adapters.queue import WorkQueue
from license_notifications.clock import new_run_id, resolve_as_of, utcnow
from license_notifications.config import Settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage, parse_enterprise_uuids
from license_notifications.jobs.expiration_reminders import COMMAND as REMINDERS_COMMAND
from license_notifications.jobs.plan_expiration_emails import COMMAND as PLAN_EXPIRATION_COMMAND
from license_notifications.jobs.utilization import COMMAND as UTILIZATION_COMMAND
from license_notifications.models import SubscriptionPlan
from license_notifications.rules.expiration import expires_in_window
from license_notifications.rules.plan_expiration import DEFAULT_DAYS_SINCE_EXPIRATION, plan_expired_in_window
from license_notifications.rules.utilization import auto_assign_plan

logger = logging.getLogger(__name__)

COMMANDS = {
    Job.EXPIRATION_REMINDERS: REMINDERS_COMMAND,
    Job.UTILIZATION: UTILIZATION_COMMAND,
    Job.PLAN_EXPIRATION_EMAILS: PLAN_EXPIRATION_COMMAND,
}
EMPTY_FEED = (
    "license-manager's all-plans feed is empty: the service account likely lacks the "
    "enterprise_openedx_operator:* role (license-manager answers an empty 200, not a 403, without it)"
)


def discover_enterprises(
    license_manager: LicenseManagerClient,
    job: Job,
    as_of: datetime,
    days_before_expiration: int,
    days_since_expiration: int = DEFAULT_DAYS_SINCE_EXPIRATION,
) -> list[str]:
    """The enterprises a run without an enterprise list covers, from license-manager's all-plans feed (one
    pass, page by page; needs the operator role): for reminders, those with an active plan expiring within
    the window; for the post-expiration emails, those with an active plan expired within theirs; for
    utilization, those with an active, current, auto-applying plan. An empty feed is a ConfigurationError
    (missing permissions look like an empty feed), never a silent success."""
    if job is Job.EXPIRATION_REMINDERS:

        def wanted(plan: SubscriptionPlan) -> bool:
            return plan.is_active and expires_in_window(plan.expiration_date, as_of, days_before_expiration)
    elif job is Job.PLAN_EXPIRATION_EMAILS:

        def wanted(plan: SubscriptionPlan) -> bool:
            return plan_expired_in_window(
                is_active=plan.is_active, expiration_date=plan.expiration_date, now=as_of, days=days_since_expiration
            )
    else:

        def wanted(plan: SubscriptionPlan) -> bool:
            return auto_assign_plan([plan], as_of) is not None

    found: dict[str, None] = {}
    seen = 0
    for plan in license_manager.all_plans(on_malformed=_log_malformed_plan):
        seen += 1
        if wanted(plan):
            found.setdefault(str(plan.enterprise_customer_uuid), None)
    if not seen:
        raise ConfigurationError(EMPTY_FEED)
    logger.info("Discovered %d enterprise(s) among %d plan(s)", len(found), seen, extra={"job": job.value})
    return list(found)


def _log_malformed_plan(item: object, exc: Exception) -> None:
    plan_uuid = item.get("uuid") if isinstance(item, dict) else None
    logger.error("Skipping malformed plan %s in the all-plans feed: %s", plan_uuid or "?", exc)


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
    request: DispatchRequest, settings: Settings, license_manager: LicenseManagerClient
) -> tuple[DispatchResult, list[WorkMessage]]:
    """Validate and build the run's messages. Raises ConfigurationError (also for an enterprise list that is
    given but holds no valid uuid, empty included). The only I/O: a run without an enterprise list
    (``None``) discovers its enterprises in license-manager."""
    settings.require_job(request.job)
    as_of = resolve_as_of(request.as_of)
    valid, invalid = parse_enterprise_uuids(request.enterprise_customer_uuids)
    if invalid:
        logger.warning(
            "Ignoring invalid enterprise customer UUID(s): %s", ", ".join(invalid), extra={"invalid": invalid}
        )
    if not valid:
        # Only an absent list (None) means "discover"; a list given but empty ("", [], separators only) or
        # holding only invalid uuids is the spec's configuration error, whatever the job.
        if request.enterprise_customer_uuids is not None:
            raise ConfigurationError(
                "No valid enterprise customer UUIDs provided"
                + (f" (invalid: {', '.join(invalid)})" if invalid else " (enterprise_customer_uuids is empty)")
            )
        valid = discover_enterprises(
            license_manager, request.job, as_of, request.days_before_expiration, request.days_since_expiration
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
            days_since_expiration=request.days_since_expiration,
            dry_run=request.dry_run,
            dispatched_at=dispatched_at,
        )
        for uuid in valid
    ]
    return result, messages


def window_of(request: DispatchRequest) -> str:
    """The run's window as the start log line names it."""
    if request.job is Job.PLAN_EXPIRATION_EMAILS:
        return f"days_since_expiration={request.days_since_expiration}"
    return f"days_before_expiration={request.days_before_expiration}"


def dispatch(
    request: DispatchRequest,
    *,
    settings: Settings,
    license_manager: LicenseManagerClient,
    queue: WorkQueue,
    notifier: ErrorNotifier | None,
) -> DispatchResult:
    """Plan the run and enqueue it; a failure is announced on the error topic (``notifier``) and re-raised."""
    try:
        result, messages = plan_run(request, settings, license_manager)
        logger.info(
            "Starting %s for %d enterprise customer(s), %s, dry_run=%s",
            COMMANDS[request.job],
            len(messages),
            window_of(request),
            request.dry_run,
            extra={"run_id": result.run_id, "as_of": result.as_of.isoformat(), "job": request.job.value},
        )
        queue.send(messages)
    except Exception as exc:
        if notifier is not None:
            notifier.publish_run_failure(job=request.job.value, error=f"{type(exc).__name__}: {exc}")
        raise
    logger.info("Enqueued %d work message(s) for run %s", len(messages), result.run_id)
    return result
