"""The post-expiration email job end to end against moto (ledger) and the stand-ins (license-manager, LMS, Braze):
the job, two racing workers, discovery, and the ``plan-expiration-emails`` command (log lines, exit status)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, PLAN_EXPIRATION_CAMPAIGN, REMINDER_CAMPAIGN, Upstream, race
from license_notifications.adapters import license_manager
from license_notifications.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE
from license_notifications.cli import run as cli_run
from license_notifications.config import load_settings
from license_notifications.events import DispatchRequest, Job, WorkMessage
from license_notifications.jobs.dispatch import plan_run
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.license_emails import PAGES_PER_MESSAGE
from license_notifications.jobs.plan_expiration_emails import ledger_key
from license_notifications.jobs.work import process_work_message
from license_notifications.services import Services


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def run(services: Services, enterprise: str, *, as_of=NOW, dry_run=False, days=7, run_id="run-1"):
    return services.plan_expiration_emails().run_enterprise(
        enterprise, JobRun(run_id=run_id, as_of=as_of, days_since_expiration=days, dry_run=dry_run)
    )


def emailed(up: Upstream) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in up.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN))


def add_enterprise(up: Upstream, name="Acme", *, expired_days_ago=2.0, activated=3, **customer):
    customer = up.dataset.add_customer(name, **customer)
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=-expired_days_ago)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:03d}}@example.com")
    return customer, plan, licenses


def license_requests(up: Upstream) -> list:
    return [r for r in up.license_manager.requests if r.path.endswith("/licenses/")]


# -- the job -------------------------------------------------------------------------------------------------------


def test_each_activated_license_of_a_plan_expired_in_the_window_is_emailed_once(upstream: Upstream, services):
    customer, plan, licenses = add_enterprise(upstream, activated=3)
    for status in ("assigned", "unassigned", "revoked"):
        upstream.dataset.add_licenses(plan.uuid, status, 2)
    too_old = upstream.dataset.add_plan(customer.uuid, title="too old", expires_in_days=-7)  # exactly 7 days ago
    upstream.dataset.add_licenses(too_old.uuid, "activated", 4)
    current = upstream.dataset.add_plan(customer.uuid, title="current", expires_in_days=10)
    upstream.dataset.add_licenses(current.uuid, "activated", 4)
    inactive = upstream.dataset.add_plan(customer.uuid, title="inactive", expires_in_days=-1, is_active=False)
    upstream.dataset.add_licenses(inactive.uuid, "activated", 4)

    outcome = run(services, customer.uuid)

    assert (outcome.ok, outcome.due, outcome.sent) == (True, 3, 3)
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})
    # The agreement lists the active plan that expired 2 days ago (contract 2.4); only its licenses are read.
    [request] = license_requests(upstream)
    assert request.path == f"/api/v1/subscriptions/{plan.uuid}/licenses/"
    assert request.query["status"] == ["activated"]
    assert upstream.braze.sent_to(REMINDER_CAMPAIGN) == []


def test_the_payload_is_license_managers(upstream: Upstream, services):
    customer, plan, [lic] = add_enterprise(
        upstream, activated=1, sender_alias="Acme Learning", default_language="es", expired_days_ago=1 / 24
    )
    run(services, customer.uuid)
    [request] = upstream.braze.outbox
    [recipient] = request["recipients"]
    assert request["campaign_id"] == PLAN_EXPIRATION_CAMPAIGN
    assert recipient["user_alias"] == {"alias_name": lic.user_email, "alias_label": "Enterprise"}
    assert recipient["send_to_existing_only"] is False
    assert recipient["attributes"] == {"email": lic.user_email, "enterprise_default_language": "es"}
    assert recipient["trigger_properties"] == {
        "license_uuid": lic.uuid,
        "expiration_date": plan.expiration_date.strftime("%Y-%m-%dT%H:%M:%SZ"),  # expired an hour ago: due now
        "days_since_expiration": 0,
        "subscription_plan_title": "Acme plan",
        "enterprise_customer_name": "Acme",
        "enterprise_customer_slug": customer.slug,
        "enterprise_sender_alias": "Acme Learning",
        "enterprise_contact_email": customer.contact_email,
    }
    assert ("Enterprise", lic.user_email) in upstream.braze.aliases


def test_two_braze_requests_per_fifty_emails_and_a_second_run_sends_nothing(upstream: Upstream, services):
    customer, plan, licenses = add_enterprise(upstream, activated=120)
    first = run(services, customer.uuid)
    second = run(services, customer.uuid, as_of=NOW + timedelta(hours=1), run_id="run-2")
    assert (first.sent, first.braze_requests, second.sent, second.skipped) == (120, 6, 0, {"already_sent": 120})
    assert upstream.braze.request_count("/campaigns/trigger/send") == 3
    assert upstream.braze.request_count("/users/alias/new") == 3
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})
    record = services.ledger.get(ledger_key(licenses[0].uuid))
    assert (record.kind, record.state, record.sent_at, record.run_id) == ("plan_expiration_email", "sent", NOW, "run-1")
    assert record.dispatch_id == upstream.braze.outbox[0]["dispatch_id"]
    assert record.enterprise_customer_uuid == customer.uuid
    assert record.expires_at == plan.expiration_date + timedelta(days=365 + 90)  # outlives the widest window


def test_learners_who_moved_to_the_renewal_get_no_email(upstream: Upstream, services):
    customer, old, learners = add_enterprise(upstream, activated=6)
    renewal = upstream.dataset.add_plan(
        customer.uuid,
        title="renewal",
        start_date=old.expiration_date,
        expiration_date=old.expiration_date + timedelta(days=365),
    )
    ds = upstream.dataset
    # The old plan's learners are acme001..acme006 (learners[0..5]).
    ds.add_licenses(renewal.uuid, "activated", 2, "acme{n:03d}@example.com", first=1)  # learners 0, 1
    ds.add_licenses(renewal.uuid, "assigned", 1, "ACME{n:03d}@Example.com", first=3)  # learner 2, another case
    ds.add_licenses(renewal.uuid, "revoked", 1, "acme{n:03d}@example.com", first=4)  # learner 3 lost access
    ds.add_licenses(renewal.uuid, "unassigned", 2)
    ds.add_renewal(old.uuid, renewal.uuid)

    outcome = run(services, customer.uuid)

    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in learners[3:]})
    assert outcome.skipped == {"renewed": 3}
    assert [(r.path, r.query["status"]) for r in license_requests(upstream)] == [
        (f"/api/v1/subscriptions/{old.uuid}/licenses/", ["activated"]),
        (f"/api/v1/subscriptions/{renewal.uuid}/licenses/", ["activated,assigned"]),
    ]


def test_an_opted_out_enterprise_is_skipped_without_reading_licenses(upstream: Upstream, services):
    customer, _, _ = add_enterprise(upstream, disable_expiration_notifications=True)
    outcome = run(services, customer.uuid)
    assert (outcome.ok, outcome.sent, outcome.skipped) == (True, 0, {"opted_out": 1})
    assert license_requests(upstream) == []
    assert upstream.braze.request_count() == 0


def test_a_dry_run_sends_and_records_nothing(upstream: Upstream, services):
    customer, _, licenses = add_enterprise(upstream, activated=4)
    outcome = run(services, customer.uuid, dry_run=True)
    assert (outcome.would_send, outcome.sent) == (4, 0)
    assert upstream.braze.request_count() == 0
    assert services.ledger.get(ledger_key(licenses[0].uuid)) is None


def test_a_failed_batch_is_released_retried_later_and_announced(upstream: Upstream, services, error_inbox):
    customer, _, licenses = add_enterprise(upstream, activated=3)
    upstream.braze.fail_next("/campaigns/trigger/send", 500, times=3)  # past its retries
    message = WorkMessage(
        job=Job.PLAN_EXPIRATION_EMAILS, run_id="run-7", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    outcome = process_work_message(message, services.job_for, services.notifier)
    assert (outcome.sent, outcome.failed, outcome.needs_redelivery) == (0, 3, True)
    (notification,) = error_inbox()
    assert notification["job"] == "subscription_plan_expiration_emails"
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert sorted(notification["license_uuids"]) == sorted(lic.uuid for lic in licenses)
    assert services.ledger.get(ledger_key(licenses[0].uuid)) is None  # released
    assert run(services, customer.uuid, run_id="run-8").sent == 3


def test_a_refused_recipient_is_held_and_the_others_sent(upstream: Upstream, services):
    customer, _, licenses = add_enterprise(upstream, activated=20)
    upstream.braze.reject(licenses[7].user_email)
    outcome = run(services, customer.uuid)
    assert (outcome.sent, outcome.rejected, outcome.needs_redelivery) == (19, 1, False)
    assert services.ledger.get(ledger_key(licenses[7].uuid)).state == "rejected"
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses if lic is not licenses[7]})


@pytest.mark.slow
def test_two_workers_racing_on_one_enterprise_send_each_email_once(upstream: Upstream, app_env, ledger_engine):
    """Real concurrency: two Services (two workers, own HTTP sessions and ledger clients) in threads, on each
    ledger engine (moto, DynamoDB Local: conftest.ledger_engine)."""
    customer, _, licenses = add_enterprise(upstream, activated=200)
    upstream.braze.delay_next("/campaigns/trigger/send", 0.5)  # whoever claims first holds its claims a while
    outcomes = race([Services(load_settings()).plan_expiration_emails() for _ in range(2)], customer.uuid)

    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})
    assert sum(o.sent for o in outcomes) == 200
    assert all(o.ok for o in outcomes)
    assert sum(o.skipped["claimed_elsewhere"] for o in outcomes) > 0  # they really collided


# -- discovery and the command -------------------------------------------------------------------------------------


def test_without_a_list_every_enterprise_with_an_active_plan_expired_in_the_window_is_discovered(
    upstream: Upstream, services
):
    ds = upstream.dataset
    due, old, future, inactive = (ds.add_customer(name) for name in ("Due", "Old", "Future", "Inactive"))
    ds.add_plan(due.uuid, title="due", expires_in_days=-1 / 24)
    ds.add_plan(due.uuid, title="due too", expires_in_days=-6)  # one message per enterprise
    ds.add_plan(old.uuid, title="old", expires_in_days=-7)
    ds.add_plan(future.uuid, title="future", expires_in_days=3)
    ds.add_plan(inactive.uuid, title="inactive", expires_in_days=-1, is_active=False)

    def plan(**kwargs):
        request = DispatchRequest(job=Job.PLAN_EXPIRATION_EMAILS, as_of=NOW, **kwargs)
        return plan_run(request, services.settings, services.license_manager)

    _, messages = plan()
    assert [str(m.enterprise_customer_uuid) for m in messages] == [due.uuid]
    _, wider = plan(days_since_expiration=8)
    assert sorted(str(m.enterprise_customer_uuid) for m in wider) == sorted([due.uuid, old.uuid])
    assert {m.days_since_expiration for m in wider} == {8}


def test_the_command_discovers_sends_and_exits_zero_then_sends_nothing_again(app_env, upstream: Upstream):
    customer, _, licenses = add_enterprise(upstream, activated=3)
    code, summary = cli_run(["plan-expiration-emails", "--as-of", NOW.isoformat()])
    assert (code, summary.sent, [o.enterprise_customer_uuid for o in summary.outcomes]) == (EXIT_OK, 3, [customer.uuid])
    assert summary.run_id.startswith("subscription_plan_expiration_emails:")
    code, summary = cli_run(["plan-expiration-emails", "--as-of", (NOW + timedelta(hours=1)).isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 0)
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_the_command_exits_one_when_an_enterprise_fails_or_a_uuid_is_invalid(app_env, upstream: Upstream):
    bad, _, _ = add_enterprise(upstream, "Gone")
    bad.active = False  # the LMS answers 404
    good, _, _ = add_enterprise(upstream, "Fine", activated=2)
    code, summary = cli_run(
        ["plan-expiration-emails", "--enterprise-customer-uuid", f"{bad.uuid},{good.uuid} bogus", "--as-of",
         NOW.isoformat()]
    )  # fmt: skip
    assert (code, summary.sent, summary.failed, summary.invalid_uuids) == (EXIT_FAILURES, 2, 1, ["bogus"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--days-since-expiration", "0"], "days_since_expiration"),
        (["--days-since-expiration", "3651"], "days_since_expiration"),
        (["--enterprise-customer-uuid", "bogus"], "No valid enterprise customer UUIDs"),
    ],
)
def test_the_command_exits_two_for_bad_arguments_before_anything_is_sent(app_env, upstream, caplog, args, says):
    code, summary = cli_run(["plan-expiration-emails", *args, "--as-of", NOW.isoformat()])
    assert (code, summary) == (EXIT_USAGE, None)
    assert says in caplog.text
    assert upstream.braze.request_count() == 0


def test_the_command_exits_two_without_its_campaign_naming_it(app_env, upstream, monkeypatch, caplog):
    customer, _, _ = add_enterprise(upstream)
    monkeypatch.delenv("BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN")
    code, _ = cli_run(["plan-expiration-emails", "--enterprise-customer-uuid", customer.uuid])
    assert code == EXIT_USAGE
    assert "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN" in caplog.text
    assert upstream.braze.request_count() == 0
    code, _ = cli_run(["expiration-reminders", "--enterprise-customer-uuid", customer.uuid, "--as-of", NOW.isoformat()])
    assert code == EXIT_OK  # the other jobs do not need it


def test_the_command_runs_a_large_enterprises_continuations_inline(app_env, upstream: Upstream, monkeypatch):
    monkeypatch.setattr(license_manager, "LICENSES_PAGE_SIZE", 20)
    customer, _, licenses = add_enterprise(upstream, "Giant", activated=20 * (PAGES_PER_MESSAGE + 1) + 1)
    code, summary = cli_run(
        ["plan-expiration-emails", "--enterprise-customer-uuid", customer.uuid, "--as-of", NOW.isoformat()]
    )
    assert code == EXIT_OK
    assert [o.sent for o in summary.outcomes] == [20 * PAGES_PER_MESSAGE, 21]
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_the_console_script_prints_the_spec_log_lines(app_env, upstream: Upstream):
    customer, _, _ = add_enterprise(upstream, "Alpha", activated=2)
    script = Path(sys.executable).parent / "license-notifications"
    proc = subprocess.run(
        [str(script), "plan-expiration-emails", "--enterprise-customer-uuid", customer.uuid,
         "--days-since-expiration", "3", "--as-of", NOW.isoformat()],
        env={**os.environ, **app_env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert (
        "INFO Starting send_subscription_plan_expiration_emails command for 1 enterprise customer(s), "
        "days_since_expiration=3, dry_run=False"
    ) in err
    assert f"INFO Processing enterprise {customer.uuid}, days_since_expiration=3, dry_run=False" in err
    assert f"INFO Found 2 licenses to process for enterprise {customer.uuid}" in err
    expired_on = (NOW - timedelta(days=2)).date().isoformat()
    assert err.count("INFO Successfully sent subscription plan expiration email to a***@example.com for license") == 2
    assert f"expired on {expired_on}" in err
    assert f"INFO Completed processing for enterprise {customer.uuid}. Success: 2, Failures: 0" in err
    assert "Completed send_subscription_plan_expiration_emails command for 1 enterprise customer(s). " in err
    assert "Total Success: 2, Total Failures: 0" in err
