"""One bad thing costs only itself (issue 6): refused recipients, Braze's non-fatal errors, malformed upstream
records, unrecorded sends, empty permission-less replies and the time margin, end to end against moto and
the stand-ins."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from datetime import timedelta

import pytest
from devstack.standins.base import Reply
from devstack.standins.license_manager import LicenseManagerStandIn

from conftest import NOW, PLAN_EXPIRATION_CAMPAIGN, REMINDER_CAMPAIGN, Upstream
from fakes import CountdownRun
from license_notifications.adapters.ledger import REJECTED, Ledger
from license_notifications.config import load_settings
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import ledger_key
from license_notifications.jobs.pipeline import MAX_REJECTED_PER_BATCH, REJECTED_HOLD
from license_notifications.jobs.work import process_work_message
from license_notifications.services import Services

TRIGGER = "/campaigns/trigger/send"
ALIASES = "/users/alias/new"


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def run(services: Services, enterprise: str, *, run_id="run-1", **kwargs):
    return services.expiration_reminders().run_enterprise(
        enterprise, JobRun(run_id=run_id, as_of=NOW, days_before_expiration=30, **kwargs)
    )


def add_enterprise(up: Upstream, activated: int, name="Acme"):
    customer = up.dataset.add_customer(name)
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=10)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:03d}}@example.com")
    return customer, plan, licenses


def reminded(up: Upstream) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in up.braze.sent_to(REMINDER_CAMPAIGN))


def state(services: Services, lic) -> str | None:
    record = services.ledger.get(ledger_key(lic.uuid))
    return record.state if record else None


# -- a recipient Braze refuses ---------------------------------------------------------------------------------


def test_a_refused_recipient_is_isolated_and_the_other_49_are_sent_in_the_same_run(
    upstream: Upstream, services: Services, error_inbox, caplog
):
    customer, _, licenses = add_enterprise(upstream, 50)
    bad = licenses[17]
    upstream.braze.reject(bad.user_email, "invalid email address")
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id="run-r", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    with caplog.at_level(logging.WARNING):
        outcome = process_work_message(message, services.job_for, services.notifier)

    assert (outcome.sent, outcome.failed, outcome.rejected, outcome.error) == (49, 1, 1, None)
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses if lic is not bad})
    extra = upstream.braze.request_count(TRIGGER) - 1
    assert extra <= 2 * math.log2(50) + 2  # the budget per refused recipient
    assert state(services, bad) == REJECTED
    assert not outcome.needs_redelivery  # refused again on redelivery: reported, not retried now
    (notification,) = error_inbox()
    assert notification["license_uuids"] == [bad.uuid]
    assert bad.user_email not in json.dumps(notification)  # masked
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING and bad.uuid in r.getMessage()]
    assert logged
    assert all(bad.user_email not in r.getMessage() for r in logged)


def test_a_refused_recipient_is_held_back_for_a_day_then_retried(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, 3)
    upstream.braze.reject(licenses[0].user_email)
    assert run(services, customer.uuid).rejected == 1
    before = upstream.braze.request_count(TRIGGER)

    again = run(services, customer.uuid, run_id="run-2")  # the next hour: not retried, costs nothing
    assert (again.sent, again.failed) == (0, 0)
    assert upstream.braze.request_count(TRIGGER) == before

    after_the_hold = time.time() + REJECTED_HOLD.total_seconds() + 1
    services.__dict__["ledger"] = Ledger(  # the cached adapter, as a clock a day later would see it
        services.settings.ledger_table_name,
        lease_seconds=services.settings.claim_lease_seconds,
        wall_clock=lambda: after_the_hold,
    )
    upstream.braze.rejected[TRIGGER].clear()  # fixed in Braze meanwhile
    later = run(services, customer.uuid, run_id="run-3")
    assert (later.sent, later.failed) == (1, 0)
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_two_refused_recipients_in_one_batch_are_both_isolated(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, 50)
    for lic in (licenses[3], licenses[40]):
        upstream.braze.reject(lic.user_email)
    outcome = run(services, customer.uuid)
    assert (outcome.sent, outcome.rejected) == (48, 2)
    assert upstream.braze.request_count(TRIGGER) - 1 <= 2 * (2 * math.log2(50) + 2)
    (failure,) = outcome.failures
    assert sorted(failure.subjects) == sorted([licenses[3].uuid, licenses[40].uuid])


def test_a_refused_alias_is_isolated_and_the_rest_triggered_in_one_request(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, 50)
    upstream.braze.reject(licenses[9].user_email, alias=True)
    outcome = run(services, customer.uuid)
    assert (outcome.sent, outcome.rejected) == (49, 1)
    assert upstream.braze.request_count(TRIGGER) == 1
    assert upstream.braze.request_count(ALIASES) - 1 <= 2 * math.log2(50) + 2
    assert licenses[9].uuid not in reminded(upstream)


def test_a_request_refused_whoever_is_in_it_stops_the_enterprise_cheaply_and_holds_nobody(
    upstream: Upstream, services: Services
):
    customer, _, licenses = add_enterprise(upstream, 120)
    upstream.braze.fail_next(TRIGGER, 400, times=1000, body={"message": "Invalid campaign_id"})
    outcome = run(services, customer.uuid)
    assert outcome.sent == 0
    assert "BatchRejectedError" in outcome.error
    assert outcome.needs_redelivery
    assert upstream.braze.request_count(TRIGGER) <= 2 * MAX_REJECTED_PER_BATCH + 2 * math.ceil(math.log2(50))
    assert all(state(services, lic) is None for lic in licenses)  # every claim given back, none held


# -- Braze accepted, with non-fatal errors -----------------------------------------------------------------------


def test_non_fatal_errors_name_the_recipient_masked_and_are_recorded_as_sent(
    upstream: Upstream, services: Services, error_inbox, caplog
):
    customer, _, licenses = add_enterprise(upstream, 3)
    quiet = licenses[1]
    upstream.braze.minor_error(quiet.user_email, "email is unsubscribed")
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id="run-m", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    with caplog.at_level(logging.WARNING):
        outcome = process_work_message(message, services.job_for, services.notifier)
    assert (outcome.sent, outcome.failed, outcome.warned) == (3, 0, 1)
    assert [p.subjects for p in outcome.problems] == [(quiet.uuid,)]
    assert all(state(services, lic) == "sent" for lic in licenses)  # never sent twice
    (notification,) = error_inbox()
    assert notification["license_uuids"] == [quiet.uuid]
    assert "unsubscribed" in notification["error"]
    assert f"license uuid(s) {quiet.uuid}:" in notification["error"]  # findable from the text alone
    assert quiet.user_email not in json.dumps(notification)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "errors" in r.getMessage()]
    assert warnings
    assert all(quiet.user_email not in w for w in warnings)
    assert any(f"{quiet.uuid}: recipients[" in w for w in warnings)
    assert not any(other.uuid in w for w in warnings for other in licenses if other is not quiet)


# -- the ledger could not record a send -------------------------------------------------------------------------


def test_a_send_braze_accepted_but_the_ledger_could_not_record_is_a_failure(
    upstream: Upstream, services: Services, monkeypatch
):
    customer, _, _ = add_enterprise(upstream, 4)
    monkeypatch.setattr(Ledger, "mark_sent_many", lambda self, claims, **kw: 0)
    outcome = run(services, customer.uuid)
    assert (outcome.sent, outcome.unrecorded, outcome.failed) == (4, 4, 4)
    assert not outcome.ok
    assert not outcome.needs_redelivery  # the claims are still held: a redelivery could not record them either
    assert "not recorded in the ledger" in outcome.failures[0].error


def test_a_cli_run_with_an_unrecorded_send_exits_1(upstream: Upstream, app_env, monkeypatch):
    from license_notifications.cli import run as cli_run

    customer, _, _ = add_enterprise(upstream, 2)
    monkeypatch.setattr(Ledger, "mark_sent_many", lambda self, claims, **kw: (_ for _ in ()).throw(OSError("down")))
    code, summary = cli_run(
        ["expiration-reminders", "--enterprise-customer-uuid", customer.uuid, "--as-of", NOW.isoformat()]
    )
    assert code == 1
    assert summary.outcomes[0].unrecorded == 2


# -- permission-less empty replies ------------------------------------------------------------------------------


def test_an_enterprise_without_customer_agreement_fails_and_names_the_likely_cause(
    upstream: Upstream, services: Services, error_inbox
):
    customer = upstream.dataset.add_customer("No Agreement", create_agreement=False)
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id="run-e", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    outcome = process_work_message(message, services.job_for, services.notifier)
    assert not outcome.ok
    assert "enterprise_openedx_operator" in outcome.error
    (notification,) = error_inbox()
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert "enterprise_openedx_operator" in notification["error"]


# -- malformed upstream records ---------------------------------------------------------------------------------


def _tampered_licenses(up: Upstream, plan, tamper) -> None:
    """The next licenses page of ``plan`` as the stand-in renders it, passed through ``tamper``."""
    records = [LicenseManagerStandIn._license_json(lic) for lic in up.dataset.licenses_of(plan.uuid)]
    tamper(records)
    page = {"count": len(records), "next": None, "previous": None, "num_pages": 1, "results": records}
    up.license_manager.respond_next(f"/api/v1/subscriptions/{plan.uuid}/licenses", lambda _: Reply(200, page))


def test_a_malformed_license_record_costs_only_itself(upstream: Upstream, services: Services, error_inbox):
    customer, plan, licenses = add_enterprise(upstream, 5)

    def tamper(records):
        records[0]["status"] = "suspended"  # a status this code does not know: simply not activated
        del records[1]["uuid"]
        records[2]["user_email"] = 42

    _tampered_licenses(upstream, plan, tamper)
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id="run-x", enterprise_customer_uuid=customer.uuid, as_of=NOW
    )
    outcome = process_work_message(message, services.job_for, services.notifier)
    assert outcome.error is None
    assert outcome.sent == 2
    assert outcome.skipped["not_activated"] == 1
    assert (outcome.malformed, outcome.failed) == (2, 2)
    assert not outcome.needs_redelivery
    named = sorted(subject for f in outcome.failures for subject in f.subjects)
    assert named == sorted(["?", licenses[2].uuid])
    assert reminded(upstream) == Counter({licenses[3].uuid: 1, licenses[4].uuid: 1})
    assert len(error_inbox()) == 2


def test_a_malformed_plan_never_hides_the_others(upstream: Upstream, services: Services):
    customer, _, licenses = add_enterprise(upstream, 2)
    broken = upstream.dataset.add_plan(customer.uuid, title="broken", expires_in_days=5)
    upstream.dataset.add_licenses(broken.uuid, "activated", 2)
    path = "/api/v1/customer-agreement"
    page = upstream.license_manager.list_customer_agreements  # render as the stand-in does, then break one plan

    def respond(request):
        reply = page(request)
        for sub in reply.body["results"][0]["subscriptions"]:
            if sub["uuid"] == broken.uuid:
                sub["expiration_date"] = "not a date"
        return reply

    upstream.license_manager.respond_next(path, respond)
    outcome = run(services, customer.uuid)
    assert outcome.error is None
    assert outcome.sent == 2
    assert (outcome.malformed, outcome.failures[0].subjects) == (1, (broken.uuid,))
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_an_unreadable_plan_that_may_renew_an_expired_one_holds_its_post_expiration_emails(
    upstream: Upstream, services: Services
):
    customer = upstream.dataset.add_customer("Tyrell")
    expired = upstream.dataset.add_plan(customer.uuid, title="Tyrell 2025", expires_in_days=-2)
    learners = upstream.dataset.add_licenses(expired.uuid, "activated", 3, "tyrell{n:03d}@example.com")
    renewal = upstream.dataset.add_plan(customer.uuid, title="Tyrell 2026", expires_in_days=363)
    upstream.dataset.add_renewal(expired.uuid, renewal.uuid)
    upstream.dataset.add_licenses(renewal.uuid, "activated", 3, "tyrell{n:03d}@example.com")
    path = "/api/v1/customer-agreement"
    page = upstream.license_manager.list_customer_agreements

    def respond(request):  # the renewal, which names the expired plan in prior_renewals, does not parse
        reply = page(request)
        for sub in reply.body["results"][0]["subscriptions"]:
            if sub["uuid"] == renewal.uuid:
                sub["expiration_date"] = "not a date"
        return reply

    def emailed() -> Counter[str]:
        return Counter(props["license_uuid"] for _, props in upstream.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN))

    job = services.plan_expiration_emails()
    upstream.license_manager.respond_next(path, respond)
    outcome = job.run_enterprise(customer.uuid, JobRun(run_id="run-1", as_of=NOW, days_since_expiration=7))
    assert outcome.error is None
    assert (outcome.sent, outcome.skipped["renewal_unknown"]) == (0, 3)
    assert (outcome.malformed, outcome.failures[0].subjects) == (1, (renewal.uuid,))
    assert emailed() == Counter()

    # once the renewal reads again, its learners are known to continue: still nobody is told
    outcome = job.run_enterprise(customer.uuid, JobRun(run_id="run-2", as_of=NOW, days_since_expiration=7))
    assert outcome.ok
    assert (outcome.sent, outcome.skipped["renewed"]) == (0, 3)
    assert emailed() == Counter()
    assert len(learners) == 3


# -- the time margin ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("checks", range(0, 20, 3))
def test_a_timeout_at_any_check_leaves_every_claim_settled_and_nothing_sent_unrecorded(
    upstream: Upstream, services: Services, checks: int
):
    customer, _, licenses = add_enterprise(upstream, 60)
    upstream.braze.reject(licenses[5].user_email)  # narrowing adds deadline checks inside the first batch
    job = services.expiration_reminders()
    run_ = CountdownRun(run_id="run-t", as_of=NOW, checks=[checks])
    outcome = job.run_enterprise(customer.uuid, run_)
    states = Counter(state(services, lic) for lic in licenses)
    assert states["claimed"] == 0  # nothing left in flight: released, recorded or held
    sent = reminded(upstream)
    assert all(state(services, lic) == "sent" for lic in licenses if lic.uuid in sent)  # every send recorded
    if outcome.error:
        assert "OutOfTimeError" in outcome.error
        assert outcome.needs_redelivery
    # the next attempt finishes the job, sending nobody twice
    finish = job.run_enterprise(customer.uuid, JobRun(run_id="run-t2", as_of=NOW))
    assert finish.error is None
    assert max(reminded(upstream).values()) == 1
    assert sum(reminded(upstream).values()) == 59


def test_the_worker_checks_its_deadline_between_license_pages(upstream: Upstream, services: Services):
    customer, _, _ = add_enterprise(upstream, 1200)  # three pages of 500
    job = services.expiration_reminders()
    # a dry run checks once per batch of 50: the time runs out right after the first page's 10 batches
    outcome = job.run_enterprise(customer.uuid, CountdownRun(run_id="run-p", as_of=NOW, checks=[10], dry_run=True))
    assert "between license pages" in outcome.error
    pages = [r for r in upstream.license_manager.requests if r.path.endswith("/licenses/")]
    assert len(pages) == 1


def test_the_time_margin_covers_one_request_attempt_and_the_ledger_record(services: Services):
    from license_notifications.adapters.ledger import MARK_WORST_CASE_SECONDS

    margin = services.time_margin_seconds
    assert margin >= services.settings.http_timeout_seconds + MARK_WORST_CASE_SECONDS
    assert margin < 900 / 4  # leaves the worker most of its 900 s
    assert timedelta(seconds=margin) < REJECTED_HOLD
