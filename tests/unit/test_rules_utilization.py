"""The utilization rules (ADR 9, issue 3) at their boundaries, and as properties over arbitrary instants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from license_notifications.models import SubscriptionPlan
from license_notifications.rules.utilization import (
    NotificationType,
    admin_is_reachable,
    auto_assign_plan,
    days_between,
    is_current,
    reached_threshold,
    threshold_must_wait,
    threshold_to_send,
    weekly_digest_due,
    weekly_resend_cutoff,
)

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LIMITED = NotificationType.LIMITED_ALLOCATIONS_REMAINING
NONE_LEFT = NotificationType.NO_ALLOCATIONS_REMAINING
WEEKLY = NotificationType.PERIODIC_INFORMATIONAL


def test_notification_type_values_are_license_managers():
    assert [t.value for t in NotificationType] == [
        "limited_allocations_remaining",
        "no_allocations_remaining",
        "periodic_informational",
    ]


# -- which plan ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakePlan:
    uuid: str
    expiration_date: datetime
    start_date: datetime = NOW - timedelta(days=100)
    is_active: bool = True
    should_auto_apply_licenses: bool = True


def test_is_current_is_inclusive_at_both_ends():
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    assert is_current(start, end, NOW)
    assert is_current(NOW, end, NOW)
    assert is_current(start, NOW, NOW)
    assert not is_current(NOW + timedelta(seconds=1), end, NOW)  # starts in a second: future
    assert not is_current(start, NOW - timedelta(seconds=1), NOW)  # expired a second ago


def test_auto_assign_plan_picks_the_soonest_expiring_active_current_auto_apply_plan():
    plans = [
        FakePlan("later", NOW + timedelta(days=200)),
        FakePlan("soonest", NOW + timedelta(days=30)),
        FakePlan("inactive", NOW + timedelta(days=1), is_active=False),
        FakePlan("not-auto", NOW + timedelta(days=2), should_auto_apply_licenses=False),
        FakePlan("future", NOW + timedelta(days=3), start_date=NOW + timedelta(days=1)),
        FakePlan("expired", NOW - timedelta(seconds=1)),
    ]
    chosen = auto_assign_plan(plans, NOW)
    assert chosen is not None
    assert chosen.uuid == "soonest"


def test_auto_assign_plan_is_none_without_an_eligible_plan():
    assert auto_assign_plan([], NOW) is None
    assert auto_assign_plan([FakePlan("off", NOW + timedelta(days=9), should_auto_apply_licenses=False)], NOW) is None
    assert auto_assign_plan([FakePlan("gone", NOW - timedelta(days=1))], NOW) is None


def test_auto_assign_plan_breaks_ties_by_uuid_whatever_the_order():
    same_end = NOW + timedelta(days=30)
    plans = [FakePlan("b", same_end), FakePlan("c", same_end), FakePlan("a", same_end)]
    assert auto_assign_plan(plans, NOW).uuid == "a"
    assert auto_assign_plan(list(reversed(plans)), NOW).uuid == "a"


def test_auto_assign_plan_reads_the_upstream_model_and_null_auto_apply_is_false():
    def plan(title: str, days: int, auto: bool | None) -> SubscriptionPlan:
        return SubscriptionPlan.model_validate(
            {
                "uuid": str(uuid.uuid4()),
                "title": title,
                "start_date": "2025-06-01T00:00:00Z",
                "expiration_date": (NOW + timedelta(days=days)).isoformat(),
                "enterprise_customer_uuid": str(uuid.uuid4()),
                "is_active": True,
                "should_auto_apply_licenses": auto,
            }
        )

    chosen = auto_assign_plan([plan("null", 5, None), plan("auto", 50, True), plan("no", 1, False)], NOW)
    assert chosen is not None
    assert chosen.title == "auto"


def test_a_plan_expiring_now_is_still_current_and_picked():
    assert auto_assign_plan([FakePlan("edge", NOW)], NOW).uuid == "edge"


# -- thresholds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allocated", "total", "expected"),
    [
        (749, 1000, None),  # 74.9 %
        (750, 1000, LIMITED),  # exactly 75 %
        (999, 1000, LIMITED),  # 99.9 %: 75 % only
        (1000, 1000, NONE_LEFT),  # 100 %
        (3, 4, LIMITED),
        (2, 3, None),  # 66.7 %
        (0, 10, None),
        (10, 10, NONE_LEFT),
        (11, 10, NONE_LEFT),  # over-allocated (should not happen upstream): still 100 %
        (0, 1, None),
        (1, 1, NONE_LEFT),
        (0, 0, None),  # a plan with zero licenses has no threshold
        (5, 0, None),
    ],
)
def test_threshold_boundaries(allocated, total, expected):
    assert reached_threshold(allocated, total) == expected


def test_threshold_uses_integer_arithmetic_where_floats_would_round():
    # 3/4 of a huge plan minus one: a float percentage rounds to 75.0, integers do not.
    total = 4 * 10**17
    assert reached_threshold(3 * 10**17 - 1, total) is None
    assert reached_threshold(3 * 10**17, total) is LIMITED
    assert reached_threshold(total - 1, total) is LIMITED


@pytest.mark.parametrize(("allocated", "total"), [(-1, 10), (1, -10), (-1, -1), (True, 10), (1.5, 2)])
def test_negative_or_non_integer_counts_are_refused(allocated, total):
    with pytest.raises(ValueError, match=r"allocated|total"):
        reached_threshold(allocated, total)


def test_75_then_100():
    sent: set[NotificationType] = set()
    assert threshold_to_send(reached_threshold(80, 100), sent) is LIMITED
    sent.add(LIMITED)
    assert threshold_to_send(reached_threshold(90, 100), sent) is None  # still 75 %: sent once only
    assert threshold_to_send(reached_threshold(100, 100), sent) is NONE_LEFT
    sent.add(NONE_LEFT)
    assert threshold_to_send(reached_threshold(100, 100), sent) is None


def test_100_first_then_never_75():
    sent: set[NotificationType] = set()
    assert threshold_to_send(reached_threshold(100, 100), sent) is NONE_LEFT  # only the 100 % email
    sent.add(NONE_LEFT)
    # Licenses revoked / added: back at 80 %, then 100 % again. Neither email goes out a second time.
    assert threshold_to_send(reached_threshold(80, 100), sent) is None
    assert threshold_to_send(reached_threshold(100, 100), sent) is None


def test_below_threshold_sends_nothing_and_falling_back_does_not_reset():
    assert threshold_to_send(reached_threshold(10, 100), set()) is None
    assert threshold_to_send(None, {LIMITED}) is None
    assert threshold_to_send(reached_threshold(76, 100), {LIMITED}) is None


def test_renewal_is_a_different_plan_with_fresh_threshold_state():
    """Threshold state is keyed by plan uuid: the renewal's uuid has no records, i.e. an empty set."""
    old_plan_sent = {LIMITED, NONE_LEFT}
    assert threshold_to_send(NONE_LEFT, old_plan_sent) is None
    renewal_sent: set[NotificationType] = set()
    assert threshold_to_send(reached_threshold(80, 100), renewal_sent) is LIMITED
    assert threshold_to_send(reached_threshold(100, 100), renewal_sent) is NONE_LEFT


def test_weekly_records_do_not_affect_thresholds():
    assert threshold_to_send(LIMITED, {WEEKLY}) is LIMITED
    assert threshold_to_send(NONE_LEFT, frozenset({WEEKLY, LIMITED})) is NONE_LEFT


def test_the_weekly_type_is_not_a_threshold():
    with pytest.raises(ValueError, match="threshold"):
        threshold_to_send(WEEKLY, set())


# -- weekly digest -------------------------------------------------------------------------------------------


def at(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


def test_days_between_counts_utc_calendar_days():
    assert days_between(at(date(2026, 3, 1), 23, 59), at(date(2026, 3, 2), 0, 1)) == 1  # two minutes apart
    assert days_between(at(date(2026, 3, 1), 0, 0), at(date(2026, 3, 1), 23, 59)) == 0
    assert days_between(at(date(2026, 3, 8)), at(date(2026, 3, 1))) == -7
    plus3 = timezone(timedelta(hours=3))
    # 2026-03-02 01:00 at UTC+3 is 2026-03-01 22:00 UTC: same UTC day as NOW
    assert days_between(datetime(2026, 3, 2, 1, 0, tzinfo=plus3), NOW) == 0


def test_eligible_once_seven_full_days_have_passed_since_joining():
    joined = at(date(2026, 3, 1), 13, 0)
    assert not weekly_digest_due(joined, None, at(date(2026, 3, 7), 23, 59, 59))
    assert not weekly_digest_due(joined, None, at(date(2026, 3, 8), 12, 0))  # the 7th calendar day, but 6 d 23 h
    assert not weekly_digest_due(joined, None, at(date(2026, 3, 8), 12, 59, 59))
    assert weekly_digest_due(joined, None, at(date(2026, 3, 8), 13, 0))  # exactly 7 x 24 h
    assert weekly_digest_due(joined, None, at(date(2026, 3, 9), 12, 0))  # the next daily run
    assert weekly_digest_due(joined, None, at(date(2026, 3, 20), 9))  # long since eligible, never sent


def test_exactly_seven_days_after_the_last_send_is_due_six_days_23_hours_is_not():
    joined = NOW - timedelta(days=100)
    last = at(date(2026, 3, 1), 9)
    assert weekly_digest_due(joined, last, last + timedelta(days=7))
    assert not weekly_digest_due(joined, last, last + timedelta(days=6, hours=14, minutes=59))  # 03-07 23:59
    # Calendar days, not seconds: a run at 08:00 on the 7th day is due although only 6 days 23 h passed.
    assert weekly_digest_due(joined, last, last + timedelta(days=6, hours=23))
    assert not weekly_digest_due(joined, last, last)  # the same day: never twice


def test_a_missed_run_shifts_the_cadence_and_never_yields_two_in_one_week():
    joined = at(date(2026, 1, 1))
    sent_on = at(date(2026, 3, 1), 9)
    # The run due on 03-08 failed; the 03-09 run sends...
    assert weekly_digest_due(joined, sent_on, at(date(2026, 3, 9), 9))
    resent = at(date(2026, 3, 9), 9)
    # ...and the next digest is 7 days after that one, not on the old 03-15 schedule.
    assert not weekly_digest_due(joined, resent, at(date(2026, 3, 15), 9))
    assert weekly_digest_due(joined, resent, at(date(2026, 3, 16), 9))


def test_weekly_resend_cutoff_is_midnight_utc_six_days_before_today():
    plus5 = timezone(timedelta(hours=5))
    assert weekly_resend_cutoff(NOW) == datetime(2026, 2, 23, tzinfo=UTC)
    # 2026-03-01 02:00 at UTC+5 is 2026-02-28 21:00 UTC
    assert weekly_resend_cutoff(datetime(2026, 3, 1, 2, 0, tzinfo=plus5)) == datetime(2026, 2, 22, tzinfo=UTC)
    cutoff = weekly_resend_cutoff(NOW)
    assert cutoff.tzinfo is not None
    joined = NOW - timedelta(days=100)
    assert weekly_digest_due(joined, cutoff - timedelta(microseconds=1), NOW)
    assert not weekly_digest_due(joined, cutoff, NOW)


def test_naive_datetimes_are_refused():
    naive = datetime(2026, 3, 1, 9, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly_digest_due(naive, None, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly_digest_due(NOW - timedelta(days=30), naive, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly_digest_due(NOW - timedelta(days=30), None, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        weekly_resend_cutoff(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        days_between(naive, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_current(naive, NOW, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        auto_assign_plan([], naive)


@pytest.mark.parametrize("other_exists", [False, True])
@pytest.mark.parametrize("other_in_flight", [False, True])
@pytest.mark.parametrize("kind", list(NotificationType))
def test_threshold_must_wait(kind, other_exists, other_in_flight):
    waits = threshold_must_wait(kind, other_exists=other_exists, other_in_flight=other_in_flight)
    expected = {
        NotificationType.LIMITED_ALLOCATIONS_REMAINING: other_exists,  # any 100 % record: never 75 % after it
        NotificationType.NO_ALLOCATIONS_REMAINING: other_in_flight,  # a 75 % send in flight: next run
        NotificationType.PERIODIC_INFORMATIONAL: False,
    }[kind]
    assert waits is expected


# -- recipients ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_is_active", "email", "expected"),
    [
        (True, "admin@example.com", True),
        (False, "admin@example.com", False),  # deactivated LMS account
        (True, None, False),
        (True, "  ", False),
    ],
)
def test_admin_is_reachable(user_is_active, email, expected):
    assert admin_is_reachable(user_is_active, email) is expected


# -- properties ----------------------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
zoned_instants = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2099, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=5, minutes=30))]),
)
offsets = st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30))
times_of_day = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=23, minutes=59, seconds=59))
_RANK = {None: 0, LIMITED: 1, NONE_LEFT: 2}


@given(total=st.integers(min_value=0, max_value=10**6), a=st.integers(min_value=0), b=st.integers(min_value=0))
def test_threshold_is_monotonic_in_allocated(total, a, b):
    low, high = sorted((a % (total + 2), b % (total + 2)))
    assert _RANK[reached_threshold(low, total)] <= _RANK[reached_threshold(high, total)]


@given(total=st.integers(min_value=1, max_value=10**6), allocated=st.integers(min_value=0, max_value=10**6))
def test_threshold_matches_exact_fractions(total, allocated):
    share = Fraction(allocated, total)
    expected = NONE_LEFT if share >= 1 else LIMITED if share >= Fraction(3, 4) else None
    assert reached_threshold(allocated, total) == expected


@given(
    history=st.lists(st.sampled_from([None, LIMITED, NONE_LEFT]), max_size=20),
)
def test_each_threshold_email_at_most_once_and_no_75_after_100(history):
    """Whatever sequence of levels the plan passes through, one admin gets each email at most once, and
    never a 75 % email once the 100 % one went out."""
    sent: list[NotificationType] = []
    for reached in history:
        email = threshold_to_send(reached, set(sent))
        if email is not None:
            sent.append(email)
    assert len(sent) == len(set(sent))
    if NONE_LEFT in sent:
        assert LIMITED not in sent[sent.index(NONE_LEFT) :]
    if NONE_LEFT in history:
        assert NONE_LEFT in sent
    if LIMITED in history and NONE_LEFT not in history[: history.index(LIMITED)]:
        assert LIMITED in sent


@given(now=zoned_instants, last_sent=zoned_instants)
def test_weekly_digest_due_agrees_with_the_cutoff(now, last_sent):
    long_ago = datetime(1999, 1, 1, tzinfo=UTC)
    assert weekly_digest_due(long_ago, last_sent, now) == (last_sent < weekly_resend_cutoff(now))


@given(now=zoned_instants, delta=offsets)
def test_weekly_digest_due_agrees_with_the_cutoff_near_the_boundary(now, delta):
    long_ago = datetime(1999, 1, 1, tzinfo=UTC)
    last_sent = weekly_resend_cutoff(now) + delta / 1000  # within about +-43 minutes of the cutoff
    assert weekly_digest_due(long_ago, last_sent, now) == (last_sent < weekly_resend_cutoff(now))


@given(joined=instants, offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_eligibility_needs_seven_times_24_hours_since_joining(joined, offset):
    now = joined + offset
    assert weekly_digest_due(joined, None, now) == (offset.total_seconds() >= 7 * 24 * 3600)


@given(
    joined_day=st.integers(min_value=0, max_value=10),
    joined_time=times_of_day,
    run_times=st.lists(times_of_day, min_size=60, max_size=60),
    fails=st.lists(st.booleans(), min_size=60, max_size=60),
    every_run_succeeds=st.booleans(),
)
def test_simulated_daily_runs(joined_day, joined_time, run_times, fails, every_run_succeeds):
    """60 daily runs at random times of day, deciding with the cutoff as the ledger does. Never two digests
    within 6 calendar days; when every run succeeds, the first goes out at the first run at least 7 x 24 h
    after joining and then one every 7 days exactly; a failed run only delays the next digest to the next
    successful run."""
    start = date(2026, 1, 1)
    joined = at(start + timedelta(days=joined_day)) + joined_time
    last_sent: datetime | None = None
    sends: list[datetime] = []
    for day, (run_time, failed) in enumerate(zip(run_times, fails, strict=True)):
        now = at(start + timedelta(days=day)) + run_time
        due = weekly_digest_due(joined, last_sent, now)
        ledger_allows = last_sent is None or last_sent < weekly_resend_cutoff(now)
        assert not due or ledger_allows  # the ledger's condition never refuses a due digest
        if due and (every_run_succeeds or not failed):
            sends.append(now)
            last_sent = now
    gaps = [days_between(a, b) for a, b in pairwise(sends)]
    assert all(gap >= 7 for gap in gaps)
    run_at = [at(start + timedelta(days=day)) + run_time for day, run_time in enumerate(run_times)]
    first_eligible_day = next(day for day, now in enumerate(run_at) if now - joined >= timedelta(days=7))
    if sends:
        assert sends[0] - joined >= timedelta(days=7)
    if every_run_succeeds:
        assert sends, "60 days of successful runs must send at least one digest"
        assert sends[0] == run_at[first_eligible_day]
        assert all(gap == 7 for gap in gaps)
        assert days_between(sends[-1], at(start + timedelta(days=59))) < 7
    else:
        # Each digest goes out at the first successful run once due, and none is owed at the end: every run
        # on a day when a digest was due but none was sent had failed.
        last_day = 59
        for previous, current in zip([None, *sends], [*sends, None], strict=True):
            if previous is None:
                first_due_day = first_eligible_day
            else:
                first_due_day = (previous.astimezone(UTC).date() + timedelta(days=7) - start).days
            sent_day = last_day + 1 if current is None else (current.astimezone(UTC).date() - start).days
            for day in range(first_due_day, sent_day):
                assert fails[day], "a successful run while due must have sent"
