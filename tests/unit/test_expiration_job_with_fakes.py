"""The expiration-reminder job (jobs/expiration_reminders.py) on in-memory fakes: what it fetches, whom it
reminds, how it fills Braze batches. End to end on moto and the stand-ins: tests/integration/test_expiration_job.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NOW
from fakes import ALIASES, TRIGGER, FakeLicenseManager, FakeWorld
from license_notifications.adapters.ledger import SENT
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import LEDGER_KIND, ledger_key
from license_notifications.rules.expiration import ReminderDecision

CAMPAIGN = "campaign-expiration-reminder"


def run(world: FakeWorld, enterprise, *, run_id: str = "run-1", **kwargs):
    job = world.expiration_reminders(CAMPAIGN)
    return job.run_enterprise(str(enterprise), JobRun(run_id=run_id, as_of=NOW, days_before_expiration=30, **kwargs))


def enterprise(world: FakeWorld, name: str = "Acme", **agreement):
    customer = world.lms.add_customer(name)
    world.license_manager.add_agreement(customer.uuid, **agreement)
    return customer


def reminded(world: FakeWorld) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in world.braze.sent_to(CAMPAIGN))


# -- batches -------------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(plan_sizes=st.lists(st.integers(0, 130), min_size=1, max_size=3), page_size=st.sampled_from([7, 50, 500]))
def test_due_licenses_fill_batches_of_50_across_pages_and_plans(plan_sizes, page_size):
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=page_size))
    customer = enterprise(world)
    licenses = []
    for n, size in enumerate(plan_sizes):
        plan = world.license_manager.add_plan(customer.uuid, title=f"Plan {n}", expires_in=timedelta(days=5 + n))
        licenses += world.license_manager.add_licenses(plan, "activated", size, f"p{n}-{{n:03d}}@example.com")

    outcome = run(world, customer.uuid)

    total = len(licenses)
    assert outcome.ok
    assert outcome.sent == total
    assert reminded(world) == Counter({str(lic.uuid): 1 for lic in licenses})
    batches = math.ceil(total / 50)
    assert world.braze.request_count == outcome.braze_requests == 2 * batches  # alias + trigger per 50
    sizes = [len(call.identifiers) for call in world.braze.requests(TRIGGER)]
    assert sizes == [50] * (total // 50) + ([total % 50] if total % 50 else [])
    assert [len(call.identifiers) for call in world.braze.requests(ALIASES)] == sizes


def test_a_batch_takes_licenses_from_several_pages_and_plans():
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=25))
    customer = enterprise(world)
    first = world.license_manager.add_plan(customer.uuid, title="First", expires_in=timedelta(days=5))
    second = world.license_manager.add_plan(customer.uuid, title="Second", expires_in=timedelta(days=20))
    world.license_manager.add_licenses(first, "activated", 30, "first{n:03d}@example.com")
    world.license_manager.add_licenses(second, "activated", 90, "second{n:03d}@example.com")

    outcome = run(world, customer.uuid)

    assert outcome.sent == 120
    assert world.braze.request_count == 6  # 2 per 50 reminders: 50 + 50 + 20
    first_batch = world.braze.requests(TRIGGER)[0]
    titles = Counter(r.trigger_properties["subscription_plan_title"] for r in first_batch.recipients)
    assert titles == {"First": 30, "Second": 20}
    days = {r.trigger_properties["subscription_plan_title"]: r.trigger_properties["days_until_expiration"]
            for r in first_batch.recipients}  # fmt: skip
    assert days == {"First": 5, "Second": 20}


# -- who is due ----------------------------------------------------------------------------------------------------


def test_an_opted_out_enterprise_is_skipped_without_reading_its_licenses():
    world = FakeWorld()
    customer = enterprise(world, disable_expiration_notifications=True)
    plan = world.license_manager.add_plan(customer.uuid)
    world.license_manager.add_licenses(plan, "activated", 3)

    outcome = run(world, customer.uuid)

    assert outcome.ok
    assert outcome.skipped == {ReminderDecision.OPTED_OUT: 1}
    assert [method for method, _ in world.license_manager.calls] == ["customer_agreement"]
    assert world.braze.request_count == 0
    assert world.ledger.stored_keys() == []


def test_only_activated_licenses_not_yet_reminded_are_sent_even_if_license_manager_ignores_the_filter():
    world = FakeWorld(license_manager=FakeLicenseManager(honour_status_filter=False))
    customer = enterprise(world)
    plan = world.license_manager.add_plan(customer.uuid)
    activated = world.license_manager.add_licenses(plan, "activated", 3)
    for status in ("assigned", "unassigned", "revoked", "suspended"):
        world.license_manager.add_licenses(plan, status, 1)
    world.ledger.record_sent(ledger_key(activated[0].uuid), kind=LEDGER_KIND, as_of=NOW - timedelta(days=2))

    outcome = run(world, customer.uuid)

    assert reminded(world) == Counter({str(activated[1].uuid): 1, str(activated[2].uuid): 1})
    assert outcome.skipped == {ReminderDecision.NOT_ACTIVATED: 4, ReminderDecision.ALREADY_SENT: 1}
    assert (outcome.due, outcome.sent) == (2, 2)
    sent_at = world.ledger.sent([ledger_key(lic.uuid) for lic in activated])
    assert sent_at[ledger_key(activated[0].uuid)] == NOW - timedelta(days=2)  # the earlier send is kept


def test_plans_outside_the_window_are_not_read():
    world = FakeWorld()
    customer = enterprise(world)
    inside = world.license_manager.add_plan(customer.uuid, title="inside", expires_in=timedelta(days=30))
    beyond = world.license_manager.add_plan(customer.uuid, title="beyond", expires_in=timedelta(days=30, seconds=1))
    expired = world.license_manager.add_plan(customer.uuid, title="expired", expires_in=timedelta(0))
    for plan in (inside, beyond, expired):
        world.license_manager.add_licenses(plan, "activated", 2)

    outcome = run(world, customer.uuid)

    assert outcome.sent == 2
    read = {plan for method, plan in world.license_manager.calls if method == "license_pages"}
    assert read == {str(inside.uuid)}


def test_a_second_run_sends_nothing_again_and_records_what_it_sent():
    world = FakeWorld()
    customer = enterprise(world)
    plan = world.license_manager.add_plan(customer.uuid)
    licenses = world.license_manager.add_licenses(plan, "activated", 60)

    first = run(world, customer.uuid)
    again = run(world, customer.uuid, run_id="run-2")

    assert (first.sent, again.sent, again.skipped[ReminderDecision.ALREADY_SENT]) == (60, 0, 60)
    assert world.braze.request_count == 4
    entry = world.ledger.get(ledger_key(licenses[0].uuid))
    assert (entry.state, entry.sent_at, entry.run_id, entry.dispatch_id) == (SENT, NOW, "run-1", "dispatch-1")
    assert entry.expires_at == plan.expiration_date + timedelta(days=90)


def test_a_dry_run_reads_the_ledger_but_claims_and_sends_nothing():
    world = FakeWorld()
    customer = enterprise(world)
    plan = world.license_manager.add_plan(customer.uuid)
    world.license_manager.add_licenses(plan, "activated", 55)

    outcome = run(world, customer.uuid, dry_run=True)

    assert (outcome.would_send, outcome.sent, outcome.due) == (55, 0, 55)
    assert (world.braze.request_count, world.ledger.stored_keys()) == (0, [])


@dataclass(frozen=True, kw_only=True)
class OutOfTimeAfterPages(JobRun):
    """A run whose time is up once license-manager has served ``pages`` license pages."""

    license_manager: FakeLicenseManager
    pages: int

    def out_of_time(self) -> bool:
        return sum(method == "license_page" for method, _ in self.license_manager.calls) >= self.pages


def test_the_deadline_is_checked_between_license_pages_and_what_waits_for_a_batch_is_not_claimed():
    world = FakeWorld(license_manager=FakeLicenseManager(page_size=40))  # a page fills no batch of 50
    customer = enterprise(world)
    plan = world.license_manager.add_plan(customer.uuid)
    world.license_manager.add_licenses(plan, "activated", 120)
    job = world.expiration_reminders(CAMPAIGN)

    outcome = job.run_enterprise(
        str(customer.uuid),
        OutOfTimeAfterPages(run_id="run-p", as_of=NOW, license_manager=world.license_manager, pages=1),
    )

    assert "between license pages" in outcome.error
    assert outcome.needs_redelivery
    assert sum(method == "license_page" for method, _ in world.license_manager.calls) == 1
    assert (world.braze.request_count, world.ledger.stored_keys()) == (0, [])


# -- an enterprise that cannot be processed ----------------------------------------------------------------------


def test_no_customer_agreement_fails_the_enterprise_naming_the_likely_missing_role():
    world = FakeWorld()
    customer = world.lms.add_customer("No agreement")

    outcome = run(world, customer.uuid)

    assert "enterprise_openedx_operator" in outcome.error
    assert outcome.needs_redelivery
    assert world.braze.request_count == 0


def test_an_enterprise_unknown_to_the_lms_fails_before_anything_is_claimed():
    world = FakeWorld()
    customer = world.lms.add_customer("Gone")
    world.license_manager.add_agreement(customer.uuid)
    plan = world.license_manager.add_plan(customer.uuid)
    world.license_manager.add_licenses(plan, "activated", 3)
    del world.lms.customers[str(customer.uuid)]

    outcome = run(world, customer.uuid)

    assert "NotFoundError" in outcome.error
    assert world.ledger.stored_keys() == []  # nothing held: the next run can take every license
    assert world.braze.request_count == 0


def test_a_malformed_license_record_costs_only_itself():
    world = FakeWorld()
    customer = enterprise(world)
    plan = world.license_manager.add_plan(customer.uuid)
    good = world.license_manager.add_licenses(plan, "activated", 2)
    world.license_manager.add_raw_license(plan, {"status": "activated", "user_email": "x@example.com"})  # no uuid

    outcome = run(world, customer.uuid)

    assert outcome.error is None
    assert (outcome.sent, outcome.malformed, outcome.failed) == (2, 1, 1)
    assert not outcome.needs_redelivery
    assert reminded(world) == Counter({str(lic.uuid): 1 for lic in good})
