"""The expiration-reminder job end to end against moto (ledger) and the stand-ins (license-manager, LMS, Braze)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import boto3
import pytest
from devstack.aws import create_secret

from conftest import NOW, REMINDER_CAMPAIGN, Upstream, race
from license_notifications.adapters import license_manager
from license_notifications.adapters.ledger import Ledger
from license_notifications.config import load_settings
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import ledger_key
from license_notifications.jobs.work import process_work_message
from license_notifications.services import Services


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def run(services: Services, enterprise: str, *, as_of=NOW, dry_run=False, days=30, run_id="run-1"):
    return services.expiration_reminders().run_enterprise(
        enterprise, JobRun(run_id=run_id, as_of=as_of, days_before_expiration=days, dry_run=dry_run)
    )


def reminded_licenses(up: Upstream) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in up.braze.sent_to(REMINDER_CAMPAIGN))


def add_enterprise(up: Upstream, name="Acme", *, expires_in_days=10, activated=3, opted_out=False, sender_alias=""):
    customer = up.dataset.add_customer(
        name, sender_alias=sender_alias, disable_expiration_notifications=opted_out, default_language="es"
    )
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=expires_in_days)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:03d}}@example.com")
    return customer, plan, licenses


def test_sends_one_reminder_per_activated_license_in_the_window(upstream: Upstream, services: Services):
    customer, plan, licenses = add_enterprise(upstream, activated=3)
    for status in ("assigned", "unassigned", "revoked"):
        upstream.dataset.add_licenses(plan.uuid, status, 2)
    outside = upstream.dataset.add_plan(customer.uuid, title="later", expires_in_days=45)
    upstream.dataset.add_licenses(outside.uuid, "activated", 4)
    expired = upstream.dataset.add_plan(customer.uuid, title="expired", expires_in_days=-5)
    upstream.dataset.add_licenses(expired.uuid, "activated", 4)

    outcome = run(services, customer.uuid)

    assert outcome.ok
    assert outcome.sent == 3
    assert outcome.due == 3
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in licenses})
    # Only the in-window plan's activated licenses were even fetched.
    license_calls = [r for r in upstream.license_manager.requests if r.path.endswith("/licenses/")]
    assert [r.path for r in license_calls] == [f"/api/v1/subscriptions/{plan.uuid}/licenses/"]


def test_trigger_properties_and_attributes_follow_the_contract(upstream: Upstream, services: Services):
    customer, _plan, licenses = add_enterprise(upstream, activated=1, expires_in_days=10)
    run(services, customer.uuid)
    request = upstream.braze.outbox[0]
    recipient = request["recipients"][0]
    assert request["campaign_id"] == REMINDER_CAMPAIGN
    assert recipient["user_alias"] == {"alias_name": licenses[0].user_email, "alias_label": "Enterprise"}
    assert recipient["send_to_existing_only"] is False
    assert recipient["attributes"] == {"email": licenses[0].user_email, "enterprise_default_language": "es"}
    assert recipient["trigger_properties"] == {
        "license_uuid": licenses[0].uuid,
        "expiration_date": (NOW + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_until_expiration": 10,
        "subscription_plan_title": "Acme plan",
        "enterprise_customer_name": "Acme",
        "enterprise_customer_slug": customer.slug,
        "enterprise_sender_alias": "edX Support Team",
        "enterprise_contact_email": customer.contact_email,
    }
    assert ("Enterprise", licenses[0].user_email) in upstream.braze.aliases


def test_at_most_two_braze_requests_per_fifty_reminders(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, activated=120)
    outcome = run(services, customer.uuid)
    assert outcome.sent == 120
    assert upstream.braze.request_count("/campaigns/trigger/send") == 3
    assert upstream.braze.request_count("/users/alias/new") == 3
    assert outcome.braze_requests == 6
    assert all(len(r["recipients"]) <= 50 for r in upstream.braze.outbox)
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_pages_of_licenses_are_processed_as_they_arrive(upstream: Upstream, services: Services, monkeypatch):
    monkeypatch.setattr(license_manager, "LICENSES_PAGE_SIZE", 40)  # the real 500, scaled down for speed
    customer, _plan, licenses = add_enterprise(upstream, activated=90)
    outcome = run(services, customer.uuid)
    assert outcome.sent == 90
    pages = [r for r in upstream.license_manager.requests if r.path.endswith("/licenses/")]
    assert [r.query.get("page", ["1"])[0] for r in pages] == ["1", "2", "3"]
    # Due licenses carry over pages into full batches of 50; a full batch goes out before the next page
    # is fetched (streaming), and the remainder goes out at the end.
    assert [len(r["recipients"]) for r in upstream.braze.outbox] == [50, 40]
    first_trigger = next(r for r in upstream.braze.requests if r.path == "/campaigns/trigger/send")
    assert first_trigger.at < pages[2].at
    assert outcome.braze_requests == 4
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_due_licenses_of_several_plans_share_braze_batches(upstream: Upstream, services: Services):
    customer, _, first = add_enterprise(upstream, activated=10)
    everyone = list(first)
    for n in range(2):
        plan = upstream.dataset.add_plan(customer.uuid, title=f"extra {n}", expires_in_days=5 + n)
        everyone += upstream.dataset.add_licenses(plan.uuid, "activated", 10, f"extra{n}-{{n:03d}}@example.com")
    outcome = run(services, customer.uuid)
    assert outcome.sent == 30
    assert outcome.braze_requests == 2  # one alias request and one trigger for all three plans
    titles = {p["subscription_plan_title"] for _, p in upstream.braze.sent_to(REMINDER_CAMPAIGN)}
    assert titles == {"Acme plan", "extra 0", "extra 1"}
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in everyone})


def test_ledger_records_the_send_with_as_of_run_id_and_dispatch_id(upstream: Upstream, services: Services):
    customer, plan, licenses = add_enterprise(upstream, activated=1)
    run(services, customer.uuid, run_id="run-42")
    record = services.ledger.get(ledger_key(licenses[0].uuid))
    assert record.state == "sent"
    assert record.sent_at == NOW  # the run's as_of, not the wall clock
    assert record.recorded_at is not None
    assert record.recorded_at != NOW
    assert record.run_id == "run-42"
    assert record.dispatch_id == upstream.braze.outbox[0]["dispatch_id"]
    assert record.claim_token is None
    assert record.expires_at == plan.expiration_date + timedelta(days=90)


def test_a_second_run_sends_nothing_again(upstream: Upstream, services: Services):
    customer, _, _ = add_enterprise(upstream, activated=60)
    first = run(services, customer.uuid)
    second = run(services, customer.uuid, as_of=NOW + timedelta(hours=1), run_id="run-2")
    assert (first.sent, second.sent, second.due) == (60, 0, 0)
    assert second.skipped["already_sent"] == 60
    assert upstream.braze.request_count("/campaigns/trigger/send") == 2


def test_a_week_later_newly_due_licenses_are_sent(upstream: Upstream, services: Services):
    customer, _, soon = add_enterprise(upstream, activated=2, expires_in_days=10)
    later_plan = upstream.dataset.add_plan(customer.uuid, title="later", expires_in_days=35)
    later = upstream.dataset.add_licenses(later_plan.uuid, "activated", 2)
    assert run(services, customer.uuid).sent == 2
    assert run(services, customer.uuid, as_of=NOW + timedelta(days=7), run_id="run-2").sent == 2
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in soon + later})


def test_opted_out_enterprise_is_skipped_without_fetching_licenses(upstream: Upstream, services: Services):
    customer, _, _ = add_enterprise(upstream, opted_out=True)
    outcome = run(services, customer.uuid)
    assert outcome.ok
    assert outcome.sent == 0
    assert outcome.skipped["opted_out"] == 1
    assert upstream.braze.request_count() == 0
    assert not any("/licenses" in r.path for r in upstream.license_manager.requests)


def test_renewed_plan_licenses_get_their_own_reminder(upstream: Upstream, services: Services):
    customer, old_plan, old = add_enterprise(upstream, activated=2, expires_in_days=20)
    renewal = upstream.dataset.add_plan(
        customer.uuid,
        title="renewal",
        start_date=old_plan.expiration_date,
        expiration_date=old_plan.expiration_date + timedelta(days=365),
    )
    new = upstream.dataset.add_licenses(renewal.uuid, "activated", 2, "acme{n:03d}@example.com")
    upstream.dataset.add_renewal(old_plan.uuid, renewal.uuid)
    assert run(services, customer.uuid).sent == 2
    near_renewal_expiry = renewal.expiration_date - timedelta(days=20)
    assert run(services, customer.uuid, as_of=near_renewal_expiry, run_id="run-2").sent == 2
    reminded = reminded_licenses(upstream)
    assert reminded == Counter({lic.uuid: 1 for lic in old + new})
    # Same learners, two reminders: one per license.
    assert {lic.user_email for lic in old} == {lic.user_email for lic in new}


def test_dry_run_sends_and_records_nothing(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, activated=5)
    outcome = run(services, customer.uuid, dry_run=True)
    assert outcome.would_send == 5
    assert outcome.sent == 0
    assert upstream.braze.request_count() == 0
    assert services.ledger.get(ledger_key(licenses[0].uuid)) is None
    assert run(services, customer.uuid, run_id="run-2").sent == 5


def test_failed_batch_is_released_and_retried_by_the_next_run(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, activated=70)
    upstream.braze.fail_next("/campaigns/trigger/send", 500, times=3)  # the first batch exhausts its retries
    first = run(services, customer.uuid)
    assert (first.sent, first.failed, first.ok) == (20, 50, False)
    assert len(first.failures) == 1  # one failed Braze batch...
    assert first.failures[0].count == 50  # ...of 50 licenses, named in the failure
    assert first.failures[0].subject_kind == "license"
    assert first.failures[0].enterprise_customer_uuid == customer.uuid
    released = [lic for lic in licenses if services.ledger.get(ledger_key(lic.uuid)) is None]
    assert len(released) == 50
    second = run(services, customer.uuid, run_id="run-2")
    assert (second.sent, second.failed) == (50, 0)
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_a_refused_request_is_narrowed_down_and_sent_in_halves(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, activated=100)
    upstream.braze.fail_next("/campaigns/trigger/send", 400)  # refused once, whoever is in it
    outcome = run(services, customer.uuid)
    assert (outcome.sent, outcome.failed, outcome.error) == (100, 0, None)
    assert upstream.braze.request_count("/campaigns/trigger/send") == 4  # 50 refused, 25 + 25, 50
    assert reminded_licenses(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_bad_braze_key_stops_the_enterprise(upstream: Upstream, services: Services):
    customer, _, _ = add_enterprise(upstream, activated=100)
    upstream.braze.fail_next("/users/alias/new", 401, times=5)
    outcome = run(services, customer.uuid)
    assert outcome.sent == 0
    assert outcome.failed == 50
    assert outcome.error is not None
    assert "AuthenticationError" in outcome.error
    assert upstream.braze.request_count("/users/alias/new") == 2  # once more with the key read afresh


def test_enterprise_unknown_to_the_lms_fails_that_enterprise(upstream: Upstream, services: Services):
    customer, _, _licenses = add_enterprise(upstream, activated=2)
    customer.active = False
    outcome = run(services, customer.uuid)
    assert not outcome.ok
    assert "NotFoundError" in outcome.error
    assert upstream.braze.request_count() == 0
    # No claim was taken before the enterprise data was in hand: nothing blocks the retry.
    customer.active = True
    assert run(services, customer.uuid, run_id="run-2").sent == 2


def test_a_crashed_workers_claim_expires_after_the_lease(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, activated=1)
    ledger = services.ledger
    claimed_at = time.time()
    stale = ledger.claim(ledger_key(licenses[0].uuid), kind="expiration_reminder", run_id="crashed", expires_at=NOW)
    assert stale is not None
    first = run(services, customer.uuid)
    assert (first.sent, first.skipped["claimed_elsewhere"]) == (0, 1)  # live claim: someone may be sending now
    later = Ledger(
        ledger.table_name,
        lease_seconds=ledger.lease_seconds,
        wall_clock=lambda: claimed_at + ledger.lease_seconds + 1,
    )
    services.__dict__["ledger"] = later  # the cached adapter, as a clock past the lease would see it
    assert run(services, customer.uuid, run_id="run-2").sent == 1


@pytest.mark.slow
def test_two_workers_racing_on_one_enterprise_send_each_reminder_once(upstream: Upstream, app_env, ledger_engine):
    """Real concurrency: two Services (two workers, own HTTP sessions and ledger clients) in threads."""
    customer, _, licenses = add_enterprise(upstream, activated=200)
    # The first send is slow, so whichever worker claimed first still holds its claims when the other
    # reaches them: the race is certain, not a matter of luck.
    upstream.braze.delay_next("/campaigns/trigger/send", 0.5)
    outcomes = race([Services(load_settings()).expiration_reminders() for _ in range(2)], customer.uuid)

    reminded = reminded_licenses(upstream)
    assert reminded == Counter({lic.uuid: 1 for lic in licenses})
    assert sum(o.sent for o in outcomes) == 200
    assert all(o.ok for o in outcomes)
    # The workers really collided: claims were refused because the other worker held them.
    assert sum(o.skipped["claimed_elsewhere"] for o in outcomes) > 0


def test_failures_are_published_to_the_error_topic(upstream: Upstream, services: Services, error_inbox):
    customer, _, licenses = add_enterprise(upstream, activated=3)
    upstream.braze.fail_next("/campaigns/trigger/send", 500, times=3)  # past its retries
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id="run-7", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    outcome = process_work_message(message, services.job_for, services.notifier)
    assert outcome.failed == 3
    (notification,) = error_inbox()
    assert notification["job"] == "license_expiration_reminders"
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert sorted(notification["license_uuids"]) == sorted(lic.uuid for lic in licenses)
    assert notification["run_id"] == "run-7"
    assert notification["recipients_affected"] == 3


def test_recording_a_send_survives_transient_ledger_errors(upstream: Upstream, services: Services, monkeypatch):
    """Braze accepted the batch: a throttled ledger write is retried rather than leaving a claim to expire."""
    from botocore.exceptions import ClientError

    customer, _, licenses = add_enterprise(upstream, activated=2)
    failures = {"left": 3}

    def throttled(request, **kwargs):  # past botocore's own retries
        if failures["left"] and b"dispatch_id" in request.body:  # only mark_sent's writes
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "throttled"}}, "TransactWriteItems")

    services.ledger.client.meta.events.register("before-send.dynamodb", throttled)
    outcome = run(services, customer.uuid)
    assert outcome.sent == 2
    assert failures["left"] == 0  # the failures really happened...
    assert all(services.ledger.get(ledger_key(lic.uuid)).state == "sent" for lic in licenses)  # ...and were retried


def test_an_unanswered_send_is_recorded_as_unconfirmed_and_never_resent(upstream: Upstream, app_env, monkeypatch):
    """No reply to a trigger (read timeout): Braze may have delivered. Keep the licenses as sent
    ("unconfirmed"), report them, and do not send them again on later runs."""
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "0.5")
    services = Services(load_settings())
    customer, _, licenses = add_enterprise(upstream, activated=3)
    upstream.braze.delay_next("/campaigns/trigger/send", 1.5)
    first = run(services, customer.uuid)
    assert (first.sent, first.failed) == (0, 3)
    assert "recorded as sent" in first.failures[0].error
    assert services.ledger.get(ledger_key(licenses[0].uuid)).dispatch_id == "unconfirmed:run-1"
    second = run(services, customer.uuid, run_id="run-2")
    assert second.skipped["already_sent"] == 3
    time.sleep(1.0)  # the stand-in logs the delayed request once its reply is done
    assert upstream.braze.request_count("/campaigns/trigger/send") == 1


def test_a_ledger_error_while_claiming_gives_back_the_claims_already_taken(app_env, upstream: Upstream, monkeypatch):
    from botocore.exceptions import ClientError

    ledger = Services(load_settings()).ledger
    lost = {"left": 1}

    def reply_lost(**kwargs):  # DynamoDB took the claims, the worker never heard back
        if lost["left"]:
            lost["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "unavailable"}}, "TransactWriteItems"
            )

    ledger.client.meta.events.register("after-call.dynamodb.TransactWriteItems", reply_lost)
    requests = [{"key": f"k#{i}", "kind": "x", "run_id": "r", "expires_at": NOW} for i in range(6)]
    with pytest.raises(ClientError):
        ledger.claim_many(requests)
    assert lost["left"] == 0
    assert ledger.states([r["key"] for r in requests]) == {}  # nothing left held until a lease runs out


def test_a_rotated_braze_key_is_picked_up_without_a_restart(upstream: Upstream, app_env, aws_resources, monkeypatch):
    """The key lives in Secrets Manager (moto); after a rotation Braze answers 401 to the cached key, the
    client reads the secret afresh once and carries on."""
    secret_arn = create_secret(aws_resources.endpoint_url, f"braze-key{aws_resources.suffix}", "key-v1")
    monkeypatch.delenv("BRAZE_API_KEY")
    monkeypatch.setenv("BRAZE_API_KEY_SECRET_ARN", secret_arn)
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "300")  # as deployed: the old key stays cached
    upstream.braze.api_key = "key-v1"
    services = Services(load_settings())
    customer, _, _ = add_enterprise(upstream, activated=2)
    assert run(services, customer.uuid).sent == 2
    boto3.client("secretsmanager").put_secret_value(SecretId=secret_arn, SecretString="key-v2")
    upstream.braze.api_key = "key-v2"
    other, _, _ = add_enterprise(upstream, "Other", activated=2)
    assert run(services, other.uuid, run_id="run-2").sent == 2
    assert [r.status for r in upstream.braze.requests].count(401) == 1  # the cached key, refused once
