"""Giant enterprises are shared: a whole-enterprise message hands the pages past the first few on as
continuation messages of the same run, and a worker that runs out of time hands the rest on instead of
failing. Every reminder still goes out exactly once."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from pydantic import ValidationError

from conftest import NOW, REMINDER_CAMPAIGN, Upstream
from fakes import CountdownRun
from license_notifications.adapters import license_manager
from license_notifications.cli import EXIT_OK
from license_notifications.cli import run as cli_run
from license_notifications.config import load_settings
from license_notifications.events import Job, WorkMessage
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import PAGES_PER_MESSAGE, ledger_key
from license_notifications.services import Services

PAGE = 20  # license pages of 20 instead of 500: the same paging, a fraction of the licenses (and of moto's time)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(license_manager, "LICENSES_PAGE_SIZE", PAGE)


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def big_enterprise(up: Upstream, activated: int):
    customer = up.dataset.add_customer("Giant")
    plan = up.dataset.add_plan(customer.uuid, title="Giant plan", expires_in_days=10)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, "giant{n:05d}@example.com")
    return customer, plan, licenses


def message(enterprise: str) -> WorkMessage:
    return WorkMessage(job=Job.EXPIRATION_REMINDERS, run_id="run-giant", enterprise_customer_uuid=enterprise, as_of=NOW)


def reminded(up: Upstream) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in up.braze.sent_to(REMINDER_CAMPAIGN))


def drain(services: Services, first: WorkMessage, *, checks: int | None = None, limit: int = 500) -> list:
    """Process ``first`` and every continuation it hands on, like workers taking them from the queue."""
    queue, outcomes = [first], []
    job = services.expiration_reminders()
    while queue:
        assert len(outcomes) < limit, "the hand-offs do not end"
        current = queue.pop(0)
        run = JobRun.from_message(current, enqueue=queue.extend)
        if checks is not None:
            run = CountdownRun(**{f.name: getattr(run, f.name) for f in dataclasses.fields(JobRun)}, checks=[checks])
        outcomes.append(job.run_enterprise(str(current.enterprise_customer_uuid), run))
    return outcomes


def test_a_large_enterprise_keeps_its_first_pages_and_hands_the_rest_on(upstream: Upstream, services: Services):
    customer, plan, licenses = big_enterprise(upstream, PAGE * (PAGES_PER_MESSAGE + 5) + 7)  # 10 pages
    handed: list[WorkMessage] = []
    job = services.expiration_reminders()
    first = job.run_enterprise(customer.uuid, JobRun.from_message(message(customer.uuid), enqueue=handed.extend))
    assert first.ok
    assert first.sent == PAGE * PAGES_PER_MESSAGE
    assert [(m.plan_uuid and str(m.plan_uuid), m.first_page, m.last_page) for m in handed] == [
        (plan.uuid, 5, 8),
        (plan.uuid, 9, None),  # the last part is open-ended: the list may grow while it is shared
    ]
    assert {(m.run_id, m.as_of) for m in handed} == {("run-giant", NOW)}
    pages = [r.query.get("page", ["1"])[0] for r in upstream.license_manager.requests if r.path.endswith("/licenses/")]
    assert pages == ["1", "2", "3", "4"]  # the first message read its own pages only

    outcomes = [job.run_enterprise(customer.uuid, JobRun.from_message(m, enqueue=handed.extend)) for m in handed[:2]]
    assert [o.sent for o in outcomes] == [PAGE * 4, PAGE + 7]
    assert len(handed) == 2  # continuations never split again
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_a_continuation_past_the_end_of_a_list_that_shrank_has_nothing_to_do(
    upstream: Upstream, services: Services, caplog: pytest.LogCaptureFixture
):
    customer, _, licenses = big_enterprise(upstream, PAGE * (PAGES_PER_MESSAGE + 5) + 7)  # 10 pages
    handed: list[WorkMessage] = []
    job = services.expiration_reminders()
    assert job.run_enterprise(customer.uuid, JobRun.from_message(message(customer.uuid), enqueue=handed.extend)).ok
    assert [(m.first_page, m.last_page) for m in handed] == [(5, 8), (9, None)]
    for lic in licenses[: 4 * PAGE]:  # revoked meanwhile (already reminded): the list is now 6 pages long
        lic.status = "revoked"
    tail = job.run_enterprise(customer.uuid, JobRun.from_message(handed[1], enqueue=handed.extend))
    # license-manager answers page 9 with 404 "Invalid page.": the part has no pages any more, not a failure.
    assert tail.ok
    assert tail.error is None
    assert not tail.failures
    assert tail.sent == 0
    assert "no page 9 of plan" in caplog.text
    middle = job.run_enterprise(customer.uuid, JobRun.from_message(handed[0], enqueue=handed.extend))
    assert middle.ok
    assert middle.sent == PAGE + 7  # pages 5 and 6 of the shorter list, then its end
    assert len(handed) == 2
    # The licenses the shrinking moved onto pages read before are the next run's (nothing is recorded for them).
    missed = [lic for lic in licenses[4 * PAGE :] if services.ledger.get(ledger_key(lic.uuid)) is None]
    assert len(missed) == 4 * PAGE
    rerun = job.run_enterprise(
        customer.uuid,
        JobRun.from_message(message(customer.uuid).model_copy(update={"run_id": "next"}), enqueue=handed.extend),
    )
    assert rerun.ok
    assert rerun.sent == 4 * PAGE
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses})


@pytest.mark.parametrize("checks", [6, 25])
def test_a_tiny_timeout_still_ends_with_every_reminder_sent_once(upstream: Upstream, services: Services, checks):
    customer, _, licenses = big_enterprise(upstream, 7 * PAGE + 3)  # eight pages
    upstream.braze.reject(licenses[77].user_email)  # narrowing spends deadline checks inside a batch
    outcomes = drain(services, message(customer.uuid), checks=checks)
    assert all(o.error is None for o in outcomes)  # handed on, never failed
    assert sum(o.handed_on for o in outcomes) == len(outcomes) - 1
    sent = reminded(upstream)
    assert sent == Counter({lic.uuid: 1 for lic in licenses if lic is not licenses[77]})
    states = Counter(services.ledger.get(ledger_key(lic.uuid)).state for lic in licenses)
    assert states == Counter({"sent": 7 * PAGE + 2, "rejected": 1})  # no claim left in flight


def test_without_a_queue_a_timeout_fails_the_enterprise_for_redelivery(upstream: Upstream, services: Services):
    customer, _, _ = big_enterprise(upstream, 3 * PAGE)
    run = CountdownRun(run_id="r", as_of=NOW, checks=[3])
    outcome = services.expiration_reminders().run_enterprise(customer.uuid, run)
    assert "OutOfTimeError" in outcome.error
    assert outcome.needs_redelivery
    assert outcome.failed == 0  # the batch it stopped before was given back, not counted as failed


def test_the_cli_runs_the_continuations_inline(app_env, upstream: Upstream):
    customer, _, licenses = big_enterprise(upstream, PAGE * (PAGES_PER_MESSAGE + 1) + 1)
    code, summary = cli_run(
        ["expiration-reminders", "--enterprise-customer-uuid", customer.uuid, "--as-of", NOW.isoformat()]
    )
    assert code == EXIT_OK
    assert [o.sent for o in summary.outcomes] == [PAGE * PAGES_PER_MESSAGE, PAGE + 1]
    assert reminded(upstream) == Counter({lic.uuid: 1 for lic in licenses})


@pytest.mark.parametrize(
    "fields",
    [
        {"first_page": 2},  # no plan
        {"plan_uuid": "00000000-0000-4000-8000-000000000001"},  # no first page
        {"plan_uuid": "00000000-0000-4000-8000-000000000001", "first_page": 3, "last_page": 2},
        {"plan_uuid": "00000000-0000-4000-8000-000000000001", "first_page": 0},
        {"plan_uuid": "00000000-0000-4000-8000-000000000001", "first_page": "2"},
    ],
)
def test_a_malformed_continuation_is_refused(fields):
    base = {"job": "license_expiration_reminders", "run_id": "r", "as_of": "2026-03-01T09:00:00Z"}
    with pytest.raises(ValidationError):
        WorkMessage.model_validate(
            {**base, "enterprise_customer_uuid": "00000000-0000-4000-8000-000000000002", **fields}
        )
