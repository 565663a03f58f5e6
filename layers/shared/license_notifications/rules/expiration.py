"""Who is due a license expiration reminder (spec 003, "How Reminders Work").

A license is due iff its status is ``activated``, its plan expires inside the window
``now < expiration_date <= now + days_before_expiration``, no reminder for that license is recorded as
sent, and the enterprise has not opted out (customer agreement ``disable_expiration_notifications``).
The window is a true window, not "exactly N days ahead": a missed hourly or daily run loses nothing.
Licenses of a renewed plan have their own uuids, so they are judged (and reminded) on their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

DEFAULT_DAYS_BEFORE_EXPIRATION = 30
MAX_DAYS_BEFORE_EXPIRATION = 3650


class ReminderDecision(StrEnum):
    """Why a license is or is not due. Every value but ``DUE`` is a skip reason (logged and counted)."""

    DUE = "due"
    NOT_ACTIVATED = "not_activated"
    NOT_IN_WINDOW = "not_in_window"
    ALREADY_SENT = "already_sent"
    OPTED_OUT = "opted_out"
    NO_EMAIL = "no_email"


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def validate_days_before_expiration(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError(f"days_before_expiration must be an integer, got {days!r}")
    if not 1 <= days <= MAX_DAYS_BEFORE_EXPIRATION:
        raise ValueError(f"days_before_expiration must be between 1 and {MAX_DAYS_BEFORE_EXPIRATION}, got {days}")
    return days


def expiration_window(now: datetime, days_before_expiration: int) -> tuple[datetime, datetime]:
    """The half-open window ``(now, now + N days]`` as (exclusive start, inclusive end)."""
    _require_aware(now, "now")
    validate_days_before_expiration(days_before_expiration)
    return now, now + timedelta(days=days_before_expiration)


def expires_in_window(expiration_date: datetime, now: datetime, days_before_expiration: int) -> bool:
    """True iff ``now < expiration_date <= now + days_before_expiration days``."""
    _require_aware(expiration_date, "expiration_date")
    start, end = expiration_window(now, days_before_expiration)
    return start < expiration_date <= end


def reminder_decision(
    *,
    status: str,
    email: str | None,
    expiration_date: datetime,
    already_sent: bool,
    opted_out: bool,
    now: datetime,
    days_before_expiration: int,
) -> ReminderDecision:
    """Decide one license. Order matters only for the reason reported; the result is DUE iff every rule holds."""
    if opted_out:
        return ReminderDecision.OPTED_OUT
    if status != "activated":
        return ReminderDecision.NOT_ACTIVATED
    if not expires_in_window(expiration_date, now, days_before_expiration):
        return ReminderDecision.NOT_IN_WINDOW
    if already_sent:
        return ReminderDecision.ALREADY_SENT
    if not (email or "").strip():
        return ReminderDecision.NO_EMAIL
    return ReminderDecision.DUE


def days_until_expiration(expiration_date: datetime, now: datetime) -> int:
    """Whole calendar days (UTC) from ``now`` to the expiration: ``expiration_date.date() - now.date()``.

    The contract does not give license-manager's formula; calendar days are chosen so that every learner
    reminded on the same UTC day reads the same number, whatever the hour of the run."""
    _require_aware(expiration_date, "expiration_date")
    _require_aware(now, "now")

    return (expiration_date.astimezone(UTC).date() - now.astimezone(UTC).date()).days
