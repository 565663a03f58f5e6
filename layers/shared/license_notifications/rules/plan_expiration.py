"""Who is due a post-expiration email: "your subscription plan has expired" (license-manager's
``send_subscription_plan_expiration_emails``, contract 2.5), with this service's additions.

A license is due iff

- its status is ``activated``;
- its plan is active (``is_active``) and expired inside the window
  ``now - days_since_expiration < expiration_date <= now`` (default 7 days). It is a true window: a plan
  that expired an hour ago is due now, not at the next midnight, and a missed run loses nothing;
- no post-expiration email for that license is recorded as sent;
- the enterprise has not opted out (customer agreement ``disable_expiration_notifications``);
- the learner does not continue under a renewal: a plan is renewed when another plan of the agreement lists
  it in ``prior_renewals``, and a learner continues when their email holds an ``activated`` or ``assigned``
  license in such a renewal (see ``renewals_of``). They are skipped with the reason ``renewed``. When that
  cannot be known (a plan of the agreement did not parse, so it may be a renewal), the license waits with the
  reason ``renewal_unknown``: a "your plan expired" email cannot be taken back, a late one can still be sent.

What license-manager does differently (contract 2.5): its window is the last N full UTC days,
``[today 00:00 - N days, today 00:00)``, so an expiry of today waits until tomorrow; and it ignores
``is_active``, the opt-out and renewals.

Everything here is pure: no I/O, no clock reads (``now`` is passed in), aware datetimes only.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol
from uuid import UUID

DEFAULT_DAYS_SINCE_EXPIRATION = 7
MAX_DAYS_SINCE_EXPIRATION = 365  # the template's DaysSinceExpiration bound too; the ledger's retention covers it
CONTINUING_STATUSES = ("activated", "assigned")  # a renewal license with one of these continues the access


class PlanExpirationDecision(StrEnum):
    """Why a license is or is not due. Every value but ``DUE`` is a skip reason (logged and counted)."""

    DUE = "due"
    NOT_ACTIVATED = "not_activated"
    PLAN_INACTIVE = "plan_inactive"
    NOT_IN_WINDOW = "not_in_window"
    ALREADY_SENT = "already_sent"
    OPTED_OUT = "opted_out"
    NO_EMAIL = "no_email"
    RENEWED = "renewed"
    RENEWAL_UNKNOWN = "renewal_unknown"


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def validate_days_since_expiration(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"days_since_expiration must be an integer, got {days!r}")
    if not 1 <= days <= MAX_DAYS_SINCE_EXPIRATION:
        raise ValueError(f"days_since_expiration must be between 1 and {MAX_DAYS_SINCE_EXPIRATION}, got {days}")
    return days


def expired_window(now: datetime, days_since_expiration: int) -> tuple[datetime, datetime]:
    """The half-open window ``(now - N days, now]`` as (exclusive start, inclusive end)."""
    _require_aware(now, "now")
    validate_days_since_expiration(days_since_expiration)
    return now - timedelta(days=days_since_expiration), now


def expired_in_window(expiration_date: datetime, now: datetime, days_since_expiration: int) -> bool:
    """True iff ``now - days_since_expiration days < expiration_date <= now``."""
    _require_aware(expiration_date, "expiration_date")
    start, end = expired_window(now, days_since_expiration)
    return start < expiration_date <= end


def plan_expired_in_window(*, is_active: bool, expiration_date: datetime, now: datetime, days: int) -> bool:
    """A plan whose licenses may be due: active, and expired inside the window."""
    return is_active and expired_in_window(expiration_date, now, days)


def plan_expiration_decision(
    *,
    status: str,
    email: str | None,
    plan_is_active: bool,
    expiration_date: datetime,
    already_sent: bool,
    opted_out: bool,
    continues_under_renewal: bool | None,
    now: datetime,
    days_since_expiration: int,
) -> PlanExpirationDecision:
    """Decide one license. The result is DUE iff every rule holds; the order only picks the reason reported.
    ``continues_under_renewal`` is looked at last, so a caller may look the renewal up only for a license that
    is due otherwise (deciding once with False, and again if that says DUE); None means it cannot be known."""
    if opted_out:
        return PlanExpirationDecision.OPTED_OUT
    if status != "activated":
        return PlanExpirationDecision.NOT_ACTIVATED
    if not plan_is_active:
        return PlanExpirationDecision.PLAN_INACTIVE
    if not expired_in_window(expiration_date, now, days_since_expiration):
        return PlanExpirationDecision.NOT_IN_WINDOW
    if already_sent:
        return PlanExpirationDecision.ALREADY_SENT
    if not (email or "").strip():
        return PlanExpirationDecision.NO_EMAIL
    if continues_under_renewal is None:
        return PlanExpirationDecision.RENEWAL_UNKNOWN
    if continues_under_renewal:
        return PlanExpirationDecision.RENEWED
    return PlanExpirationDecision.DUE


def calendar_days_since_expiration(expiration_date: datetime, now: datetime) -> int:
    """Whole calendar days (UTC) from the expiration to ``now``: ``now.date() - expiration_date.date()``, as
    license-manager computes its ``days_since_expiration`` (contract 2.5). 0 for a plan that expired today."""
    _require_aware(expiration_date, "expiration_date")
    _require_aware(now, "now")
    return (now.astimezone(UTC).date() - expiration_date.astimezone(UTC).date()).days


# -- renewals ------------------------------------------------------------------------------------------------------


class RenewalEntry(Protocol):
    """One ``prior_renewals`` entry (contract 2.1)."""

    @property
    def prior_subscription_plan_id(self) -> UUID: ...

    @property
    def renewed_subscription_plan_id(self) -> UUID: ...


class RenewablePlan(Protocol):
    @property
    def uuid(self) -> UUID: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def expiration_date(self) -> datetime: ...

    @property
    def prior_renewals(self) -> Sequence[RenewalEntry]: ...


def renewals_of(plan_uuid: UUID | str, plans: Iterable[RenewablePlan], now: datetime) -> list[str]:
    """The uuids of the plans among ``plans`` (an agreement's) that renew ``plan_uuid`` and under which access
    continues at ``now``: a plan whose ``prior_renewals`` names ``plan_uuid`` as the prior plan, that is active
    and not expired at ``now`` (it may start in the future: a renewal usually starts when the old plan ends).
    In the order found, without repeats."""
    _require_aware(now, "now")
    plans = list(plans)
    by_uuid = {str(plan.uuid): plan for plan in plans}
    found: dict[str, None] = {}
    for plan in plans:
        for entry in plan.prior_renewals:
            if str(entry.prior_subscription_plan_id) != str(plan_uuid):
                continue
            renewal = by_uuid.get(str(entry.renewed_subscription_plan_id))
            if renewal is None or str(renewal.uuid) == str(plan_uuid):
                continue
            if renewal.is_active and renewal.expiration_date > now:
                found.setdefault(str(renewal.uuid), None)
    return list(found)


def email_key(email: str | None) -> str:
    """How a learner's email is matched across plans: stripped and lower-cased (license-manager keeps emails as
    they were entered; a renewal copies them, but an admin may re-enter one in another case)."""
    return (email or "").strip().lower()


def continues_under_renewal(email: str | None, renewal_emails: Container[str]) -> bool:
    """True iff ``email`` holds an activated or assigned license in a renewal, ``renewal_emails`` holding the
    ``email_key`` of each such license's email."""
    key = email_key(email)
    return bool(key) and key in renewal_emails
