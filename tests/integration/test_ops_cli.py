"""The operators' tools at the CLI level, against the local stack: ``check``, ``report``, ``redrive``, and the
progress line of long runs."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import boto3
import pytest

from conftest import (
    LIMITED_CAMPAIGN,
    NO_ALLOCATIONS_CAMPAIGN,
    NOW,
    PLAN_EXPIRATION_CAMPAIGN,
    REMINDER_CAMPAIGN,
    WEEKLY_CAMPAIGN,
    Upstream,
    fully_allocated_enterprise,
)
from license_notifications.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, Progress, run
from license_notifications.events import Job, WorkMessage

CAMPAIGNS = (REMINDER_CAMPAIGN, LIMITED_CAMPAIGN, NO_ALLOCATIONS_CAMPAIGN, WEEKLY_CAMPAIGN, PLAN_EXPIRATION_CAMPAIGN)


def cli(*args: str) -> tuple[int, object, str]:
    out = io.StringIO()
    code, result = run(list(args), out=out)
    return code, result, out.getvalue()


def enterprise(up: Upstream, name: str, *, activated=3, expires_in_days=10):
    customer = up.dataset.add_customer(name)
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=expires_in_days)
    licenses = up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:03d}}@example.com")
    return customer, licenses


@pytest.fixture
def live_campaigns(upstream: Upstream) -> None:
    for campaign in CAMPAIGNS:
        upstream.braze.set_campaign(campaign, name=f"{campaign} (email)")


# -- check -----------------------------------------------------------------------------------------------------


def test_check_passes_on_a_healthy_stack_and_sends_and_writes_nothing(app_env, upstream, live_campaigns):
    enterprise(upstream, "Alpha")
    code, checks, out = cli("check")
    assert code == EXIT_OK, out
    assert [c.status for c in checks] == ["PASS"] * 10
    assert [c.name for c in checks][:4] == [
        "configuration",
        "OAuth token",
        "license-manager all-plans feed",
        "LMS enterprise-customer",
    ]
    assert out.splitlines()[-1] == "10 checks: 0 failed"
    assert all(line.startswith(("PASS", "10 checks")) for line in out.splitlines())
    assert [r.method for r in upstream.braze.requests] == ["GET"] * 5  # campaign details only: nothing sent
    table = boto3.client("dynamodb").scan(TableName=app_env["LEDGER_TABLE_NAME"])
    assert table["Count"] == 0  # nothing written


def test_check_fails_for_an_archived_or_disabled_campaign_and_an_empty_feed(app_env, upstream, live_campaigns):
    upstream.braze.set_campaign(REMINDER_CAMPAIGN, archived=True)
    upstream.braze.set_campaign(WEEKLY_CAMPAIGN, enabled=False)
    code, checks, out = cli("check")
    assert code == EXIT_FAILURES
    by_name = {c.name: c for c in checks}
    assert by_name["license-manager all-plans feed"].status == "FAIL"
    assert "enterprise_openedx_operator" in by_name["license-manager all-plans feed"].reason
    assert by_name["LMS enterprise-customer"].status == "WARN"  # nothing to ask about
    assert by_name["Braze campaign BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"].status == "FAIL"
    assert "archived" in by_name["Braze campaign BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"].reason
    assert "not enabled" in by_name["Braze campaign WEEKLY_LICENSE_UTILIZATION_CAMPAIGN"].reason
    assert by_name["ledger table"].status == "PASS"
    assert "3 failed" in out


def test_check_warns_when_the_braze_key_cannot_read_campaign_details(app_env, upstream, live_campaigns):
    enterprise(upstream, "Alpha")
    upstream.braze.deny_details()
    code, checks, _ = cli("check")
    assert code == EXIT_OK
    campaigns = [c for c in checks if c.name.startswith("Braze campaign")]
    assert [c.status for c in campaigns] == ["WARN"] * 5
    assert all("campaigns.details" in c.reason for c in campaigns)


def test_check_names_an_unknown_campaign_and_a_rejected_oauth_client(app_env, upstream, live_campaigns, monkeypatch):
    enterprise(upstream, "Alpha")
    monkeypatch.setenv("NO_ALLOCATIONS_REMAINING_CAMPAIGN", "no-such-campaign")
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "wrong")
    code, checks, _ = cli("check")
    assert code == EXIT_FAILURES
    by_name = {c.name: c for c in checks}
    assert by_name["OAuth token"].status == "FAIL"
    assert by_name["Braze campaign NO_ALLOCATIONS_REMAINING_CAMPAIGN"].status == "FAIL"
    assert "Invalid campaign_id" in by_name["Braze campaign NO_ALLOCATIONS_REMAINING_CAMPAIGN"].reason


def test_check_names_every_missing_setting(app_env, monkeypatch):
    monkeypatch.delenv("LMS_URL")
    monkeypatch.delenv("BRAZE_API_URL")
    code, checks, out = cli("check")
    assert code == EXIT_FAILURES
    [only] = checks
    assert (only.name, only.status) == ("configuration", "FAIL")
    assert "LMS_URL" in only.reason
    assert "BRAZE_API_URL" in only.reason
    assert out.startswith("FAIL  configuration:")


def test_check_checks_the_post_expiration_campaign(app_env, upstream, live_campaigns, monkeypatch):
    enterprise(upstream, "Alpha")
    upstream.braze.set_campaign(PLAN_EXPIRATION_CAMPAIGN, draft=True)
    code, checks, _ = cli("check")
    assert code == EXIT_FAILURES
    check = {c.name: c for c in checks}["Braze campaign BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"]
    assert (check.status, PLAN_EXPIRATION_CAMPAIGN in check.reason, "a draft" in check.reason) == ("FAIL", True, True)
    monkeypatch.delenv("BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN")  # the other jobs can still run
    code, checks, _ = cli("check")
    check = {c.name: c for c in checks}["Braze campaign BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"]
    assert (code, check.status, check.reason) == (EXIT_OK, "WARN", "not set: the job that needs it cannot run")


# -- report ----------------------------------------------------------------------------------------------------


def test_report_answers_by_license_run_and_enterprise(app_env, upstream):
    alpha, licenses = enterprise(upstream, "Alpha", activated=3)
    beta, _ = enterprise(upstream, "Beta", activated=2)
    code, summary = run(["expiration-reminders", "--as-of", NOW.isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 5)

    code, rows, out = cli("report", "--license-uuid", licenses[0].uuid)
    assert code == EXIT_OK
    [row] = rows
    assert (row.license_uuid, row.state, row.run_id) == (licenses[0].uuid, "sent", summary.run_id)
    assert row.enterprise_customer_uuid == alpha.uuid
    assert row.dispatch_id
    header = out.splitlines()[0].split()
    assert header == [
        "key",
        "state",
        "sent_at",
        "run_id",
        "dispatch_id",
        "enterprise_customer_uuid",
        "license_uuid",
        "admin_id",
    ]
    assert licenses[0].uuid in out

    code, rows, _ = cli("report", "--run-id", summary.run_id)
    assert len(rows) == 5

    code, rows, out = cli("report", "--enterprise-customer-uuid", beta.uuid, "--json")
    assert [r["enterprise_customer_uuid"] for r in json.loads(out)] == [beta.uuid, beta.uuid]
    assert set(json.loads(out)[0]) == {
        "key", "state", "sent_at", "run_id", "dispatch_id", "enterprise_customer_uuid", "license_uuid", "admin_id",
    }  # fmt: skip

    before = (NOW - timedelta(minutes=1)).isoformat()
    _, rows, _ = cli("report", "--enterprise-customer-uuid", alpha.uuid, "--until", before)
    assert rows == []
    _, rows, _ = cli("report", "--enterprise-customer-uuid", alpha.uuid, "--since", before)
    assert len(rows) == 3


def test_report_shows_a_licenses_reminder_and_its_post_expiration_email(app_env, upstream):
    alpha, licenses = enterprise(upstream, "Alpha", activated=2, expires_in_days=10)
    code, reminders = run(["expiration-reminders", "--as-of", NOW.isoformat()])
    assert (code, reminders.sent) == (EXIT_OK, 2)
    after = (NOW + timedelta(days=10, hours=2)).isoformat()  # the plan expired 2 hours earlier
    code, expired = run(["plan-expiration-emails", "--enterprise-customer-uuid", alpha.uuid, "--as-of", after])
    assert (code, expired.sent) == (EXIT_OK, 2)

    code, rows, out = cli("report", "--license-uuid", licenses[0].uuid)
    assert code == EXIT_OK
    assert [(r.key, r.license_uuid, r.state, r.run_id) for r in rows] == [
        (f"expiration_reminder#{licenses[0].uuid}", licenses[0].uuid, "sent", reminders.run_id),
        (f"plan_expiration_email#{licenses[0].uuid}", licenses[0].uuid, "sent", expired.run_id),
    ]
    assert out.splitlines()[-1] == "(2 record(s))"
    _, rows, _ = cli("report", "--run-id", expired.run_id)
    assert sorted(r.license_uuid for r in rows) == sorted(lic.uuid for lic in licenses)
    assert all(r.admin_id is None and r.enterprise_customer_uuid == alpha.uuid for r in rows)


def test_report_names_the_admin_of_utilization_records(app_env, upstream):
    _, admin = fully_allocated_enterprise(upstream)
    code, summary = run(["utilization", "--as-of", NOW.isoformat()])
    assert code == EXIT_OK
    _, rows, _ = cli("report", "--run-id", summary.run_id)
    assert sorted(r.admin_id for r in rows) == [str(admin.id), str(admin.id)]  # 100 % and the digest
    assert all(r.license_uuid is None for r in rows)


def test_report_usage_errors(app_env):
    with pytest.raises(SystemExit) as info:
        cli("report")  # one of the three is required
    assert info.value.code == EXIT_USAGE
    code, _, _ = cli("report", "--run-id", "r", "--since", NOW.isoformat())
    assert code == EXIT_USAGE


# -- redrive ---------------------------------------------------------------------------------------------------


def test_redrive_counts_then_moves_the_dead_letters_back(app_env, aws_resources):
    sqs = boto3.client("sqs")
    dlq = aws_resources.work_dead_letter_queue_url
    for i in range(3):
        body = WorkMessage(
            job=Job.EXPIRATION_REMINDERS,
            run_id=f"r{i}",
            enterprise_customer_uuid="00000000-0000-4000-8000-000000000000",
            as_of=NOW,
        ).model_dump_json()
        sqs.send_message(QueueUrl=dlq, MessageBody=body)

    code, result, out = cli("redrive", "--dry-run")
    assert (code, result.messages, result.moved) == (EXIT_OK, 3, False)
    assert "would move" in out
    assert _count(sqs, dlq) == 3

    code, result, out = cli("redrive")
    assert (code, result.messages, result.moved) == (EXIT_OK, 3, True)
    assert _count(sqs, dlq) == 0
    moved = sqs.receive_message(QueueUrl=aws_resources.work_queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(WorkMessage.model_validate_json(m["Body"]).run_id for m in moved) == ["r0", "r1", "r2"]


def _count(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# -- progress ----------------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("tty", "total", "shown"), [(True, 20, True), (False, 20, False), (True, 2, False)])
def test_progress_shows_on_a_terminal_for_long_runs_only(tty, total, shown):
    stream = Terminal(tty)
    progress = Progress(total, stream)
    progress.show(1, 50)
    progress.show(2, 120)
    progress.done()
    assert (stream.getvalue() == "\r1/20 enterprises, 50 sent\r2/20 enterprises, 120 sent\n") is shown
    assert (stream.getvalue() == "") is not shown


def test_on_aws_redrive_starts_a_message_move_task_from_the_dlq_to_the_work_queue():
    from botocore.stub import Stubber

    from license_notifications.ops.redrive import redrive

    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    assert sqs.meta.endpoint_url.endswith("amazonaws.com")
    work = "https://sqs.us-east-1.amazonaws.com/123456789012/WorkQueue"
    work_arn, dlq_arn = "arn:aws:sqs:us-east-1:123456789012:WorkQueue", "arn:aws:sqs:us-east-1:123456789012:WorkDLQ"
    dlq = "https://sqs.us-east-1.amazonaws.com/123456789012/WorkDLQ"
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
    with Stubber(sqs) as stub:
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": work_arn, "RedrivePolicy": policy}},
            {"QueueUrl": work, "AttributeNames": ["QueueArn", "RedrivePolicy"]},
        )
        stub.add_response("get_queue_url", {"QueueUrl": dlq}, {"QueueName": "WorkDLQ"})
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "7"}},
            {"QueueUrl": dlq, "AttributeNames": ["ApproximateNumberOfMessages"]},
        )
        stub.add_response(
            "start_message_move_task", {"TaskHandle": "h-1"}, {"SourceArn": dlq_arn, "DestinationArn": work_arn}
        )
        result = redrive(sqs, work)
        stub.assert_no_pending_responses()
    assert (result.messages, result.moved, result.how) == (7, True, "StartMessageMoveTask h-1")
