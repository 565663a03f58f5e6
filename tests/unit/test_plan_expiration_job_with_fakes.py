"""The post-expiration email job (jobs/plan_expiration_emails.py) on in-memory fakes: which plans it reads, whom it
emails (renewals, opt-out, statuses, the window), what it sends and records, how it fills Braze batches and
shares a large enterprise. End to end on moto and the stand-ins: tests/integration/test_plan_expiration_job.py."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NOW
from fakes import ALIASES, TRIGGER, CountdownRun, FakeLicenseManager, FakeWorld
from license_notifications.adapters.ledger import REJECTED, SENT
from license_notifications.errors import ServerError
from license_notifications.jobs import expiration_reminders
from license_notifications.jobs.enterprise_run import JobRun, PagesPart
from license_notifications.jobs.license_emails import PAGES_PER_MESSAGE
from license_notifications.jobs.plan_expiration_emails import LEDGER_KIND, RECORD_RETENTION, ledger_key
from license_notifications.rules.plan_expiration import PlanExpirationDecision

CAMPAIGN = "campaign-plan-expiration"


def run(world: FakeWorld, enterprise, *, run_id: str = "run-1", as_of=NOW, **kwargs):
    job = world.plan_expiration_emails(CAMPAIGN)
    return job.run_enterprise(str(enterprise), JobRun(run_id=run_id, as_of=as_of, **kwargs))


def enterprise(world: FakeWorld, name: str = "Acme", **agreement):
    customer = world.lms.add_customer(name)
    world.license_manager.add_agreement(customer.uuid, **agreement)
    return customer


def expired_plan(world: FakeWorld, customer, ago: timedelta = timedelta(days=2), **kwargs):
    return world.license_manager.add_plan(customer.uuid, expires_in=-ago, **kwargs)


def emailed(world: FakeWorld) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in world.braze.sent_to(CAMPAIGN))


def license_reads(world: FakeWorld) -> list[str]:
    return [plan for method, plan in world.license_manager.calls if method == "license_pages"]


# -- what is sent ------------------------------------------------------------------------------------------------


def test_each_activated_license_of_a_plan_expired_in_the_window_gets_the_email_license_manager_sends():
    world = FakeWorld()
    customer = world.lms.add_customer("Acme", sender_alias="", default_language="fr")
    world.license_manager.add_agreement(customer.uuid)
    expiry = datetime(2026, 2, 26, 23, 30, tzinfo=UTC)  # 2 days 9.5 hours before NOW, 3 calendar days
    plan = world.license_manager.add_plan(customer.uuid, title="Acme 2025", expires_in=expiry - NOW)
    [lic] = world.license_manager.add_licenses(plan, "activated", 1, "Ada@example.com")

    outcome = run(world, customer.uuid)

    assert (outcome.ok, outcome.due, outcome.sent) == (True, 1, 1)
    [call] = world.braze.accepted_triggers(CAMPAIGN)
    [recipient] = call.recipients
    assert recipient.as_json() == {
        "user_alias": {"alias_name": "Ada@example.com", "alias_label": "Enterprise"},
        "send_to_existing_only": False,
        "attributes": {"email": "Ada@example.com", "enterprise_default_language": "fr"},
        "trigger_properties": {
            "license_uuid": str(lic.uuid),
            "expiration_date": "2026-02-26T23:30:00Z",
            "days_since_expiration": 3,  # license-manager's: as_of.date() - expiration_date.date()
            "subscription_plan_title": "Acme 2025",
            "enterprise_customer_name": "Acme",
            "enterprise_customer_slug": "acme",
            "enterprise_sender_alias": "edX Support Team",  # the fall-back of an empty sender_alias
            "enterprise_contact_email": "admin@acme.example.com",
        },
    }
    assert [call.identifiers for call in world.braze.requests(ALIASES)] == [("Ada@example.com",)]
    assert call.trigger_properties is None  # everything is per recipient


@settings(max_examples=30, deadline=None)
@given(plan_sizes=st.lists(st.integers(0, 130), min_size=1, max_size=3), page_size=st.sampled_from([7, 50, 500]))
def test_due_licenses_fill_batches_of_50_across_pages_and_plans(plan_sizes, page_size):
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=page_size))
    customer = enterprise(world)
    licenses = []
    for n, size in enumerate(plan_sizes):
        plan = expired_plan(world, customer, timedelta(days=1 + n), title=f"Plan {n}")
        licenses += world.license_manager.add_licenses(plan, "activated", size, f"p{n}-{{n:03d}}@example.com")

    outcome = run(world, customer.uuid)

    total = len(licenses)
    assert (outcome.ok, outcome.sent) == (True, total)
    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in licenses})
    assert world.braze.request_count == outcome.braze_requests == 2 * math.ceil(total / 50)  # alias + trigger
    sizes = [len(call.identifiers) for call in world.braze.requests(TRIGGER)]
    assert sizes == [50] * (total // 50) + ([total % 50] if total % 50 else [])


def test_the_ledger_records_each_send_under_its_own_kind_and_a_second_run_sends_nothing():
    world = FakeWorld()
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    licenses = world.license_manager.add_licenses(plan, "activated", 60)
    # The reminder this license got before its plan expired is another record: it does not stop this email.
    world.ledger.record_sent(
        expiration_reminders.ledger_key(licenses[0].uuid), kind="expiration_reminder", as_of=NOW - timedelta(days=20)
    )

    first = run(world, customer.uuid)
    again = run(world, customer.uuid, run_id="run-2", as_of=NOW + timedelta(hours=1))

    assert (first.sent, again.sent, again.skipped) == (60, 0, {PlanExpirationDecision.ALREADY_SENT: 60})
    assert world.braze.request_count == 4
    entry = world.ledger.get(ledger_key(licenses[0].uuid))
    assert entry.pk == f"plan_expiration_email#{licenses[0].uuid}"
    assert (entry.kind, entry.state, entry.sent_at, entry.run_id) == (LEDGER_KIND, SENT, NOW, "run-1")
    assert (entry.enterprise_customer_uuid, entry.subject_uuid) == (str(customer.uuid), str(licenses[0].uuid))
    assert entry.expires_at == plan.expiration_date + RECORD_RETENTION


def test_a_dry_run_reads_the_ledger_but_claims_and_sends_nothing():
    world = FakeWorld()
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    licenses = world.license_manager.add_licenses(plan, "activated", 5)
    world.ledger.record_sent(ledger_key(licenses[0].uuid), kind=LEDGER_KIND, as_of=NOW - timedelta(days=1))

    outcome = run(world, customer.uuid, dry_run=True)

    assert (outcome.would_send, outcome.sent, outcome.due) == (4, 0, 4)
    assert world.braze.request_count == 0
    assert world.ledger.stored_keys() == [ledger_key(licenses[0].uuid)]


# -- which plans and licenses --------------------------------------------------------------------------------------


def test_only_active_plans_expired_inside_the_true_window_are_read():
    world = FakeWorld()
    customer = enterprise(world)
    hour_ago = expired_plan(world, customer, timedelta(hours=1), title="an hour ago")
    edge_inside = expired_plan(world, customer, timedelta(days=7) - timedelta(seconds=1), title="inside")
    edge_outside = expired_plan(world, customer, timedelta(days=7), title="exactly 7 days")
    not_yet = world.license_manager.add_plan(customer.uuid, expires_in=timedelta(seconds=1), title="tomorrow")
    inactive = expired_plan(world, customer, timedelta(days=1), title="inactive", is_active=False)
    for plan in (hour_ago, edge_inside, edge_outside, not_yet, inactive):
        world.license_manager.add_licenses(plan, "activated", 2, f"{plan.title[:3]}{{n}}@example.com")

    outcome = run(world, customer.uuid, days_since_expiration=7)

    assert outcome.sent == 4
    assert set(license_reads(world)) == {str(hour_ago.uuid), str(edge_inside.uuid)}


def test_the_window_follows_days_since_expiration():
    world = FakeWorld()
    customer = enterprise(world)
    plan = expired_plan(world, customer, timedelta(days=10))
    world.license_manager.add_licenses(plan, "activated", 3)

    assert run(world, customer.uuid).sent == 0  # the default is 7 days
    assert run(world, customer.uuid, run_id="run-2", days_since_expiration=11).sent == 3


def test_only_activated_licenses_with_an_email_are_sent_even_if_license_manager_ignores_the_filter():
    world = FakeWorld(license_manager=FakeLicenseManager(honour_status_filter=False))
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    activated = world.license_manager.add_licenses(plan, "activated", 3)
    for status in ("assigned", "unassigned", "revoked", "suspended"):
        world.license_manager.add_licenses(plan, status, 1)
    world.license_manager.add_licenses(plan, "activated", 1, "  ")

    outcome = run(world, customer.uuid)

    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in activated})
    assert outcome.skipped == {PlanExpirationDecision.NOT_ACTIVATED: 4, PlanExpirationDecision.NO_EMAIL: 1}
    assert world.license_manager.statuses_asked == [(str(plan.uuid), ("activated",))]


def test_an_opted_out_enterprise_is_skipped_without_reading_its_licenses():
    world = FakeWorld()
    customer = enterprise(world, disable_expiration_notifications=True)
    plan = expired_plan(world, customer)
    world.license_manager.add_licenses(plan, "activated", 3)

    outcome = run(world, customer.uuid)

    assert (outcome.ok, outcome.skipped) == (True, {PlanExpirationDecision.OPTED_OUT: 1})
    assert [method for method, _ in world.license_manager.calls] == ["customer_agreement"]
    assert (world.braze.request_count, world.ledger.stored_keys()) == (0, [])


# -- renewals ------------------------------------------------------------------------------------------------------


def renewed_world(*, page_size: int = 500):
    """A plan that expired 2 days ago with 6 activated learners, renewed into a plan that started then: learners
    0-1 activated there, 2 assigned (in another case), 3 revoked, 4 unassigned-and-gone; 5 not copied at all."""
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=page_size))
    lm = world.license_manager
    customer = enterprise(world)
    old = expired_plan(world, customer, title="2025")
    learners = lm.add_licenses(old, "activated", 6, "learner{n}@example.com")
    renewal = lm.add_plan(customer.uuid, title="2026", expires_in=timedelta(days=363), started=timedelta(days=2))
    lm.add_licenses(renewal, "activated", 2, "learner{n}@example.com")
    lm.add_licenses(renewal, "assigned", 1, "LEARNER{n}@Example.COM")
    lm.add_licenses(renewal, "revoked", 1, "learner{n}@example.com")
    lm.add_licenses(renewal, "unassigned", 1)
    lm.add_renewal(old, renewal)
    return world, customer, old, renewal, learners


def test_learners_who_continue_under_a_renewal_are_skipped_as_renewed():
    world, customer, old, renewal, learners = renewed_world()

    outcome = run(world, customer.uuid)

    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in learners[3:]})  # revoked, unassigned, not copied
    assert outcome.skipped == {PlanExpirationDecision.RENEWED: 3}
    assert (outcome.due, outcome.sent) == (3, 3)
    assert world.license_manager.statuses_asked == [
        (str(old.uuid), ("activated",)),
        (str(renewal.uuid), ("activated", "assigned")),  # read once, for the whole page
    ]
    assert not any(p["subscription_plan_title"] == "2026" for _, p in world.braze.sent_to(CAMPAIGN))


def test_the_renewal_is_read_only_when_a_license_is_otherwise_due():
    world, customer, old, renewal, learners = renewed_world()
    run(world, customer.uuid)
    world.license_manager.statuses_asked.clear()

    again = run(world, customer.uuid, run_id="run-2", as_of=NOW + timedelta(hours=1))

    assert again.sent == 0
    assert again.skipped == {PlanExpirationDecision.ALREADY_SENT: 3, PlanExpirationDecision.RENEWED: 3}
    # the renewed learners are still candidates, so the renewal is read again; sent ones alone would not need it
    assert [plan for plan, _ in world.license_manager.statuses_asked] == [str(old.uuid), str(renewal.uuid)]
    for lic in learners[:3]:
        world.ledger.record_sent(ledger_key(lic.uuid), kind=LEDGER_KIND, as_of=NOW)
    world.license_manager.statuses_asked.clear()
    assert run(world, customer.uuid, run_id="run-3", as_of=NOW + timedelta(hours=2)).sent == 0
    assert [plan for plan, _ in world.license_manager.statuses_asked] == [str(old.uuid)]


def test_a_renewal_spread_over_pages_is_read_whole_once_per_enterprise():
    world, customer, _old, renewal, _ = renewed_world(page_size=2)
    outcome = run(world, customer.uuid)
    assert outcome.skipped == {PlanExpirationDecision.RENEWED: 3}  # the assigned learner is on the second page
    assert license_reads(world).count(str(renewal.uuid)) == 1
    pages = [plan for method, plan in world.license_manager.calls if method == "license_page"]
    assert pages.count(str(renewal.uuid)) == 2  # 3 activated or assigned licenses, 2 a page


def test_an_inactive_renewal_continues_nothing():
    world = FakeWorld()
    lm = world.license_manager
    customer = enterprise(world)
    old = expired_plan(world, customer)
    learners = lm.add_licenses(old, "activated", 2)
    renewal = lm.add_plan(customer.uuid, expires_in=timedelta(days=300), is_active=False)
    lm.add_licenses(renewal, "activated", 2)
    lm.add_renewal(old, renewal)

    outcome = run(world, customer.uuid)

    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in learners})
    assert str(renewal.uuid) not in license_reads(world)
    assert PlanExpirationDecision.RENEWED not in outcome.skipped


def test_a_renewal_that_cannot_be_read_fails_the_enterprise_before_anything_is_claimed():
    world, customer, _old, renewal, _ = renewed_world()
    world.license_manager.fail_plans[str(renewal.uuid)] = ServerError("license-manager", "boom", status=503)

    outcome = run(world, customer.uuid)

    assert "ServerError" in outcome.error
    assert outcome.needs_redelivery
    assert (world.braze.request_count, world.ledger.stored_keys()) == (0, [])


# -- one bad thing costs only itself, a large enterprise is shared ---------------------------------------------


def test_a_recipient_braze_refuses_is_held_and_the_rest_are_sent():
    world = FakeWorld()
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    licenses = world.license_manager.add_licenses(plan, "activated", 10)
    world.braze.refuse(licenses[4].user_email)

    outcome = run(world, customer.uuid)

    assert (outcome.sent, outcome.failed, outcome.rejected) == (9, 1, 1)
    assert outcome.failures[-1].subjects == (str(licenses[4].uuid),)
    assert world.ledger.get(ledger_key(licenses[4].uuid)).state == REJECTED
    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in licenses if lic is not licenses[4]})


def test_a_large_enterprise_keeps_its_first_pages_and_hands_the_rest_on():
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=10))
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    licenses = world.license_manager.add_licenses(plan, "activated", 10 * (PAGES_PER_MESSAGE + 5) + 7)  # 10 pages
    handed: list[PagesPart] = []

    first = run(world, customer.uuid, handoff=handed.extend)

    assert first.sent == 10 * PAGES_PER_MESSAGE
    assert handed == [PagesPart(str(plan.uuid), 5, 8), PagesPart(str(plan.uuid), 9, None)]
    continuations = [run(world, customer.uuid, part=part, handoff=handed.extend) for part in list(handed)]
    assert [c.sent for c in continuations] == [40, 17]
    assert len(handed) == 2  # continuations never split again
    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in licenses})


@pytest.mark.parametrize("checks", [6, 25])
def test_out_of_time_the_rest_is_handed_on_and_every_email_goes_out_once(checks):
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=30))
    customer = enterprise(world)
    plan = expired_plan(world, customer)
    licenses = world.license_manager.add_licenses(plan, "activated", 130)
    job = world.plan_expiration_emails(CAMPAIGN)
    queue: list[PagesPart | None] = [None]
    outcomes = []
    while queue:
        assert len(outcomes) < 50, "the hand-offs do not end"
        part = queue.pop(0)
        run_ = CountdownRun(run_id="run-t", as_of=NOW, part=part, handoff=queue.extend, checks=[checks])
        outcomes.append(job.run_enterprise(str(customer.uuid), run_))

    assert all(o.error is None for o in outcomes)
    assert len(outcomes) > 1  # it really ran out of time
    assert emailed(world) == Counter({str(lic.uuid): 1 for lic in licenses})
