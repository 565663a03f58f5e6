"""The post-expiration email rule (rules/plan_expiration.py) at its boundaries, and as properties over arbitrary
instants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from license_notifications.rules.plan_expiration import (
    MAX_DAYS_SINCE_EXPIRATION,
    PlanExpirationDecision,
    calendar_days_since_expiration,
    continues_under_renewal,
    email_key,
    expired_in_window,
    plan_expiration_decision,
    plan_expired_in_window,
    renewals_of,
    validate_days_since_expiration,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DUE = PlanExpirationDecision.DUE


def decide(**overrides):
    args = {
        "status": "activated",
        "email": "learner@example.com",
        "plan_is_active": True,
        "expiration_date": NOW - timedelta(days=2),
        "already_sent": False,
        "opted_out": False,
        "continues_under_renewal": False,
        "now": NOW,
        "days_since_expiration": 7,
    }
    args.update(overrides)
    return plan_expiration_decision(**args)


# -- the window ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expiration", "expected"),
    [
        (NOW, True),  # expired this very instant: inside (inclusive end)
        (NOW - timedelta(hours=1), True),  # an hour ago: due now, not tomorrow
        (NOW - timedelta(days=7) + timedelta(seconds=1), True),  # the oldest instant inside
        (NOW - timedelta(days=7), False),  # exactly as_of - N days: outside (exclusive start)
        (NOW - timedelta(days=8), False),
        (NOW + timedelta(seconds=1), False),  # not expired yet
        (NOW + timedelta(days=10), False),
    ],
)
def test_window_boundaries(expiration, expected):
    assert expired_in_window(expiration, NOW, 7) is expected
    assert (decide(expiration_date=expiration) is DUE) is expected


def test_the_window_follows_days_since_expiration():
    ten_days_ago = NOW - timedelta(days=10)
    assert decide(expiration_date=ten_days_ago) is PlanExpirationDecision.NOT_IN_WINDOW
    assert decide(expiration_date=ten_days_ago, days_since_expiration=11) is DUE
    assert decide(expiration_date=ten_days_ago, days_since_expiration=10) is PlanExpirationDecision.NOT_IN_WINDOW


def test_a_missed_day_loses_nothing():
    """Not "expired exactly N days ago": a plan that expired while runs were down is still due later."""
    expiry = NOW - timedelta(hours=3)
    for later in (timedelta(0), timedelta(days=1), timedelta(days=6, hours=20)):
        assert decide(expiration_date=expiry, now=NOW + later) is DUE
    assert decide(expiration_date=expiry, now=NOW + timedelta(days=7)) is PlanExpirationDecision.NOT_IN_WINDOW


@pytest.mark.parametrize(
    ("is_active", "expiration", "expected"),
    [
        (True, NOW - timedelta(days=1), True),
        (False, NOW - timedelta(days=1), False),  # an inactive plan is never due
        (True, NOW + timedelta(days=1), False),
        (True, NOW - timedelta(days=7), False),
    ],
)
def test_plan_expired_in_window(is_active, expiration, expected):
    assert plan_expired_in_window(is_active=is_active, expiration_date=expiration, now=NOW, days=7) is expected


# -- one license ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("activated", DUE),
        ("assigned", PlanExpirationDecision.NOT_ACTIVATED),
        ("unassigned", PlanExpirationDecision.NOT_ACTIVATED),
        ("revoked", PlanExpirationDecision.NOT_ACTIVATED),
        ("suspended", PlanExpirationDecision.NOT_ACTIVATED),  # a status this code does not know
    ],
)
def test_only_activated_licenses_are_due(status, expected):
    assert decide(status=status) is expected


def test_a_license_of_an_inactive_plan_is_not_due():
    assert decide(plan_is_active=False) is PlanExpirationDecision.PLAN_INACTIVE


def test_already_sent_is_not_due():
    assert decide(already_sent=True) is PlanExpirationDecision.ALREADY_SENT


def test_an_opted_out_enterprise_is_not_due_even_when_everything_else_holds():
    assert decide(opted_out=True) is PlanExpirationDecision.OPTED_OUT


@pytest.mark.parametrize("email", ["", "  ", None])
def test_a_license_without_email_cannot_be_emailed(email):
    assert decide(email=email) is PlanExpirationDecision.NO_EMAIL


def test_a_learner_who_continues_under_a_renewal_is_skipped_as_renewed():
    assert decide(continues_under_renewal=True) is PlanExpirationDecision.RENEWED


def test_renewed_is_decided_last_so_the_renewal_is_looked_up_only_for_licenses_otherwise_due():
    for reason in (
        {"status": "assigned"},
        {"already_sent": True},
        {"expiration_date": NOW + timedelta(days=1)},
        {"opted_out": True},
        {"plan_is_active": False},
        {"email": ""},
    ):
        assert decide(**reason) is decide(**reason, continues_under_renewal=True), reason
        assert decide(**reason) is decide(**reason, continues_under_renewal=None), reason


def test_a_license_otherwise_due_waits_while_its_renewal_cannot_be_known():
    assert decide(continues_under_renewal=None) is PlanExpirationDecision.RENEWAL_UNKNOWN


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        expired_in_window(datetime(2026, 2, 27), NOW, 7)
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(now=datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        renewals_of(uuid4(), [], datetime(2026, 3, 1))


@pytest.mark.parametrize("days", [0, -1, 3651, True, 1.5, "7"])
def test_days_since_expiration_must_be_a_sensible_integer(days):
    with pytest.raises(ValueError, match="days_since_expiration"):
        validate_days_since_expiration(days)


def test_days_since_expiration_counts_calendar_days_in_utc_as_license_manager_does():
    assert calendar_days_since_expiration(datetime(2026, 2, 22, 23, 59, tzinfo=UTC), NOW) == 7
    assert calendar_days_since_expiration(datetime(2026, 2, 28, 23, 0, tzinfo=UTC), NOW) == 1  # 10 hours ago
    assert calendar_days_since_expiration(datetime(2026, 3, 1, 8, 0, tzinfo=UTC), NOW) == 0  # an hour ago
    # 2026-03-01 01:00 in UTC+3 is 2026-02-28 22:00 UTC: the day before, in UTC
    plus3 = timezone(timedelta(hours=3))
    assert calendar_days_since_expiration(datetime(2026, 3, 1, 1, 0, tzinfo=plus3), NOW) == 1


# -- renewals ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    prior_subscription_plan_id: UUID
    renewed_subscription_plan_id: UUID


@dataclass(frozen=True)
class Plan:
    uuid: UUID = field(default_factory=uuid4)
    is_active: bool = True
    expiration_date: datetime = NOW + timedelta(days=365)
    prior_renewals: tuple[Entry, ...] = ()


def renewal_of(old: Plan, **fields) -> Plan:
    plan_uuid = fields.pop("uuid", uuid4())
    return Plan(uuid=plan_uuid, prior_renewals=(Entry(old.uuid, plan_uuid),), **fields)


def test_a_renewal_lists_the_plan_it_renews_in_prior_renewals():
    old = Plan(expiration_date=NOW - timedelta(days=2))
    renewal = renewal_of(old)
    unrelated = Plan()
    assert renewals_of(old.uuid, [old, renewal, unrelated], NOW) == [str(renewal.uuid)]
    assert renewals_of(str(old.uuid), [renewal, old], NOW) == [str(renewal.uuid)]  # uuid or string, any order
    assert renewals_of(renewal.uuid, [old, renewal, unrelated], NOW) == []  # the renewal itself is not renewed
    assert renewals_of(unrelated.uuid, [old, renewal, unrelated], NOW) == []


def test_a_renewal_starting_in_the_future_continues_the_access():
    old = Plan(expiration_date=NOW - timedelta(hours=1))
    future = renewal_of(old, expiration_date=NOW + timedelta(days=400))  # starts tomorrow, say
    assert renewals_of(old.uuid, [old, future], NOW) == [str(future.uuid)]


@pytest.mark.parametrize(
    "renewal_fields",
    [
        {"is_active": False},  # deactivated: no access continues
        {"expiration_date": NOW},  # expired as well
        {"expiration_date": NOW - timedelta(days=1)},
    ],
)
def test_an_inactive_or_expired_renewal_continues_nothing(renewal_fields):
    old = Plan(expiration_date=NOW - timedelta(days=3))
    renewal = renewal_of(old, **renewal_fields)
    assert renewals_of(old.uuid, [old, renewal], NOW) == []


def test_a_renewal_not_among_the_plans_is_not_counted():
    old = Plan(expiration_date=NOW - timedelta(days=3))
    elsewhere = uuid4()
    listed = Plan(prior_renewals=(Entry(old.uuid, elsewhere),))  # names a renewal that is not in the agreement
    assert renewals_of(old.uuid, [old, listed], NOW) == []


def test_several_renewals_of_one_plan_are_each_listed_once():
    old = Plan(expiration_date=NOW - timedelta(days=3))
    first, second = renewal_of(old), renewal_of(old)
    twice = Plan(uuid=first.uuid, prior_renewals=first.prior_renewals * 2)
    assert renewals_of(old.uuid, [old, twice, second], NOW) == [str(first.uuid), str(second.uuid)]


def test_a_learner_continues_when_their_email_is_among_the_renewals_in_any_case():
    emails = {email_key(e) for e in ("Ada@Example.com ", "grace@example.com")}
    assert continues_under_renewal("ada@example.com", emails)
    assert continues_under_renewal("  GRACE@example.COM", emails)
    assert not continues_under_renewal("alan@example.com", emails)
    assert not continues_under_renewal("", {""})
    assert not continues_under_renewal(None, {""})


# -- properties ----------------------------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
offsets = st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=400))


@given(now=instants, offset=offsets, days=st.integers(min_value=1, max_value=MAX_DAYS_SINCE_EXPIRATION))
def test_window_is_exactly_now_minus_n_exclusive_to_now_inclusive(now, offset, days):
    assert expired_in_window(now - offset, now, days) == (timedelta(0) <= offset < timedelta(days=days))


@given(expiry=instants, elapsed=offsets, days=st.integers(min_value=1, max_value=365))
def test_a_plan_is_due_for_n_days_from_its_expiry_whenever_runs_happen(expiry, elapsed, days):
    """Every run in [expiry, expiry + N days) sees it, so any missed run is made good by a later one."""
    assert expired_in_window(expiry, expiry + elapsed, days) == (timedelta(0) <= elapsed < timedelta(days=days))


@given(
    now=instants,
    offset=offsets,
    days=st.integers(min_value=1, max_value=365),
    status=st.sampled_from(["activated", "assigned", "unassigned", "revoked"]),
    plan_is_active=st.booleans(),
    already_sent=st.booleans(),
    opted_out=st.booleans(),
    renewed=st.booleans(),
    email=st.sampled_from(["a@example.com", "", None]),
)
def test_due_iff_every_rule_holds(now, offset, days, status, plan_is_active, already_sent, opted_out, renewed, email):
    decision = decide(
        status=status,
        email=email,
        plan_is_active=plan_is_active,
        expiration_date=now - offset,
        already_sent=already_sent,
        opted_out=opted_out,
        continues_under_renewal=renewed,
        now=now,
        days_since_expiration=days,
    )
    every_rule = (
        status == "activated"
        and plan_is_active
        and timedelta(0) <= offset < timedelta(days=days)
        and not already_sent
        and not opted_out
        and not renewed
        and bool(email)
    )
    assert (decision is DUE) == every_rule


@given(now=instants, offset=offsets)
def test_days_since_expiration_is_zero_or_more_inside_the_window_and_at_most_n(now, offset):
    expiry = now - offset
    if expired_in_window(expiry, now, 7):
        assert 0 <= calendar_days_since_expiration(expiry, now) <= 7
