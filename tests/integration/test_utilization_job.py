"""Utilization emails to enterprise admins end to end: moto ledger + stand-ins (license-manager, LMS, Braze)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from conftest import ADMIN_PORTAL, LIMITED_CAMPAIGN, NO_ALLOCATIONS_CAMPAIGN, NOW, WEEKLY_CAMPAIGN, Upstream, race
from license_notifications.config import load_settings
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.utilization import threshold_key
from license_notifications.jobs.work import process_work_message
from license_notifications.rules.utilization import NotificationType
from license_notifications.services import Services

DAY = timedelta(days=1)


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def run(services: Services, enterprise: str, *, as_of=NOW, dry_run=False, run_id="run-1"):
    return services.utilization().run_enterprise(enterprise, JobRun(run_id=run_id, as_of=as_of, dry_run=dry_run))


def auto_apply_enterprise(up: Upstream, name="Stark", *, allocated=8, total=10, admins=2, joined_days_ago=30):
    """An enterprise whose auto-apply plan has ``allocated`` of ``total`` non-revoked licenses allocated."""
    customer = up.dataset.add_customer(name)
    plan = up.dataset.add_plan(
        customer.uuid, title=f"{name} auto", expires_in_days=200, should_auto_apply_licenses=True
    )
    activated = allocated // 2
    if activated:
        up.dataset.add_licenses(plan.uuid, "activated", activated)
    if allocated - activated:
        up.dataset.add_licenses(plan.uuid, "assigned", allocated - activated)
    if total - allocated:
        up.dataset.add_licenses(plan.uuid, "unassigned", total - allocated)
    up.dataset.add_licenses(plan.uuid, "revoked", 3)  # never counted
    admin_records = [
        up.dataset.add_admin(
            customer.uuid, email=f"admin{i}@{name.lower()}.example.com", created=NOW - joined_days_ago * DAY
        )
        for i in range(admins)
    ]
    return customer, plan, admin_records


def sends(up: Upstream, campaign: str) -> Counter[str]:
    return Counter(recipient for recipient, _ in up.braze.sent_to(campaign))


def allocate(up: Upstream, plan, n: int) -> None:
    """Assign ``n`` unassigned licenses of ``plan`` (allocation goes up)."""
    for lic in [lic for lic in up.dataset.licenses_of(plan.uuid) if lic.status == "unassigned"][:n]:
        lic.status = "assigned"


@pytest.mark.parametrize(
    ("allocated", "total", "limited", "full"),
    [
        (749, 1000, 0, 0),  # 74.9 %
        (750, 1000, 1, 0),  # 75 %
        (999, 1000, 1, 0),  # 99.9 %
        (1000, 1000, 0, 1),  # 100 %
        (0, 0, 0, 0),  # a plan with zero licenses has no threshold
    ],
)
def test_threshold_boundaries(upstream: Upstream, services: Services, allocated, total, limited, full):
    customer, _, admins = auto_apply_enterprise(upstream, allocated=allocated, total=total, admins=1)
    run(services, customer.uuid)
    user = str(admins[0].user.id)
    assert sends(upstream, LIMITED_CAMPAIGN)[user] == limited
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN)[user] == full


def test_each_threshold_email_goes_once_per_admin(upstream: Upstream, services: Services):
    customer, plan, admins = auto_apply_enterprise(upstream, allocated=8, total=10, admins=3)
    for day in range(3):
        run(services, customer.uuid, as_of=NOW + day * DAY, run_id=f"day-{day}")
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter({str(a.user.id): 1 for a in admins})
    allocate(upstream, plan, 2)  # now 100 %
    for day in range(3, 6):
        run(services, customer.uuid, as_of=NOW + day * DAY, run_id=f"day-{day}")
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter({str(a.user.id): 1 for a in admins})
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter({str(a.user.id): 1 for a in admins})


def test_100_percent_first_means_never_75(upstream: Upstream, services: Services):
    customer, plan, admins = auto_apply_enterprise(upstream, allocated=10, total=10, admins=2)
    run(services, customer.uuid)
    # Licenses are freed (allocation falls to 80 %): the 75 % email must still never follow the 100 % one.
    for lic in [lic for lic in upstream.dataset.licenses_of(plan.uuid) if lic.status == "assigned"][:2]:
        lic.status = "unassigned"
    outcome = run(services, customer.uuid, as_of=NOW + DAY, run_id="run-2")
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter({str(a.user.id): 1 for a in admins})
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter()
    assert outcome.skipped["threshold_already_sent"] == 2


def test_renewal_starts_thresholds_afresh_but_not_the_weekly_cadence(upstream: Upstream, services: Services):
    customer, plan, _ = auto_apply_enterprise(upstream, allocated=8, total=10, admins=1)
    run(services, customer.uuid)
    plan.is_active = False  # the renewal replaces the plan
    renewal = upstream.dataset.add_plan(
        customer.uuid, title="renewal", start_date=NOW, expires_in_days=500, should_auto_apply_licenses=True
    )
    upstream.dataset.add_licenses(renewal.uuid, "activated", 8)
    upstream.dataset.add_licenses(renewal.uuid, "unassigned", 2)
    run(services, customer.uuid, as_of=NOW + DAY, run_id="run-2")
    limited = [p for _, p in upstream.braze.sent_to(LIMITED_CAMPAIGN)]
    assert [p["subscription_plan_uuid"] for p in limited] == [plan.uuid, renewal.uuid]
    assert len(upstream.braze.sent_to(WEEKLY_CAMPAIGN)) == 1  # day 1 is not a week after day 0


def test_weekly_digest_once_seven_full_days_have_passed_since_joining(upstream: Upstream, services: Services):
    customer, _, (six, seven, almost) = auto_apply_enterprise(upstream, allocated=1, total=10, admins=3)
    six.created = NOW - 6 * DAY
    seven.created = NOW - 7 * DAY
    almost.created = NOW - 7 * DAY + timedelta(hours=1)  # the 7th calendar day, but 6 days 23 hours
    run(services, customer.uuid)
    assert sends(upstream, WEEKLY_CAMPAIGN) == Counter({str(seven.user.id): 1})
    run(services, customer.uuid, as_of=NOW + DAY, run_id="run-2")
    assert sends(upstream, WEEKLY_CAMPAIGN) == Counter({str(u.user.id): 1 for u in (six, seven, almost)})


def test_weekly_digest_every_seven_days_from_the_last_one_sent(upstream: Upstream, services: Services):
    customer, _, (admin,) = auto_apply_enterprise(upstream, allocated=1, total=10, admins=1)
    user = str(admin.user.id)
    sent_on = []
    for day in range(22):
        # Daily runs at drifting times of day; day 9 fails in Braze (the cadence shifts, it never doubles).
        as_of = NOW + day * DAY + timedelta(minutes=(day * 37) % 600)
        if day == 7:
            upstream.braze.fail_next("/campaigns/trigger/send", 500, times=3)
        before = sends(upstream, WEEKLY_CAMPAIGN)[user]
        run(services, customer.uuid, as_of=as_of, run_id=f"day-{day}")
        if sends(upstream, WEEKLY_CAMPAIGN)[user] > before:
            sent_on.append(day)
    assert sent_on == [0, 8, 15]


def test_payload_follows_the_contract(upstream: Upstream, services: Services):
    customer, plan, (admin,) = auto_apply_enterprise(upstream, allocated=8, total=10, admins=1)
    admin.user.first_name, admin.user.last_name = "Dana", "Whitfield"
    run(services, customer.uuid)
    request = next(r for r in upstream.braze.outbox if r["campaign_id"] == LIMITED_CAMPAIGN)
    assert request["trigger_properties"] == {
        "enterprise_customer_id": customer.uuid,
        "enterprise_customer_name": "Stark",
        "subscription_plan_uuid": plan.uuid,
        "subscription_plan_title": "Stark auto",
        "subscription_plan_expiration_date": plan.expiration_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "allocated_license_count": 8,
        "total_license_count": 10,
        "admin_portal_url": f"{ADMIN_PORTAL}/{customer.slug}",
    }
    assert request["recipients"] == [
        {
            "external_user_id": str(admin.user.id),
            "trigger_properties": {"user_name": "Dana Whitfield", "email": "admin0@stark.example.com"},
        }
    ]


def test_51_admins_take_two_requests_per_notification_type(upstream: Upstream, services: Services):
    customer, _, admins = auto_apply_enterprise(upstream, allocated=8, total=10, admins=51)
    outcome = run(services, customer.uuid)
    for campaign in (LIMITED_CAMPAIGN, WEEKLY_CAMPAIGN):
        requests = [r for r in upstream.braze.outbox if r["campaign_id"] == campaign]
        assert [len(r["recipients"]) for r in requests] == [50, 1]
        assert sends(upstream, campaign) == Counter({str(a.user.id): 1 for a in admins})
    assert outcome.sent_by_type == {"limited_allocations_remaining": 51, "periodic_informational": 51}


def test_admin_of_two_enterprises_gets_one_email_per_enterprise(upstream: Upstream, services: Services):
    first, _, (shared,) = auto_apply_enterprise(upstream, "Wayne", allocated=8, total=10, admins=1)
    second, _, _ = auto_apply_enterprise(upstream, "Cyber", allocated=10, total=10, admins=0)
    other = upstream.dataset.add_admin(second.uuid, lms_user_id=shared.user.id, created=NOW - 30 * DAY)
    assert other.id != shared.id
    # as on the real LMS, the newer link is the user's current enterprise and the older one is inactive
    assert (shared.active, other.active) == (False, True)
    run(services, first.uuid)
    run(services, second.uuid)
    user = str(shared.user.id)
    assert sends(upstream, LIMITED_CAMPAIGN)[user] == 1
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN)[user] == 1
    weekly = [p["enterprise_customer_id"] for r, p in upstream.braze.sent_to(WEEKLY_CAMPAIGN) if r == user]
    assert sorted(weekly) == sorted([first.uuid, second.uuid])


def test_deactivated_or_emailless_admins_are_skipped_but_not_admins_whose_link_is_not_current(
    upstream: Upstream, services: Services
):
    customer, _, (kept, elsewhere, deactivated, emailless) = auto_apply_enterprise(
        upstream, allocated=8, total=10, admins=4
    )
    elsewhere.active = False  # current enterprise is another one (contract 3.3): still this one's admin
    deactivated.user.is_active = False
    emailless.user.email = ""
    outcome = run(services, customer.uuid)
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter({str(kept.user.id): 1, str(elsewhere.user.id): 1})
    assert outcome.skipped["admin_unreachable"] == 2


def test_enterprise_without_auto_apply_plan_is_skipped(upstream: Upstream, services: Services):
    customer = upstream.dataset.add_customer("Manual")
    plan = upstream.dataset.add_plan(
        customer.uuid, title="manual", expires_in_days=100, should_auto_apply_licenses=None
    )
    upstream.dataset.add_licenses(plan.uuid, "assigned", 10)
    upstream.dataset.add_admin(customer.uuid)
    outcome = run(services, customer.uuid)
    assert outcome.ok
    assert outcome.skipped["no_auto_apply_plan"] == 1
    assert upstream.braze.request_count() == 0


def test_dry_run_sends_and_records_nothing(upstream: Upstream, services: Services):
    customer, _, _ = auto_apply_enterprise(upstream, allocated=10, total=10, admins=3)
    outcome = run(services, customer.uuid, dry_run=True)
    assert outcome.would_send == 6  # 3 x 100 % + 3 weekly
    assert upstream.braze.request_count() == 0
    assert run(services, customer.uuid).sent == 6


def message(enterprise: str) -> WorkMessage:
    return WorkMessage(job=Job.UTILIZATION, run_id="run-errors", enterprise_customer_uuid=enterprise, as_of=NOW)


def test_a_failed_batch_notifies_naming_enterprise_and_admins_and_others_go_on(
    upstream: Upstream, services: Services, error_inbox
):
    customer, _, admins = auto_apply_enterprise(upstream, allocated=10, total=10, admins=2)
    upstream.braze.fail_next("/campaigns/trigger/send", 500, times=3)  # the 100 % batch outlives its retries
    outcome = process_work_message(message(customer.uuid), services.job_for, services.notifier)
    assert outcome.failed == 2
    assert outcome.sent_by_type == {"periodic_informational": 2}  # the weekly batch still went out
    (notification,) = error_inbox()
    assert notification["job"] == "license_utilization"
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert sorted(notification["admin_ids"]) == sorted(str(a.id) for a in admins)
    assert notification["run_id"] == "run-errors"
    assert "ServerError" in notification["error"]


def test_an_admin_braze_refuses_costs_only_that_admin(upstream: Upstream, services: Services, error_inbox):
    customer, _, (refused, *others) = auto_apply_enterprise(upstream, allocated=10, total=10, admins=5)
    upstream.braze.reject(str(refused.user.id), "unknown external_user_id")
    outcome = process_work_message(message(customer.uuid), services.job_for, services.notifier)
    assert outcome.sent_by_type == {"no_allocations_remaining": 4, "periodic_informational": 4}
    assert (outcome.failed, outcome.rejected) == (2, 2)  # the 100 % email and the digest
    assert not outcome.needs_redelivery  # a redelivery would be refused the same way
    notifications = error_inbox()
    assert len(notifications) == 2
    assert all(n["admin_ids"] == [str(refused.id)] for n in notifications)
    sent = sends(upstream, NO_ALLOCATIONS_CAMPAIGN)
    assert sent == Counter({str(admin.user.id): 1 for admin in others})


def test_a_failed_enterprise_notifies_naming_it(upstream: Upstream, services: Services, error_inbox):
    customer, _, _ = auto_apply_enterprise(upstream, allocated=10, total=10, admins=1)
    customer.active = False  # the LMS answers 404
    outcome = process_work_message(message(customer.uuid), services.job_for, services.notifier)
    assert outcome.error is not None
    (notification,) = error_inbox()
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert "admin_ids" not in notification
    assert "NotFoundError" in notification["error"]


@pytest.mark.slow
def test_two_workers_racing_send_each_admin_each_email_once(upstream: Upstream, app_env, ledger_engine):
    customer, _, admins = auto_apply_enterprise(upstream, allocated=10, total=10, admins=60)
    upstream.braze.delay_next("/campaigns/trigger/send", 0.5)  # hold the first batch's claims: a certain race
    outcomes = race([Services(load_settings()).utilization() for _ in range(2)], customer.uuid)
    expected = Counter({str(a.user.id): 1 for a in admins})
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN) == expected
    assert sends(upstream, WEEKLY_CAMPAIGN) == expected
    assert all(o.ok for o in outcomes)
    assert sum(o.skipped["claimed_elsewhere"] for o in outcomes) > 0


def test_a_75_percent_claim_backs_off_when_a_100_percent_record_appears(
    upstream: Upstream, services: Services, monkeypatch
):
    """Interleaving: run A reads the ledger (nothing sent) at 80 %; run B claims and sends 100 %; run A then
    claims 75 %. A's check after claiming sees B's record and gives the claim back: no 75 % after 100 %."""
    customer, plan, (admin,) = auto_apply_enterprise(upstream, allocated=10, total=10, admins=1)
    run(services, customer.uuid, run_id="B")  # 100 % sent
    for lic in [lic for lic in upstream.dataset.licenses_of(plan.uuid) if lic.status == "assigned"][:2]:
        lic.status = "unassigned"  # A saw the plan at 80 %
    ledger = services.ledger
    monkeypatch.setattr(ledger, "sent", lambda keys: {})  # A's read happened before B's claim
    outcome = run(services, customer.uuid, run_id="A")
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter()
    assert outcome.skipped["superseded_by_100_percent"] == 1
    limited_key = threshold_key(plan.uuid, customer.uuid, admin.id, NotificationType.LIMITED_ALLOCATIONS_REMAINING)
    assert ledger.states([limited_key]) == {}  # A's claim was given back


def test_a_100_percent_claim_waits_while_a_75_percent_send_is_in_flight(upstream: Upstream, services: Services):
    """Interleaving: run A claimed 75 % and is sending it; run B (100 %) claims, sees A's claim in flight,
    backs off; the 100 % email goes out on the next run, after the 75 % one: never before it."""
    customer, plan, (admin,) = auto_apply_enterprise(upstream, allocated=10, total=10, admins=1)
    ledger = services.ledger
    limited_key = threshold_key(plan.uuid, customer.uuid, admin.id, NotificationType.LIMITED_ALLOCATIONS_REMAINING)
    in_flight = ledger.claim(limited_key, kind="limited_allocations_remaining", run_id="A", expires_at=NOW + 90 * DAY)
    outcome = run(services, customer.uuid, run_id="B")
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter()
    assert outcome.skipped["waits_for_75_percent"] == 1
    ledger.mark_sent(in_flight, as_of=NOW, run_id="A", dispatch_id="d-75")  # A's 75 % email went out
    run(services, customer.uuid, as_of=NOW + DAY, run_id="C")
    assert sends(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter({str(admin.user.id): 1})


def test_a_malformed_admin_record_fails_only_that_admin(upstream: Upstream, services: Services):
    customer, _, (good, bad) = auto_apply_enterprise(upstream, allocated=8, total=10, admins=2)
    bad.created = None  # the LMS sends "created": null: not the contract's shape
    outcome = run(services, customer.uuid)
    assert sends(upstream, LIMITED_CAMPAIGN) == Counter({str(good.user.id): 1})
    assert outcome.failed == 1
    assert outcome.failures[0].subjects == (str(bad.id),)
