"""The expiration-reminder rule at its boundaries, and as properties over arbitrary instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from license_notifications.rules.expiration import (
    ReminderDecision,
    days_until_expiration,
    expires_in_window,
    reminder_decision,
    validate_days_before_expiration,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def decide(**overrides):
    args = {
        "status": "activated",
        "email": "learner@example.com",
        "expiration_date": NOW + timedelta(days=10),
        "already_sent": False,
        "opted_out": False,
        "now": NOW,
        "days_before_expiration": 30,
    }
    args.update(overrides)
    return reminder_decision(**args)


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [
        (NOW + timedelta(days=30), True),  # exactly now + N: inside (inclusive end)
        (NOW + timedelta(days=30, seconds=1), False),  # one second past the window
        (NOW + timedelta(seconds=1), True),  # about to expire
        (NOW, False),  # expiring this instant: already expired (exclusive start)
        (NOW - timedelta(days=5), False),  # already expired
        (NOW + timedelta(days=200), False),
    ],
)
def test_window_boundaries(expiration, expected):
    assert expires_in_window(expiration, NOW, 30) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("activated", ReminderDecision.DUE),
        ("assigned", ReminderDecision.NOT_ACTIVATED),
        ("unassigned", ReminderDecision.NOT_ACTIVATED),
        ("revoked", ReminderDecision.NOT_ACTIVATED),
    ],
)
def test_only_activated_licenses_are_due(status, expected):
    assert decide(status=status) is expected


def test_already_sent_is_not_due():
    assert decide(already_sent=True) is ReminderDecision.ALREADY_SENT


def test_opted_out_enterprise_is_not_due_even_when_everything_else_holds():
    assert decide(opted_out=True) is ReminderDecision.OPTED_OUT


def test_license_without_email_cannot_be_reminded():
    assert decide(email="  ") is ReminderDecision.NO_EMAIL


def test_renewed_plan_licenses_are_judged_on_their_own():
    old_plan_expiry = NOW + timedelta(days=20)
    renewal_expiry = old_plan_expiry + timedelta(days=365)
    # The old license was reminded; the renewal's license (another uuid, no ledger record) is not due yet...
    assert decide(expiration_date=old_plan_expiry, already_sent=True) is ReminderDecision.ALREADY_SENT
    assert decide(expiration_date=renewal_expiry) is ReminderDecision.NOT_IN_WINDOW
    # ...and becomes due when the renewal enters its own window.
    later = renewal_expiry - timedelta(days=29)
    assert decide(expiration_date=renewal_expiry, now=later) is ReminderDecision.DUE


def test_a_missed_run_loses_nothing():
    """Not "exactly N days ahead": a license entering the window while runs were down is still due later."""
    expiry = NOW + timedelta(days=30)
    assert decide(expiration_date=expiry, now=NOW) is ReminderDecision.DUE
    assert decide(expiration_date=expiry, now=NOW + timedelta(days=3)) is ReminderDecision.DUE


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        expires_in_window(datetime(2026, 3, 10), NOW, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(now=datetime(2026, 3, 1))


@pytest.mark.parametrize("days", [0, -1, 3651, True, 1.5])
def test_days_before_expiration_must_be_a_sensible_integer(days):
    with pytest.raises(ValueError, match="days_before_expiration"):
        validate_days_before_expiration(days)


def test_days_until_expiration_counts_calendar_days_in_utc():
    assert days_until_expiration(datetime(2026, 3, 15, 0, 0, tzinfo=UTC), NOW) == 14
    assert days_until_expiration(datetime(2026, 3, 1, 23, 59, tzinfo=UTC), NOW) == 0
    # 2026-03-02 01:00 in UTC+3 is 2026-03-01 22:00 UTC: the same UTC day
    plus3 = timezone(timedelta(hours=3))
    assert days_until_expiration(datetime(2026, 3, 2, 1, 0, tzinfo=plus3), NOW) == 0


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
offsets = st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400))


@given(now=instants, offset=offsets, days=st.integers(min_value=1, max_value=3650))
def test_window_is_exactly_now_exclusive_to_now_plus_n_inclusive(now, offset, days):
    expiration = now + offset
    assert expires_in_window(expiration, now, days) == (timedelta(0) < offset <= timedelta(days=days))


@given(
    now=instants,
    offset=offsets,
    days=st.integers(min_value=1, max_value=365),
    status=st.sampled_from(["activated", "assigned", "unassigned", "revoked"]),
    already_sent=st.booleans(),
    opted_out=st.booleans(),
    email=st.sampled_from(["a@example.com", "", None]),
)
def test_due_iff_every_rule_holds(now, offset, days, status, already_sent, opted_out, email):
    decision = decide(
        status=status,
        email=email,
        expiration_date=now + offset,
        already_sent=already_sent,
        opted_out=opted_out,
        now=now,
        days_before_expiration=days,
    )
    every_rule = (
        status == "activated"
        and timedelta(0) < offset <= timedelta(days=days)
        and not already_sent
        and not opted_out
        and bool(email)
    )
    assert (decision is ReminderDecision.DUE) == every_rule


@given(now=instants, offset=offsets, days=st.integers(min_value=1, max_value=365))
def test_due_set_only_grows_with_a_wider_window(now, offset, days):
    if expires_in_window(now + offset, now, days):
        assert expires_in_window(now + offset, now, days + 1)
