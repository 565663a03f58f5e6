"""The utilization job (jobs/utilization.py) on in-memory fakes: which plan, which admins, which emails, and the
75 % / 100 % ordering against a pre-seeded ledger. End to end: tests/integration/test_utilization_job.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NOW
from fakes import TRIGGER, FakeWorld
from license_notifications.adapters.ledger import CLAIMED, SENT
from license_notifications.errors import ServerError
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.utilization import threshold_key, weekly_key
from license_notifications.rules.utilization import NotificationType, weekly_digest_due, weekly_resend_cutoff

LIMITED = NotificationType.LIMITED_ALLOCATIONS_REMAINING
FULL = NotificationType.NO_ALLOCATIONS_REMAINING
WEEKLY = NotificationType.PERIODIC_INFORMATIONAL
RECENTLY = timedelta(days=3)  # joined too recently for a digest: only threshold emails
LONG_AGO = timedelta(days=30)


def campaign(kind: NotificationType) -> str:
    return f"campaign-{kind.value}"


def setup(world: FakeWorld, *, allocated: int, total: int, admins: int = 2, joined: timedelta = RECENTLY):
    customer = world.lms.add_customer("Acme Learning")
    plan = world.license_manager.add_plan(
        customer.uuid,
        title="Acme 2026",
        expires_in=timedelta(days=100),
        should_auto_apply_licenses=True,
        allocated=allocated,
        total=total,
    )
    people = [world.lms.add_admin(customer.uuid, joined=joined) for _ in range(admins)]
    return str(customer.uuid), plan, people


def set_allocation(world: FakeWorld, plan, allocated: int, total: int) -> None:
    counts = plan.licenses.model_copy(update={"allocated": allocated, "total": total})
    world.license_manager.plans[str(plan.uuid)] = plan.model_copy(update={"licenses": counts})


def run(world: FakeWorld, enterprise: str, *, run_id: str = "run-1", as_of=NOW, **kwargs):
    return world.utilization().run_enterprise(enterprise, JobRun(run_id=run_id, as_of=as_of, **kwargs))


def emails(world: FakeWorld) -> Counter[tuple[str, str]]:
    """(campaign, LMS user id) of every email Braze accepted."""
    return Counter((call.campaign_id, ident) for call in world.braze.accepted_triggers() for ident in call.identifiers)


def each(kind: NotificationType, admins) -> Counter[tuple[str, str]]:
    return Counter({(campaign(kind), str(admin.user_id)): 1 for admin in admins})


# -- thresholds ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allocated", "total", "kind"),
    [(0, 0, None), (74, 100, None), (3, 4, LIMITED), (99, 100, LIMITED), (100, 100, FULL), (11, 10, FULL)],
)
def test_the_threshold_reached_decides_the_email(allocated, total, kind):
    world = FakeWorld()
    enterprise, _, admins = setup(world, allocated=allocated, total=total)
    outcome = run(world, enterprise)
    assert outcome.ok
    assert emails(world) == (each(kind, admins) if kind else Counter())
    assert outcome.sent_by_type == ({kind.value: 2} if kind else {})


def test_each_threshold_email_goes_once_per_admin_and_plan_75_then_100_never_75_again():
    world = FakeWorld()
    enterprise, plan, admins = setup(world, allocated=80, total=100)
    run(world, enterprise)
    run(world, enterprise, run_id="run-2", as_of=NOW + timedelta(days=1))
    set_allocation(world, plan, 100, 100)
    run(world, enterprise, run_id="run-3", as_of=NOW + timedelta(days=2))
    set_allocation(world, plan, 80, 100)
    last = run(world, enterprise, run_id="run-4", as_of=NOW + timedelta(days=3))

    assert emails(world) == each(LIMITED, admins) + each(FULL, admins)
    assert last.skipped["threshold_already_sent"] == 2


def test_a_plan_reaching_100_percent_first_never_sends_the_75_percent_email():
    world = FakeWorld()
    enterprise, plan, admins = setup(world, allocated=10, total=10)
    run(world, enterprise)
    set_allocation(world, plan, 8, 10)
    run(world, enterprise, run_id="run-2", as_of=NOW + timedelta(days=1))
    assert emails(world) == each(FULL, admins)


def test_a_75_percent_claim_backs_off_while_another_runs_100_percent_email_is_in_flight():
    world = FakeWorld()
    enterprise, plan, (admin,) = setup(world, allocated=80, total=100, admins=1)
    full = threshold_key(plan.uuid, enterprise, admin.id, FULL)
    assert world.ledger.claim(full, kind=FULL.value, run_id="other-run", expires_at=NOW + timedelta(days=200))

    outcome = run(world, enterprise)

    assert emails(world) == Counter()
    assert outcome.skipped["superseded_by_100_percent"] == 1
    assert world.ledger.get(threshold_key(plan.uuid, enterprise, admin.id, LIMITED)) is None  # released
    assert world.ledger.get(full).state == CLAIMED  # the other run's claim is untouched


def test_a_100_percent_email_waits_while_a_75_percent_send_is_in_flight_and_goes_on_the_next_run():
    world = FakeWorld()
    enterprise, plan, (admin,) = setup(world, allocated=100, total=100, admins=1)
    limited = threshold_key(plan.uuid, enterprise, admin.id, LIMITED)
    other = world.ledger.claim(limited, kind=LIMITED.value, run_id="other-run", expires_at=NOW + timedelta(days=200))

    waiting = run(world, enterprise)

    assert emails(world) == Counter()
    assert waiting.skipped["waits_for_75_percent"] == 1
    assert world.ledger.get(threshold_key(plan.uuid, enterprise, admin.id, FULL)) is None
    assert world.ledger.mark_sent(other, as_of=NOW, run_id="other-run", dispatch_id="d-75")  # the 75 % went out

    run(world, enterprise, run_id="run-2", as_of=NOW + timedelta(days=1))
    assert emails(world) == each(FULL, [admin])


def test_a_100_percent_record_already_sent_means_no_75_percent_email_and_no_claim():
    world = FakeWorld()
    enterprise, plan, (admin,) = setup(world, allocated=80, total=100, admins=1)
    world.ledger.record_sent(threshold_key(plan.uuid, enterprise, admin.id, FULL), kind=FULL.value, as_of=NOW)

    outcome = run(world, enterprise)

    assert (emails(world), outcome.skipped["threshold_already_sent"]) == (Counter(), 1)
    assert world.ledger.get(threshold_key(plan.uuid, enterprise, admin.id, LIMITED)) is None


# -- the weekly digest --------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    joined_hours=st.integers(0, 24 * 20),
    last_digest_hours=st.none() | st.integers(0, 24 * 20),
    minute=st.integers(0, 24 * 60 - 1),
)
def test_a_digest_is_sent_exactly_when_the_rule_says_it_is_due_and_the_ledger_agrees(
    joined_hours, last_digest_hours, minute
):
    as_of = NOW.replace(hour=0, minute=0) + timedelta(minutes=minute)
    world = FakeWorld()
    enterprise, _, (admin,) = setup(world, allocated=0, total=10, admins=1, joined=timedelta(0))
    joined = as_of - timedelta(hours=joined_hours)
    world.lms.admins[enterprise] = [admin.model_copy(update={"created": joined})]
    last = None if last_digest_hours is None else as_of - timedelta(hours=last_digest_hours)
    if last is not None:
        world.ledger.record_sent(weekly_key(enterprise, admin.id), kind=WEEKLY.value, as_of=last)

    outcome = run(world, enterprise, as_of=as_of)

    due = weekly_digest_due(joined, last, as_of)
    assert emails(world) == (each(WEEKLY, [admin]) if due else Counter())
    assert outcome.skipped["claimed_elsewhere"] == 0  # the ledger's resend condition never refuses a due digest
    assert world.ledger.sent([weekly_key(enterprise, admin.id)]).get(weekly_key(enterprise, admin.id)) == (
        as_of if due else last
    )


def test_two_runs_that_both_read_a_digest_as_due_send_it_once():
    """Run 2 reads the ledger (last digest 8 days ago: due), then run 1 records today's digest before run 2
    claims: run 2's claim must fail (the claim's resend cutoff), not send a second digest the same day."""
    world = FakeWorld()
    enterprise, _, (admin,) = setup(world, allocated=0, total=10, admins=1, joined=LONG_AGO)
    key = weekly_key(enterprise, admin.id)
    world.ledger.record_sent(key, kind=WEEKLY.value, as_of=NOW - timedelta(days=8))
    read = world.ledger.sent

    def read_then_lose_the_race(keys):
        seen = read(keys)
        if key in seen and seen[key] < NOW - timedelta(days=1):
            other = world.ledger.claim(
                key, kind=WEEKLY.value, run_id="run-1", expires_at=NOW, resend_if_sent_before=weekly_resend_cutoff(NOW)
            )
            assert world.ledger.mark_sent(other, as_of=NOW - timedelta(hours=1), run_id="run-1", dispatch_id="d-1")
        return seen

    world.ledger.sent = read_then_lose_the_race
    outcome = run(world, enterprise, run_id="run-2")

    assert emails(world) == Counter()
    assert outcome.skipped["claimed_elsewhere"] == 1
    assert world.ledger.get(key).sent_at == NOW - timedelta(hours=1)


def test_a_digest_that_failed_keeps_the_previous_send_so_the_cadence_is_unchanged():
    world = FakeWorld()
    enterprise, _, (admin,) = setup(world, allocated=0, total=10, admins=1, joined=LONG_AGO)
    key = weekly_key(enterprise, admin.id)
    world.ledger.record_sent(key, kind=WEEKLY.value, as_of=NOW - timedelta(days=7))
    world.braze.fail_next(ServerError("braze", "503 after the retries", status=503))

    failed = run(world, enterprise)

    assert (failed.failed, failed.needs_redelivery) == (1, True)
    entry = world.ledger.get(key)
    assert (entry.state, entry.sent_at) == (SENT, NOW - timedelta(days=7))  # released: the previous send is back
    retried = run(world, enterprise, run_id="run-2", as_of=NOW + timedelta(hours=1))
    assert retried.sent == 1
    assert world.ledger.get(key).sent_at == NOW + timedelta(hours=1)


# -- admins, plans and payloads -----------------------------------------------------------------------------------


def test_51_admins_take_two_requests_per_notification_type():
    world = FakeWorld()
    enterprise, _, admins = setup(world, allocated=10, total=10, admins=51, joined=LONG_AGO)

    outcome = run(world, enterprise)

    assert outcome.sent == 102
    sizes = Counter((call.campaign_id, len(call.identifiers)) for call in world.braze.requests(TRIGGER))
    assert sizes == {
        (campaign(FULL), 50): 1,
        (campaign(FULL), 1): 1,
        (campaign(WEEKLY), 50): 1,
        (campaign(WEEKLY), 1): 1,
    }
    assert emails(world) == each(FULL, admins) + each(WEEKLY, admins)


def test_deactivated_and_emailless_admins_are_skipped():
    world = FakeWorld()
    enterprise, _, admins = setup(world, allocated=10, total=10, admins=1)
    world.lms.add_admin(enterprise, user_is_active=False)
    world.lms.add_admin(enterprise, email=" ")

    outcome = run(world, enterprise)

    assert emails(world) == each(FULL, admins)
    assert outcome.skipped["admin_unreachable"] == 2


def test_an_enterprise_without_an_auto_apply_plan_is_skipped_before_reading_its_admins():
    world = FakeWorld()
    customer = world.lms.add_customer("Manual")
    world.license_manager.add_plan(customer.uuid, allocated=10, total=10, expires_in=timedelta(days=100))
    world.lms.add_admin(customer.uuid, joined=LONG_AGO)

    outcome = run(world, str(customer.uuid))

    assert outcome.skipped == {"no_auto_apply_plan": 1}
    assert world.lms.calls == []
    assert world.braze.request_count == 0


def test_the_auto_assign_plan_is_the_active_current_auto_apply_one_expiring_soonest():
    world = FakeWorld()
    enterprise, later, admins = setup(world, allocated=0, total=10, admins=1)
    sooner = world.license_manager.add_plan(
        enterprise, title="Sooner", should_auto_apply_licenses=True, allocated=10, total=10, expires_in=timedelta(50)
    )
    world.license_manager.add_plan(  # not yet current
        enterprise, title="Future", should_auto_apply_licenses=True, allocated=10, total=10, started=-timedelta(1)
    )
    run(world, enterprise)
    (call,) = world.braze.requests(TRIGGER)
    assert call.trigger_properties["subscription_plan_uuid"] == str(sooner.uuid) != str(later.uuid)
    assert emails(world) == each(FULL, admins)


def test_the_payload_carries_the_plan_on_top_and_the_admin_per_recipient():
    world = FakeWorld()
    enterprise, plan, (admin,) = setup(world, allocated=75, total=100, admins=1)

    run(world, enterprise)

    (call,) = world.braze.requests(TRIGGER)
    assert call.trigger_properties == {
        "enterprise_customer_id": enterprise,
        "enterprise_customer_name": "Acme Learning",
        "subscription_plan_uuid": str(plan.uuid),
        "subscription_plan_title": "Acme 2026",
        "subscription_plan_expiration_date": (NOW + timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "allocated_license_count": 75,
        "total_license_count": 100,
        "admin_portal_url": "https://portal.example.com/acme-learning",
    }
    (recipient,) = call.recipients
    assert recipient.external_user_id == str(admin.user_id)
    assert recipient.trigger_properties == {"user_name": "Ada Admin", "email": admin.email}
    entry = world.ledger.get(threshold_key(plan.uuid, enterprise, admin.id, LIMITED))
    assert entry.expires_at == plan.expiration_date + timedelta(days=90)


# -- Braze accepted, with non-fatal errors -------------------------------------------------------------------------


def admin_warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Braze accepted" in r.getMessage()
    ]


def test_the_non_fatal_error_warning_names_the_flagged_admin_id_in_its_text(caplog):
    world = FakeWorld()
    enterprise, _, admins = setup(world, allocated=80, total=100, admins=3)
    flagged = admins[1]
    world.braze.minor_error(str(flagged.user_id), f"{flagged.email} is unsubscribed")
    with caplog.at_level(logging.WARNING):
        outcome = run(world, enterprise)

    (line,) = admin_warnings(caplog)
    (problem,) = outcome.problems
    assert problem.subjects == (str(flagged.id),)
    for text in (line, problem.error):  # the log line and the error notification's text
        assert f"admin id(s) {flagged.id}: {flagged.id}: recipients[1] ({flagged.user_id}):" in text
        assert flagged.email not in text  # masked
    assert all(f"admin id(s) {a.id}" not in line and f"{a.id}: recipients" not in line for a in (admins[0], admins[2]))


def test_non_fatal_errors_naming_no_admin_name_every_admin_id_of_the_request_in_the_text(caplog):
    world = FakeWorld()
    enterprise, _, admins = setup(world, allocated=80, total=100, admins=2)
    world.braze.request_error("campaign is rate limited")
    with caplog.at_level(logging.WARNING):
        outcome = run(world, enterprise)

    (line,) = admin_warnings(caplog)
    (problem,) = outcome.problems
    ids = [str(a.id) for a in admins]
    assert sorted(problem.subjects) == sorted(ids)
    for text in (line, problem.error):
        assert "the errors name none of them" in text
        assert f"admin id(s) {', '.join(problem.subjects)}: campaign is rate limited" in text
