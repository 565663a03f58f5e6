"""License utilization emails to enterprise admins for one enterprise (ADR 9, issue 3).

For an enterprise whose auto-assign plan (active, current, ``should_auto_apply_licenses``, expiring soonest)
has reached 75 % or 100 % allocation, each admin gets that threshold's email once per plan; and each admin
gets the weekly digest from the 7th day after joining, then every 7 days from the last one actually sent.
One Braze trigger per (plan, notification type), at most 50 admins a request, plan data in the top-level
``trigger_properties``, ``user_name`` and ``email`` per recipient (``external_user_id`` = LMS user id).

The same claim / send / mark / release ledger protocol as the expiration reminders. Ledger keys:
``utilization#<plan>#<enterprise>#<admin id>#<type>`` for thresholds (a renewal is another plan, so it
starts afresh) and ``weekly_digest#<enterprise>#<admin id>`` for the digest (a renewal does not restart it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any

from license_notifications.adapters.braze import MAX_RECIPIENTS_PER_REQUEST, Recipient, braze_datetime
from license_notifications.adapters.ledger import CLAIMED
from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import EnterpriseJob, JobRun, malformed_reporter
from license_notifications.jobs.pipeline import BatchSender, Campaign, Delivery, Taken
from license_notifications.models import EnterpriseAdmin, EnterpriseCustomer, SubscriptionPlan
from license_notifications.outcome import EnterpriseOutcome
from license_notifications.rules.utilization import (
    THRESHOLD_TYPES,
    NotificationType,
    admin_is_reachable,
    auto_assign_plan,
    reached_threshold,
    threshold_must_wait,
    threshold_to_send,
    weekly_digest_due,
    weekly_resend_cutoff,
)

logger = logging.getLogger(__name__)

COMMAND = "send_license_consumption_notifications"
THRESHOLD_RETENTION = timedelta(days=90)  # threshold records outlive their plan by this much
WEEKLY_RETENTION = timedelta(days=60)  # refreshed at every digest; an admin gone quiet is forgotten after this
SEND_ORDER = (
    NotificationType.NO_ALLOCATIONS_REMAINING,
    NotificationType.LIMITED_ALLOCATIONS_REMAINING,
    NotificationType.PERIODIC_INFORMATIONAL,
)


def threshold_key(plan_uuid: object, enterprise_uuid: str, admin_id: int | str, kind: NotificationType) -> str:
    return f"utilization#{plan_uuid}#{enterprise_uuid}#{admin_id}#{kind.value}"


def weekly_key(enterprise_uuid: str, admin_id: int | str) -> str:
    return f"weekly_digest#{enterprise_uuid}#{admin_id}"


class UtilizationNotifications(EnterpriseJob):
    """The job, wired to its adapters; ``campaigns`` maps each notification type to its Braze campaign id."""

    name = Job.UTILIZATION
    logger = logger

    def __init__(self, *, campaigns: dict[NotificationType, str], admin_portal_base_url: str, **adapters: Any):
        super().__init__(**adapters)
        self.campaigns = campaigns
        self.admin_portal_base_url = admin_portal_base_url.rstrip("/")

    def describe(self, run: JobRun) -> str:
        return f"as_of={run.as_of.isoformat()}"

    def process(self, enterprise_customer_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> None:
        _EnterpriseUtilization(self, enterprise_customer_uuid, run, outcome).process()


class _EnterpriseUtilization:
    def __init__(self, job: UtilizationNotifications, enterprise_uuid: str, run: JobRun, outcome):
        self.job = job
        self.enterprise_uuid = enterprise_uuid
        self.run = run
        self.outcome: EnterpriseOutcome = outcome
        self.where = {"enterprise_customer_uuid": enterprise_uuid}

    def process(self) -> None:
        plans = self.job.license_manager.enterprise_plans(
            self.enterprise_uuid, on_malformed=malformed_reporter(logger, self.outcome, "plan", "uuid")
        )
        plan = auto_assign_plan(plans, self.run.as_of)
        if plan is None:
            self.outcome.skipped["no_auto_apply_plan"] += 1
            logger.info(
                "Skipping enterprise %s: no active, current plan auto-applies licenses",
                self.enterprise_uuid,
                extra=self.where,
            )
            return
        counts = plan.licenses
        reached = reached_threshold(counts.allocated, counts.total)
        customer = self.job.lms.enterprise_customer(self.enterprise_uuid)
        admins = self.reachable_admins()
        logger.info(
            "Found %d admin(s) for enterprise %s; plan %s allocated %d of %d (%s)",
            len(admins),
            self.enterprise_uuid,
            plan.uuid,
            counts.allocated,
            counts.total,
            reached.value if reached else "below 75 %",
            extra={**self.where, "subscription_plan_uuid": str(plan.uuid)},
        )
        due = self.due_admins(plan, reached, admins)
        properties = self.plan_properties(plan, customer)
        for kind in SEND_ORDER:
            batch = [self.delivery(kind, plan, admin) for admin in due.get(kind, [])]
            sender = BatchSender(
                self.job,
                self.run,
                self.outcome,
                subject_kind="admin",
                after_claim=(lambda taken, kind=kind: self.drop_conflicting(kind, plan, taken))
                if kind in THRESHOLD_TYPES
                else None,
            )
            campaign = Campaign(self.job.campaigns[kind], properties, sent_type=kind.value)
            for start in range(0, len(batch), MAX_RECIPIENTS_PER_REQUEST):
                sender.send(campaign, batch[start : start + MAX_RECIPIENTS_PER_REQUEST])

    def reachable_admins(self) -> list[EnterpriseAdmin]:
        # Admins per enterprise number in the tens: held in memory, unlike licenses.
        admins = []
        malformed = malformed_reporter(logger, self.outcome, "admin", "id")
        for admin in self.job.lms.enterprise_admins(self.enterprise_uuid, on_malformed=malformed):
            if admin_is_reachable(admin.user_is_active, admin.email):
                admins.append(admin)
            else:
                self.outcome.skipped["admin_unreachable"] += 1
        return admins

    def due_admins(
        self, plan: SubscriptionPlan, reached: NotificationType | None, admins: list[EnterpriseAdmin]
    ) -> dict[NotificationType, list[EnterpriseAdmin]]:
        keys = []
        for admin in admins:
            keys.append(weekly_key(self.enterprise_uuid, admin.id))
            keys.extend(threshold_key(plan.uuid, self.enterprise_uuid, admin.id, kind) for kind in THRESHOLD_TYPES)
        sent = self.job.ledger.sent(keys)
        due: dict[NotificationType, list[EnterpriseAdmin]] = defaultdict(list)
        for admin in admins:
            already = {
                k for k in THRESHOLD_TYPES if threshold_key(plan.uuid, self.enterprise_uuid, admin.id, k) in sent
            }
            threshold = threshold_to_send(reached, already)
            if threshold is not None:
                due[threshold].append(admin)
            elif reached is not None:
                self.outcome.skipped["threshold_already_sent"] += 1
            if weekly_digest_due(admin.created, sent.get(weekly_key(self.enterprise_uuid, admin.id)), self.run.as_of):
                due[NotificationType.PERIODIC_INFORMATIONAL].append(admin)
            else:
                self.outcome.skipped["weekly_not_due"] += 1
        self.outcome.due += sum(len(batch) for batch in due.values())
        return due

    def plan_properties(self, plan: SubscriptionPlan, customer: EnterpriseCustomer) -> dict[str, Any]:
        return {
            "enterprise_customer_id": self.enterprise_uuid,
            "enterprise_customer_name": customer.name,
            "subscription_plan_uuid": str(plan.uuid),
            "subscription_plan_title": plan.title,
            "subscription_plan_expiration_date": braze_datetime(plan.expiration_date),
            "allocated_license_count": plan.licenses.allocated,
            "total_license_count": plan.licenses.total,
            "admin_portal_url": f"{self.job.admin_portal_base_url}/{customer.slug}",
        }

    def key(self, kind: NotificationType, plan: SubscriptionPlan, admin: EnterpriseAdmin) -> str:
        if kind is NotificationType.PERIODIC_INFORMATIONAL:
            return weekly_key(self.enterprise_uuid, admin.id)
        return threshold_key(plan.uuid, self.enterprise_uuid, admin.id, kind)

    def delivery(self, kind: NotificationType, plan: SubscriptionPlan, admin: EnterpriseAdmin) -> Delivery:
        weekly = kind is NotificationType.PERIODIC_INFORMATIONAL
        return Delivery(
            subject=str(admin.id),
            claim={
                "key": self.key(kind, plan, admin),
                "kind": kind.value,
                "run_id": self.run.run_id,
                "expires_at": self.run.as_of + WEEKLY_RETENTION
                if weekly
                else plan.expiration_date + THRESHOLD_RETENTION,
                "enterprise_customer_uuid": self.enterprise_uuid,
                "subject_uuid": str(plan.uuid),
                "resend_if_sent_before": weekly_resend_cutoff(self.run.as_of) if weekly else None,
            },
            recipient=Recipient(
                external_user_id=str(admin.user_id),
                trigger_properties={"user_name": admin.display_name, "email": admin.email},
            ),
            description=(
                f"{kind.value} email to admin {admin.id} ({self.job.emails(admin.email)}) "
                f"of enterprise {self.enterprise_uuid}"
            ),
            log_extra={"admin_id": admin.id, "notification_type": kind.value},
        )

    def drop_conflicting(self, kind: NotificationType, plan: SubscriptionPlan, taken: list[Taken]) -> list[Taken]:
        """Keep the 75 % and 100 % emails of one plan and admin in order, even across racing runs.

        Claim first, check second (a strongly consistent read of the other threshold's record):
        - a 75 % claim backs off if a 100 % record exists (claimed or sent): never a 75 % after a 100 %;
        - a 100 % claim backs off while a 75 % claim is in flight: the 100 % email waits for the next run.
        Whichever way two runs interleave, at least one of them sees the other's claim."""
        limited, full = NotificationType.LIMITED_ALLOCATIONS_REMAINING, NotificationType.NO_ALLOCATIONS_REMAINING
        other = full if kind is limited else limited
        keys = {d.subject: threshold_key(plan.uuid, self.enterprise_uuid, d.subject, other) for d, _ in taken}
        states = self.job.ledger.states(keys.values())
        waiting = [
            (d, claim)
            for d, claim in taken
            if threshold_must_wait(
                kind, other_exists=keys[d.subject] in states, other_in_flight=states.get(keys[d.subject]) == CLAIMED
            )
        ]
        if waiting:
            self.job.ledger.release_many([claim for _, claim in waiting])
            reason = "superseded_by_100_percent" if kind is limited else "waits_for_75_percent"
            self.outcome.skipped[reason] += len(waiting)
        return [entry for entry in taken if entry not in waiting]
