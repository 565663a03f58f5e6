"""License utilization emails to enterprise admins (ADR 9 "Sending Notification Emails", issue 3).

Which plan: the subscription plan used for auto-assign, i.e. among an enterprise's plans that are active,
current (``start_date <= now <= expiration_date``) and ``should_auto_apply_licenses``, the one expiring
soonest (ties broken by the smallest uuid string, so every run picks the same one).

Thresholds: allocated (assigned + activated) over total (every non-revoked license), checked highest first,
100 % then 75 %, in integer arithmetic (74.9 % is below 75 %, 99.9 % is 75 % only). A plan with zero
licenses has no threshold. Each admin gets the 75 % email once and the 100 % email once per plan; when a
plan reaches 100 % before any 75 % email went out only the 100 % email is sent, and a 75 % email is never
sent after a 100 % one. A renewed plan has another uuid, so its threshold state starts afresh.

Weekly digest: an admin is eligible once 7 x 24 hours have passed since ``created`` (when they joined that
enterprise: ADR 9's "activation_date more than 7 days ago"), and then gets the digest once every 7 days
measured from the last one actually sent. The cadence between digests is counted in whole UTC calendar days,
never elapsed seconds (runs are daily at slightly different times of day; seconds would drift the cadence
by a day), so a missed or failed run shifts the cadence and never produces two digests in one week. ``weekly_resend_cutoff`` expresses the same rule as an instant for the ledger's DynamoDB
condition: a previous send is old enough iff ``last_sent < weekly_resend_cutoff(now)``.

Everything here is pure: no I/O, no clock reads (``now`` is passed in), aware datetimes only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

LIMITED_ALLOCATIONS_PERCENT = 75
NO_ALLOCATIONS_PERCENT = 100
WEEKLY_DIGEST_ELIGIBLE_AFTER = timedelta(days=7)  # elapsed time since joining, not calendar days
WEEKLY_DIGEST_INTERVAL_DAYS = 7


class NotificationType(StrEnum):
    """License-manager's notification types (contract section 5); the values are stored in the ledger."""

    LIMITED_ALLOCATIONS_REMAINING = "limited_allocations_remaining"  # 75 %
    NO_ALLOCATIONS_REMAINING = "no_allocations_remaining"  # 100 %
    PERIODIC_INFORMATIONAL = "periodic_informational"  # weekly digest


THRESHOLD_TYPES = (NotificationType.NO_ALLOCATIONS_REMAINING, NotificationType.LIMITED_ALLOCATIONS_REMAINING)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


# -- which plan ----------------------------------------------------------------------------------------------


class AutoAssignCandidate(Protocol):
    """What the rule reads from a plan (``models.SubscriptionPlan`` has these attributes)."""

    @property
    def uuid(self) -> object: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def should_auto_apply_licenses(self) -> bool: ...
    @property
    def start_date(self) -> datetime: ...
    @property
    def expiration_date(self) -> datetime: ...


def is_current(start_date: datetime, expiration_date: datetime, now: datetime) -> bool:
    """license-manager's ``is_current``: ``start_date <= now <= expiration_date`` (both ends inclusive)."""
    _require_aware(start_date, "start_date")
    _require_aware(expiration_date, "expiration_date")
    _require_aware(now, "now")
    return start_date <= now <= expiration_date


def auto_assign_plan[P: AutoAssignCandidate](plans: Iterable[P], now: datetime) -> P | None:
    """The plan used for auto-assign: among active, current, auto-apply plans the one expiring soonest
    (tie-break: smallest ``str(uuid)``). None when the enterprise has no such plan."""
    _require_aware(now, "now")
    candidates = [
        plan
        for plan in plans
        if plan.is_active and plan.should_auto_apply_licenses and is_current(plan.start_date, plan.expiration_date, now)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda plan: (plan.expiration_date, str(plan.uuid)))


# -- thresholds ----------------------------------------------------------------------------------------------


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


def reached_threshold(allocated: int, total: int) -> NotificationType | None:
    """The highest threshold reached by ``allocated`` of ``total`` licenses, or None.

    100 % when ``allocated >= total``, else 75 % when ``allocated * 100 >= 75 * total`` (integers only, so
    74.9 % is not 75 % and 99.9 % is 75 % only). A plan with zero licenses has none. Negative counts are
    a ValueError.
    """
    _count(allocated, "allocated")
    _count(total, "total")
    if total == 0:
        return None
    if allocated * 100 >= NO_ALLOCATIONS_PERCENT * total:
        return NotificationType.NO_ALLOCATIONS_REMAINING
    if allocated * 100 >= LIMITED_ALLOCATIONS_PERCENT * total:
        return NotificationType.LIMITED_ALLOCATIONS_REMAINING
    return None


def threshold_to_send(
    reached: NotificationType | None, already_sent: set[NotificationType] | frozenset[NotificationType]
) -> NotificationType | None:
    """The threshold email one admin should get now for one plan, given what was already sent to them for
    that plan (a different plan uuid, e.g. a renewal, starts from an empty set).

    100 % reached: the 100 % email unless it was sent. 75 % reached: the 75 % email unless the 75 % or the
    100 % email was sent (a 75 % email never follows a 100 % one). Entries other than the two threshold
    types in ``already_sent`` (e.g. the weekly type) are ignored.
    """
    if reached is None:
        return None
    if reached is NotificationType.NO_ALLOCATIONS_REMAINING:
        return None if NotificationType.NO_ALLOCATIONS_REMAINING in already_sent else reached
    if reached is NotificationType.LIMITED_ALLOCATIONS_REMAINING:
        if already_sent & {NotificationType.LIMITED_ALLOCATIONS_REMAINING, NotificationType.NO_ALLOCATIONS_REMAINING}:
            return None
        return reached
    raise ValueError(f"not a threshold notification type: {reached!r}")


def threshold_must_wait(kind: NotificationType, *, other_exists: bool, other_in_flight: bool) -> bool:
    """After claiming a threshold email for one plan and admin, whether it must back off because of the
    other threshold's ledger record (read after claiming, so two racing runs always see one another):
    the 75 % email if any record of the 100 % one exists (never a 75 % after a 100 %); the 100 % email while
    a 75 % send is in flight (it goes out on the next run, after the 75 % one)."""
    if kind is NotificationType.LIMITED_ALLOCATIONS_REMAINING:
        return other_exists
    if kind is NotificationType.NO_ALLOCATIONS_REMAINING:
        return other_in_flight
    return False


# -- weekly digest -------------------------------------------------------------------------------------------


def days_between(earlier: datetime, later: datetime) -> int:
    """Whole UTC calendar days from ``earlier`` to ``later`` (``later.date() - earlier.date()`` in UTC);
    negative when ``later`` is on an earlier UTC day."""
    _require_aware(earlier, "earlier")
    _require_aware(later, "later")
    return (later.astimezone(UTC).date() - earlier.astimezone(UTC).date()).days


def weekly_digest_due(admin_joined: datetime, last_sent: datetime | None, now: datetime) -> bool:
    """True iff the admin joined at least 7 x 24 hours before ``now`` and no digest was sent to them (for
    this enterprise) within the last 6 calendar days: ``days_between(last_sent, now) >= 7``."""
    _require_aware(admin_joined, "admin_joined")
    _require_aware(now, "now")
    if now - admin_joined < WEEKLY_DIGEST_ELIGIBLE_AFTER:
        return False
    if last_sent is None:
        return True
    return days_between(last_sent, now) >= WEEKLY_DIGEST_INTERVAL_DAYS


def weekly_resend_cutoff(now: datetime) -> datetime:
    """The instant (UTC) such that a previous digest is old enough iff ``last_sent < cutoff``: midnight UTC
    of ``now``'s UTC date minus 6 days. Agrees exactly with :func:`weekly_digest_due`'s interval rule."""
    _require_aware(now, "now")
    today = now.astimezone(UTC).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    return midnight - timedelta(days=WEEKLY_DIGEST_INTERVAL_DAYS - 1)


# -- recipients ----------------------------------------------------------------------------------------------


def admin_is_reachable(user_is_active: bool, email: str | None) -> bool:
    """Skip a deactivated LMS user or one without an email.

    The enterprise-learner record's own ``active`` flag is deliberately not read: on the real LMS it marks
    the user's one *current* enterprise, so an admin of several enterprises has ``active: false`` in all but
    one of them and is still their admin (contract 3.3; removed links are not listed at all)."""
    return bool(user_is_active) and bool((email or "").strip())
