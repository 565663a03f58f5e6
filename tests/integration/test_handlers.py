"""The Lambda handlers as AWS invokes them: dispatcher -> SQS (moto) -> worker via a local event source mapping."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import timedelta

import pytest
from devstack.aws import StackResources
from devstack.lambda_local import LocalContext, LocalEventSourceMapping, load_handler, sqs_event
from pydantic import ValidationError

from conftest import NOW, REMINDER_CAMPAIGN, Upstream, fully_allocated_enterprise
from license_notifications import lambda_runtime
from license_notifications.errors import ConfigurationError
from license_notifications.events import Job


@pytest.fixture
def handlers(app_env):
    lambda_runtime.services.cache_clear()
    yield load_handler("dispatcher"), load_handler("worker")
    lambda_runtime.services.cache_clear()


@pytest.fixture
def sqs(aws_resources: StackResources):
    import boto3

    return boto3.client("sqs")


def schedule_event(uuids, **extra):
    return {
        "job": "license_expiration_reminders",
        "enterprise_customer_uuids": uuids,
        "as_of": NOW.isoformat(),
        **extra,
    }


def enterprises(up: Upstream, n: int, activated: int = 3):
    customers = []
    for i in range(n):
        customer = up.dataset.add_customer(f"Enterprise {i}")
        plan = up.dataset.add_plan(customer.uuid, title=f"Plan {i}", expires_in_days=10)
        up.dataset.add_licenses(plan.uuid, "activated", activated, f"e{i}-{{n:03d}}@example.com")
        customers.append(customer)
    return customers


def queued_bodies(sqs, url):
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_dispatcher_enqueues_one_message_per_valid_enterprise(handlers, upstream, aws_resources, sqs):
    dispatcher, _ = handlers
    customers = enterprises(upstream, 12)
    uuids = ",".join(c.uuid for c in customers) + ", not-a-uuid"
    result = dispatcher.lambda_handler(schedule_event(uuids, days_before_expiration=45), LocalContext("dispatcher"))
    assert result["enqueued"] == 12
    assert result["invalid_enterprise_customer_uuids"] == ["not-a-uuid"]
    bodies = queued_bodies(sqs, aws_resources.work_queue_url)
    assert sorted(b["enterprise_customer_uuid"] for b in bodies) == sorted(c.uuid for c in customers)
    assert {b["run_id"] for b in bodies} == {result["run_id"]}
    assert {b["as_of"] for b in bodies} == {"2026-03-01T09:00:00Z"}
    assert {b["days_before_expiration"] for b in bodies} == {45}


def test_dispatcher_without_a_valid_uuid_enqueues_nothing(handlers, aws_resources, sqs):
    dispatcher, _ = handlers
    with pytest.raises(ConfigurationError, match="No valid enterprise customer UUIDs"):
        dispatcher.lambda_handler(schedule_event("nope"), LocalContext("dispatcher"))
    assert queued_bodies(sqs, aws_resources.work_queue_url) == []


@pytest.mark.parametrize("job", [job.value for job in Job])
@pytest.mark.parametrize("given", ["", "  ", ", ,", [], [""], [" , "]])
def test_dispatcher_given_an_empty_enterprise_list_fails_announced_and_enqueues_nothing(
    handlers, upstream, aws_resources, sqs, error_inbox, job, given
):
    dispatcher, _ = handlers
    enterprises(upstream, 1)  # discovery would find it (a plan due for reminders)
    fully_allocated_enterprise(upstream)  # and this one (utilization)
    event = {"job": job, "enterprise_customer_uuids": given, "as_of": NOW.isoformat()}
    with pytest.raises(ConfigurationError, match="No valid enterprise customer UUIDs provided"):
        dispatcher.lambda_handler(event, LocalContext("dispatcher"))
    assert queued_bodies(sqs, aws_resources.work_queue_url) == []
    assert upstream.license_manager.request_count() == 0  # nothing discovered
    (notification,) = error_inbox()
    assert notification["job"] == job
    assert "No valid enterprise customer UUIDs provided" in notification["error"]


def test_dispatcher_without_campaign_setting_names_it(handlers, upstream, aws_resources, sqs, monkeypatch):
    dispatcher, _ = handlers
    monkeypatch.delenv("BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN")
    customer = enterprises(upstream, 1)[0]
    with pytest.raises(ConfigurationError, match="BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"):
        dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    assert queued_bodies(sqs, aws_resources.work_queue_url) == []


def test_dispatcher_rejects_a_malformed_event(handlers):
    dispatcher, _ = handlers
    with pytest.raises(ValidationError, match="dry_rn"):
        dispatcher.lambda_handler({"job": "license_expiration_reminders", "dry_rn": True}, LocalContext("dispatcher"))


def test_schedule_to_worker_sends_every_reminder_once(handlers, upstream, aws_resources, sqs, capsys):
    dispatcher, worker = handlers
    worker.logger.registered_handler.setStream(sys.stdout)  # the handler was bound when the module was first imported
    customers = enterprises(upstream, 7, activated=4)
    dispatcher.lambda_handler(schedule_event([c.uuid for c in customers]), LocalContext("dispatcher"))
    esm = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler, batch_size=5)
    report = esm.drain()
    assert (report.invocations, report.processed, report.failed_deliveries) == (2, 7, 0)
    sent = Counter(props["license_uuid"] for _, props in upstream.braze.sent_to(REMINDER_CAMPAIGN))
    assert len(sent) == 28
    assert set(sent.values()) == {1}
    # EMF metrics and JSON logs with the run id as correlation id.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line and "ExpirationRemindersSent" in line]
    assert len(emf) == 2  # one metrics document per worker invocation
    sent_values = [m["ExpirationRemindersSent"] for m in emf]
    assert sum(sum(v) if isinstance(v, list) else v for v in sent_values) == 28
    completed = [line for line in lines if str(line.get("message", "")).startswith("Completed processing")]
    assert len(completed) == 7
    assert all(line["correlation_id"].startswith("license_expiration_reminders:") for line in completed)
    assert all(line["job"] == "license_expiration_reminders" for line in completed)  # the record's context keys
    found = [line for line in lines if str(line.get("message", "")).startswith("Found ")]
    assert len(found) == 7
    assert all(line["enterprise_customer_uuid"] in {c.uuid for c in customers} for line in found)
    # Learner emails are masked unless LOG_FULL_EMAILS is set.
    success = [line for line in lines if str(line.get("message", "")).startswith("Successfully sent")]
    assert len(success) == 28
    assert all("***@example.com" in line["message"] for line in success)


def test_a_failing_enterprise_fails_only_its_own_message(handlers, upstream, aws_resources, sqs):
    _, worker = handlers
    good, bad = enterprises(upstream, 2)
    bad.active = False  # the LMS answers 404 for it
    dispatcher = load_handler("dispatcher")
    dispatcher.lambda_handler(schedule_event([good.uuid, bad.uuid]), LocalContext("dispatcher"))
    reply = sqs.receive_message(QueueUrl=aws_resources.work_queue_url, MaxNumberOfMessages=10)
    messages = reply["Messages"]
    by_enterprise = {json.loads(m["Body"])["enterprise_customer_uuid"]: m["MessageId"] for m in messages}
    response = worker.lambda_handler(sqs_event(messages, "arn:aws:sqs:us-east-1:1:q"), LocalContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": by_enterprise[bad.uuid]}]}
    assert {props["enterprise_customer_name"] for _, props in upstream.braze.sent_to()} == {good.name}


def test_a_failed_message_is_redelivered_and_finally_lands_in_the_dlq(handlers, upstream, aws_resources, sqs):
    dispatcher, worker = handlers
    good, bad = enterprises(upstream, 2)
    bad.active = False
    dispatcher.lambda_handler(schedule_event([good.uuid, bad.uuid]), LocalContext("dispatcher"))
    esm = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler)
    report = esm.drain(redeliver_failures=True)
    assert report.processed == 1
    assert report.failed_deliveries == 5  # maxReceiveCount in template.yaml
    dlq = queued_bodies(sqs, aws_resources.work_dead_letter_queue_url)
    assert [b["enterprise_customer_uuid"] for b in dlq] == [bad.uuid]
    assert len(upstream.braze.sent_to()) == 3  # the good enterprise, once, despite the redeliveries


def test_duplicate_delivery_sends_nothing_twice(handlers, upstream, aws_resources, sqs):
    dispatcher, worker = handlers
    customer = enterprises(upstream, 1, activated=5)[0]
    dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    messages = sqs.receive_message(QueueUrl=aws_resources.work_queue_url)["Messages"]
    event = sqs_event(messages, "arn:aws:sqs:us-east-1:1:q")
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": []}
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": []}
    assert len(upstream.braze.sent_to()) == 5


def test_a_malformed_message_fails_alone(handlers, upstream, aws_resources):
    _, worker = handlers
    customer = enterprises(upstream, 1)[0]
    good = {
        "job": "license_expiration_reminders",
        "run_id": "r1",
        "enterprise_customer_uuid": customer.uuid,
        "as_of": NOW.isoformat(),
    }
    messages = [
        {"MessageId": "m-good", "ReceiptHandle": "h1", "Body": json.dumps(good)},
        {"MessageId": "m-bad", "ReceiptHandle": "h2", "Body": json.dumps({**good, "as_of": "yesterday"})},
    ]
    response = worker.lambda_handler(sqs_event(messages, "arn:aws:sqs:us-east-1:1:q"), LocalContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert len(upstream.braze.sent_to()) == 3


def work_body(**fields):
    return {
        "job": "license_expiration_reminders",
        "run_id": "license_expiration_reminders:20260301T090000Z:abcd1234",
        "enterprise_customer_uuid": "3f1e2d4c-1111-4a6b-8c9d-0123456789ab",
        "as_of": NOW.isoformat(),
        **fields,
    }


@pytest.mark.parametrize(
    ("body", "names_enterprise"),
    [
        ("{not json", False),
        (json.dumps(["a", "list"]), False),
        (json.dumps(work_body(as_of=1767225600)), True),  # an epoch
        (json.dumps(work_body(as_of="9999-12-31T23:59:59Z")), True),  # would overflow as_of + the window
        (json.dumps(work_body(days_before_expiration=True)), True),
        (json.dumps(work_body(enterprise_customer_uuid="nope")), False),
    ],
    ids=["not-json", "not-an-object", "epoch-as-of", "as-of-out-of-range", "bool-days", "bad-uuid"],
)
def test_an_unreadable_message_alone_in_its_batch_is_reported_and_announced(
    body, names_enterprise, handlers, error_inbox, capsys, monkeypatch
):
    _, worker = handlers
    monkeypatch.setattr(worker.logger.registered_handler, "stream", sys.stdout)  # this test's captured stdout
    event = sqs_event([{"MessageId": "m-bad", "ReceiptHandle": "h1", "Body": body}], "arn:aws:sqs:us-east-1:1:q")
    response = worker.lambda_handler(event, LocalContext("worker"))  # does not raise although every record failed
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    (notification,) = error_inbox()
    assert notification["sqs_message_id"] == "m-bad"
    assert notification["error"]
    if names_enterprise:
        assert notification["enterprise_customer_uuid"] == "3f1e2d4c-1111-4a6b-8c9d-0123456789ab"
        assert notification["job"] == "license_expiration_reminders"
        assert notification["run_id"] == "license_expiration_reminders:20260301T090000Z:abcd1234"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line.get("level") == "ERROR" and "m-bad" in str(line.get("message"))]
    assert logged["sqs_message_id"] == "m-bad"
    (emf,) = [line for line in lines if "MalformedMessages" in line]
    assert emf["MalformedMessages"] in (1.0, [1.0])


def test_an_unreadable_message_next_to_a_good_one_fails_alone_and_is_announced(handlers, upstream, error_inbox):
    _, worker = handlers
    customer = enterprises(upstream, 1)[0]
    good = work_body(enterprise_customer_uuid=customer.uuid)
    bad = work_body(as_of="9999-12-31T23:59:59Z", run_id="r-bad")
    messages = [
        {"MessageId": "m-good", "ReceiptHandle": "h1", "Body": json.dumps(good)},
        {"MessageId": "m-bad", "ReceiptHandle": "h2", "Body": json.dumps(bad)},
    ]
    response = worker.lambda_handler(sqs_event(messages, "arn:aws:sqs:us-east-1:1:q"), LocalContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert len(upstream.braze.sent_to()) == 3
    (notification,) = error_inbox()
    assert (notification["sqs_message_id"], notification["run_id"]) == ("m-bad", "r-bad")
    assert "as_of" in notification["error"]


def test_an_unreadable_message_that_echoes_an_email_is_announced_masked(handlers, error_inbox):
    _, worker = handlers
    body = json.dumps(work_body(learner="jane.doe@example.com"))  # an unknown key: its value is echoed
    event = sqs_event([{"MessageId": "m-bad", "ReceiptHandle": "h1", "Body": body}], "arn:aws:sqs:us-east-1:1:q")
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    (notification,) = error_inbox()
    assert "learner" in notification["error"]
    assert "jane.doe" not in json.dumps(notification)


def test_an_unreadable_message_is_not_announced_without_an_error_topic(handlers, error_inbox, monkeypatch):
    _, worker = handlers
    monkeypatch.delenv("ERROR_TOPIC_ARN")
    lambda_runtime.services.cache_clear()
    event = sqs_event([{"MessageId": "m-bad", "ReceiptHandle": "h1", "Body": "{"}], "arn:aws:sqs:us-east-1:1:q")
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert error_inbox() == []


def test_an_unreadable_message_whose_announcement_fails_is_still_reported(handlers, aws_resources, monkeypatch):
    _, worker = handlers
    monkeypatch.setenv("ERROR_TOPIC_ARN", aws_resources.error_topic_arn + "-gone")  # SNS answers NotFound
    lambda_runtime.services.cache_clear()
    event = sqs_event([{"MessageId": "m-bad", "ReceiptHandle": "h1", "Body": "{"}], "arn:aws:sqs:us-east-1:1:q")
    assert worker.lambda_handler(event, LocalContext("worker")) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}


def test_utilization_without_a_list_discovers_auto_apply_enterprises(handlers, upstream, aws_resources, sqs):
    dispatcher, worker = handlers
    ds = upstream.dataset
    wanted = ds.add_customer("Auto")
    plan = ds.add_plan(wanted.uuid, title="auto", expires_in_days=100, should_auto_apply_licenses=True)
    ds.add_licenses(plan.uuid, "assigned", 8)
    ds.add_licenses(plan.uuid, "unassigned", 2)
    ds.add_admin(wanted.uuid)
    # Not in scope: inactive, expired, not yet started, and not auto-applying plans.
    for name, kwargs in {
        "Inactive": {"expires_in_days": 100, "is_active": False},
        "Expired": {"expires_in_days": -1},
        "Future": {"start_date": NOW + timedelta(days=5), "expires_in_days": 300},
        "Manual": {"expires_in_days": 100, "auto": None},
    }.items():
        customer = ds.add_customer(name)
        auto = kwargs.pop("auto", True)
        ds.add_plan(customer.uuid, title=name, should_auto_apply_licenses=auto, **kwargs)
    event = {"job": "license_utilization", "enterprise_customer_uuids": None, "as_of": NOW.isoformat()}
    result = dispatcher.lambda_handler(event, LocalContext("dispatcher"))
    assert result["enterprise_customer_uuids"] == [wanted.uuid]
    report = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler).drain()
    assert (report.processed, report.failed_deliveries) == (1, 0)
    campaigns = Counter(sent["campaign_id"] for sent in upstream.braze.outbox)
    assert campaigns == {"campaign-limited-allocations": 1, "campaign-weekly-utilization": 1}


def test_utilization_without_campaign_settings_enqueues_nothing(handlers, aws_resources, sqs, monkeypatch):
    dispatcher, _ = handlers
    monkeypatch.delenv("WEEKLY_LICENSE_UTILIZATION_CAMPAIGN")
    with pytest.raises(ConfigurationError, match="WEEKLY_LICENSE_UTILIZATION_CAMPAIGN"):
        dispatcher.lambda_handler({"job": "license_utilization"}, LocalContext("dispatcher"))
    assert queued_bodies(sqs, aws_resources.work_queue_url) == []


def test_a_dispatcher_failure_is_announced_on_the_error_topic(handlers, error_inbox):
    dispatcher, _ = handlers
    with pytest.raises(ConfigurationError):
        dispatcher.lambda_handler(schedule_event("nope"), LocalContext("dispatcher"))
    (notification,) = error_inbox()
    assert notification["job"] == "license_expiration_reminders"
    assert notification["enterprise_customer_uuid"] is None
    assert "No valid enterprise customer UUIDs" in notification["error"]


def test_a_configuration_error_in_the_worker_is_announced_naming_the_enterprise(
    handlers, upstream, aws_resources, sqs, error_inbox, monkeypatch
):
    dispatcher, worker = handlers
    customer = enterprises(upstream, 1)[0]
    dispatcher.lambda_handler(schedule_event(customer.uuid), LocalContext("dispatcher"))
    lambda_runtime.services.cache_clear()
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "wrong")  # the LMS rejects the client: systemic
    messages = sqs.receive_message(QueueUrl=aws_resources.work_queue_url)["Messages"]
    # Every record failed: reported as such (not an invocation error), each announced on its own.
    response = worker.lambda_handler(sqs_event(messages, "arn:aws:sqs:us-east-1:1:q"), LocalContext("worker"))
    assert response == {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
    (notification,) = error_inbox()
    assert notification["enterprise_customer_uuid"] == customer.uuid
    assert "ConfigurationError" in notification["error"]
