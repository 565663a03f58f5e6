"""The post-expiration emails through the Lambda handlers as AWS invokes them: the schedule's event -> dispatcher ->
SQS (moto) -> worker via a local event source mapping, continuations through the queue, metrics and logs."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import timedelta

import pytest
from devstack.aws import StackResources
from devstack.lambda_local import LocalContext, LocalEventSourceMapping, load_handler, sqs_event
from pydantic import ValidationError

from conftest import NOW, PLAN_EXPIRATION_CAMPAIGN, Upstream
from license_notifications import lambda_runtime
from license_notifications.adapters import license_manager
from license_notifications.errors import ConfigurationError
from license_notifications.jobs.license_emails import PAGES_PER_MESSAGE

JOB = "subscription_plan_expiration_emails"


@pytest.fixture
def handlers(app_env):
    lambda_runtime.services.cache_clear()
    yield load_handler("dispatcher"), load_handler("worker")
    lambda_runtime.services.cache_clear()


@pytest.fixture
def sqs(aws_resources: StackResources):
    import boto3

    return boto3.client("sqs")


def schedule_event(uuids=None, **extra):
    """What the hourly schedule sends (enterprise_customer_uuids null: discover), at NOW."""
    return {"job": JOB, "enterprise_customer_uuids": uuids, "days_since_expiration": 7, "dry_run": False,
            "as_of": NOW.isoformat(), **extra}  # fmt: skip


def expired_enterprise(up: Upstream, name: str, activated: int, *, days_ago: float = 2):
    customer = up.dataset.add_customer(name)
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=-days_ago)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:04d}}@example.com")
    return customer, plan, licenses


def emailed(up: Upstream) -> Counter[str]:
    return Counter(props["license_uuid"] for _, props in up.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN))


def queued_bodies(sqs, url):
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_the_schedule_discovers_enqueues_and_the_worker_sends_each_email_once(
    handlers, upstream, aws_resources, sqs, capsys, monkeypatch
):
    dispatcher, worker = handlers
    log_handler = worker.logger.registered_handler  # bound to a stream when the module was first imported
    monkeypatch.setattr(log_handler, "stream", sys.stdout)  # not setStream(): it flushes the old one, maybe closed
    customers = [expired_enterprise(upstream, f"E{i}", 4, days_ago=1 + i)[0] for i in range(7)]  # E6: 7 days ago
    renewed, old, moved = expired_enterprise(upstream, "Renewed", 3)
    renewal = upstream.dataset.add_plan(
        renewed.uuid, title="renewal", start_date=old.expiration_date,
        expiration_date=old.expiration_date + timedelta(days=365),
    )  # fmt: skip
    upstream.dataset.add_licenses(renewal.uuid, "activated", 3, "renewed{n:04d}@example.com", first=1)
    upstream.dataset.add_renewal(old.uuid, renewal.uuid)

    result = dispatcher.lambda_handler(schedule_event(), LocalContext("dispatcher"))
    assert sorted(result["enterprise_customer_uuids"]) == sorted([c.uuid for c in customers[:6]] + [renewed.uuid])
    assert result["job"] == JOB
    report = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler, batch_size=5).drain()

    assert (report.invocations, report.processed, report.failed_deliveries) == (2, 7, 0)
    sent = emailed(upstream)
    assert (len(sent), set(sent.values())) == (24, {1})
    assert not {lic.uuid for lic in moved} & set(sent)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line and "PlanExpirationEmailsSent" in line]
    assert len(emf) == 2  # one metrics document per worker invocation

    def total(name: str) -> int:
        return sum(sum(v) if isinstance(v, list) else v for v in (m[name] for m in emf))

    assert (total("PlanExpirationEmailsSent"), total("PlanExpirationEmailsSkipped")) == (24, 3)
    completed = [line for line in lines if str(line.get("message", "")).startswith("Completed processing")]
    assert len(completed) == 7
    assert all(line["correlation_id"].startswith(f"{JOB}:") and line["job"] == JOB for line in completed)
    assert sum(line["skipped"].get("renewed", 0) for line in completed) == 3
    success = [line for line in lines if str(line.get("message", "")).startswith("Successfully sent")]
    assert len(success) == 24
    assert all("subscription plan expiration email to " in line["message"] for line in success)
    assert all("***@example.com" in line["message"] for line in success)  # masked


def test_the_dispatcher_carries_the_window_into_every_message(handlers, upstream, aws_resources, sqs):
    dispatcher, _ = handlers
    a, _, _ = expired_enterprise(upstream, "A", 1, days_ago=9)
    b, _, _ = expired_enterprise(upstream, "B", 1, days_ago=1)
    result = dispatcher.lambda_handler(schedule_event(f"{a.uuid} {b.uuid}", days_since_expiration=10),
                                       LocalContext("dispatcher"))  # fmt: skip
    assert result["enqueued"] == 2
    bodies = queued_bodies(sqs, aws_resources.work_queue_url)
    assert {(b["job"], b["days_since_expiration"], b["as_of"]) for b in bodies} == {(JOB, 10, "2026-03-01T09:00:00Z")}


def test_a_large_enterprise_is_shared_through_the_queue(handlers, upstream, aws_resources, sqs, monkeypatch):
    monkeypatch.setattr(license_manager, "LICENSES_PAGE_SIZE", 20)
    dispatcher, worker = handlers
    customer, _, licenses = expired_enterprise(upstream, "Giant", 20 * (PAGES_PER_MESSAGE + 5) + 7)  # 10 pages
    dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    report = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler, batch_size=1).drain()
    assert (report.processed, report.failed_deliveries) == (3, 0)  # the first message and 2 continuations
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_a_duplicate_delivery_sends_nothing_twice(handlers, upstream, aws_resources, sqs):
    dispatcher, worker = handlers
    customer, _, licenses = expired_enterprise(upstream, "Once", 5)
    dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    messages = sqs.receive_message(QueueUrl=aws_resources.work_queue_url)["Messages"]
    event = sqs_event(messages, "arn:aws:sqs:us-east-1:1:q")
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": []}
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": []}
    assert emailed(upstream) == Counter({lic.uuid: 1 for lic in licenses})


def test_a_failing_enterprise_fails_only_its_own_message(handlers, upstream, aws_resources, sqs):
    dispatcher, worker = handlers
    good, _, _ = expired_enterprise(upstream, "Good", 2)
    bad, _, _ = expired_enterprise(upstream, "Bad", 2)
    bad.active = False  # the LMS answers 404
    dispatcher.lambda_handler(schedule_event([good.uuid, bad.uuid]), LocalContext("dispatcher"))
    messages = sqs.receive_message(QueueUrl=aws_resources.work_queue_url, MaxNumberOfMessages=10)["Messages"]
    by_enterprise = {json.loads(m["Body"])["enterprise_customer_uuid"]: m["MessageId"] for m in messages}
    response = worker.lambda_handler(sqs_event(messages, "arn:aws:sqs:us-east-1:1:q"), LocalContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": by_enterprise[bad.uuid]}]}
    assert {props["enterprise_customer_name"] for _, props in upstream.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN)} == {
        "Good"
    }


def test_without_its_campaign_the_dispatcher_enqueues_nothing_and_names_it(
    handlers, upstream, aws_resources, sqs, monkeypatch, error_inbox
):
    dispatcher, _ = handlers
    customer, _, _ = expired_enterprise(upstream, "A", 1)
    monkeypatch.delenv("BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN")
    with pytest.raises(ConfigurationError, match="BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"):
        dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    assert queued_bodies(sqs, aws_resources.work_queue_url) == []
    (notification,) = error_inbox()
    assert notification["job"] == JOB


@pytest.mark.parametrize("bad", [True, "7", 7.0, 0, 3651])
def test_the_dispatcher_refuses_a_window_that_is_not_a_whole_number_of_days_in_range(handlers, bad):
    dispatcher, _ = handlers
    with pytest.raises(ValidationError, match="days_since_expiration"):
        dispatcher.lambda_handler(schedule_event(days_since_expiration=bad), LocalContext("dispatcher"))
