"""The cutover on moto and the stand-ins: ``import-sent`` writes license-manager's sent state into the template's
ledger, and the first real runs afterwards send only what license-manager never sent. Plus the command's
configuration, its report, and what a bad file, a dry run and a second import leave in the table.
Formats and quirks in detail: tests/unit/test_import_sent.py."""

from __future__ import annotations

import io
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from uuid import UUID

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
)
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT, Ledger
from license_notifications.cli import EXIT_OK, EXIT_USAGE, run
from license_notifications.jobs import expiration_reminders, plan_expiration_emails
from license_notifications.jobs.utilization import THRESHOLD_RETENTION, threshold_key, weekly_key
from license_notifications.rules.utilization import NotificationType

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
LICENSE_HEADER = ("uuid", "enterprise_customer_uuid", "subscription_plan_uuid", "plan_expiration_date",
                  "expiration_reminder_sent_date", "subscription_plan_expiration_email_sent_date")  # fmt: skip
NOTIFICATION_HEADER = ("enterprise_customer_uuid", "enterprise_customer_user_uuid", "subscripton_plan_id",
                       "notification_type", "last_sent", "plan_expiration_date")  # fmt: skip


def cli(*args: str) -> tuple[int, object, str]:
    out = io.StringIO()
    code, result = run(list(args), out=out)
    return code, result, out.getvalue()


def db(value) -> str:
    """A value as license-manager's MySQL holds it: UUIDs as 32 hex digits, datetimes UTC without a zone."""
    if value is None:
        return "\\N"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return UUID(str(value)).hex


def write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> Path:
    """What ``mysql --batch`` prints for a query: a header row, tab-separated fields, ``\\N`` for NULL."""
    lines = ["\t".join(header)] + ["\t".join(db(v) if not isinstance(v, str) else v for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def items(table: str) -> list[dict]:
    return boto3.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]


def recipients(up: Upstream, campaign: str) -> Counter[str]:
    return Counter(recipient for recipient, _ in up.braze.sent_to(campaign))


# -- configuration ---------------------------------------------------------------------------------------------


def test_import_sent_needs_only_the_ledger_table_not_the_jobs_settings(aws_resources, tmp_path):
    assert "LMS_URL" not in os.environ
    assert "BRAZE_API_KEY" not in os.environ
    lic, enterprise, plan = UUID(int=1), UUID(int=2), UUID(int=3)
    path = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER,
                     [(lic, enterprise, plan, NOW, NOW - 20 * DAY, NOW + 2 * DAY)])  # fmt: skip
    code, result, out = cli("import-sent", "--licenses", str(path))
    assert code == EXIT_OK, out
    assert result.imported == {"expiration_reminder": 1, "plan_expiration_email": 1}
    assert len(items(aws_resources.ledger_table_name)) == 2


def test_without_a_ledger_table_or_with_a_missing_one_it_is_a_configuration_error(aws_resources, tmp_path, monkeypatch):
    path = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER,
                     [(UUID(int=1), UUID(int=2), UUID(int=3), NOW, NOW - 20 * DAY, None)])  # fmt: skip
    monkeypatch.delenv("LEDGER_TABLE_NAME")
    assert cli("import-sent", "--licenses", str(path))[0] == EXIT_USAGE
    monkeypatch.setenv("LEDGER_TABLE_NAME", "no-such-table")
    code, result, _ = cli("import-sent", "--licenses", str(path))
    assert code == EXIT_USAGE
    assert result.configuration_error
    assert items(aws_resources.ledger_table_name) == []


def test_bad_arguments_exit_2(aws_resources, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli("import-sent")  # --licenses is required
    assert info.value.code == EXIT_USAGE
    assert cli("import-sent", "--licenses", str(tmp_path / "missing.tsv"))[0] == EXIT_USAGE


# -- what the table holds afterwards ------------------------------------------------------------------------------


def test_a_bad_row_anywhere_leaves_the_table_empty(aws_resources, tmp_path):
    rows = [(UUID(int=n), UUID(int=2), UUID(int=3), NOW, NOW - 20 * DAY, None) for n in range(100, 400)]
    licenses = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, rows)
    notifications = write_tsv(tmp_path / "notifications.tsv", NOTIFICATION_HEADER, [
        (UUID(int=2), UUID(int=42), UUID(int=3), "limited_allocations_remaining", NOW - DAY, NOW),
        (UUID(int=2), UUID(int=43), UUID(int=3), "some_other_type", NOW - DAY, NOW),
    ])  # fmt: skip
    code, result, _ = cli("import-sent", "--licenses", str(licenses), "--notifications", str(notifications))
    assert (code, result) == (EXIT_USAGE, None)
    assert items(aws_resources.ledger_table_name) == []


def test_a_dry_run_counts_and_writes_nothing_and_a_second_import_changes_nothing(aws_resources, tmp_path):
    table = aws_resources.ledger_table_name
    rows = [(UUID(int=n), UUID(int=2), UUID(int=3), NOW, NOW - 20 * DAY, None) for n in range(100, 350)]
    path = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, rows)
    ledger = Ledger(table)
    held = ledger.claim(expiration_reminders.ledger_key(UUID(int=100)), kind="expiration_reminder", run_id="r",
                        expires_at=NOW + 90 * DAY)  # fmt: skip
    ledger.hold(held, seconds=3600, reason="refused")
    ledger.claim(expiration_reminders.ledger_key(UUID(int=101)), kind="expiration_reminder", run_id="r",
                 expires_at=NOW + 90 * DAY)  # fmt: skip

    code, preview, out = cli("import-sent", "--licenses", str(path), "--dry-run")
    assert code == EXIT_OK
    assert (preview.imported, preview.already) == ({"expiration_reminder": 248}, {"expiration_reminder": 2})
    assert len(items(table)) == 2
    assert "(dry run: nothing written)" in out

    code, first, _ = cli("import-sent", "--licenses", str(path))
    assert (code, first.imported, first.already) == (EXIT_OK, {"expiration_reminder": 248}, {"expiration_reminder": 2})
    after_first = sorted(items(table), key=lambda i: i["pk"]["S"])
    assert len(after_first) == 250
    keys = [expiration_reminders.ledger_key(UUID(int=n)) for n in (100, 101, 102)]
    assert ledger.states(keys) == {keys[0]: REJECTED, keys[1]: CLAIMED, keys[2]: SENT}

    code, second, _ = cli("import-sent", "--licenses", str(path))
    assert (code, second.imported.total(), second.already) == (EXIT_OK, 0, {"expiration_reminder": 250})
    assert sorted(items(table), key=lambda i: i["pk"]["S"]) == after_first


def test_post_expiration_and_threshold_records_are_stored_as_the_jobs_store_theirs(aws_resources, tmp_path):
    lic, enterprise, plan = UUID(int=1), UUID(int=2), UUID(int=3)
    licenses = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER,
                         [(lic, enterprise, plan, NOW - 10 * DAY, None, NOW - 3 * DAY)])  # fmt: skip
    notifications = write_tsv(tmp_path / "notifications.tsv", NOTIFICATION_HEADER,
                              [(enterprise, UUID(int=42), plan, "no_allocations_remaining", NOW - DAY, NOW)])  # fmt: skip
    code, result, _ = cli("import-sent", "--licenses", str(licenses), "--notifications", str(notifications))
    assert code == EXIT_OK
    ledger = Ledger(aws_resources.ledger_table_name)
    told = ledger.get(plan_expiration_emails.ledger_key(lic))
    assert told.pk == f"plan_expiration_email#{lic}"
    assert (told.kind, told.state, told.sent_at) == (plan_expiration_emails.LEDGER_KIND, SENT, NOW - 3 * DAY)
    assert (told.enterprise_customer_uuid, told.subject_uuid) == (str(enterprise), str(lic))
    assert told.expires_at == NOW - 10 * DAY + plan_expiration_emails.RECORD_RETENTION
    assert (told.run_id, told.dispatch_id, told.claim_token) == (result.run_id, "license-manager", None)
    full = ledger.get(threshold_key(plan, str(enterprise), 42, NotificationType.NO_ALLOCATIONS_REMAINING))
    assert (full.kind, full.sent_at, full.subject_uuid) == ("no_allocations_remaining", NOW - DAY, str(plan))
    assert full.expires_at == NOW + THRESHOLD_RETENTION


# -- the report shows imported records ------------------------------------------------------------------------------


def test_report_shows_imported_records_by_enterprise_run_and_license(app_env, tmp_path):
    lic, other, enterprise, plan = UUID(int=1), UUID(int=5), UUID(int=2), UUID(int=3)
    licenses = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, [
        (lic, enterprise, plan, NOW, NOW - 20 * DAY, None),
        (other, enterprise, plan, NOW - 10 * DAY, None, NOW - 3 * DAY),
    ])  # fmt: skip
    notifications = write_tsv(tmp_path / "notifications.tsv", NOTIFICATION_HEADER,
                              [(enterprise, UUID(int=42), None, "periodic_informational", NOW - 2 * DAY, None)])  # fmt: skip
    code, imported, _ = cli("import-sent", "--licenses", str(licenses), "--notifications", str(notifications))
    assert code == EXIT_OK

    code, rows, out = cli("report", "--enterprise-customer-uuid", str(enterprise))
    assert code == EXIT_OK
    assert [(r.key, r.state, r.run_id, r.dispatch_id) for r in rows] == [  # in time order
        (f"expiration_reminder#{lic}", SENT, imported.run_id, "license-manager"),
        (f"plan_expiration_email#{other}", SENT, imported.run_id, "license-manager"),
        (f"weekly_digest#{enterprise}#42", SENT, imported.run_id, "license-manager"),
    ]
    assert rows[2].admin_id == "42"
    assert "license-manager" in out

    _, rows, _ = cli("report", "--run-id", imported.run_id)
    assert len(rows) == 3
    _, rows, _ = cli("report", "--license-uuid", str(lic))
    assert [(r.key, r.sent_at, r.license_uuid) for r in rows] == [
        (f"expiration_reminder#{lic}", "2026-02-09T09:00:00.000000+0000", str(lic))
    ]


# -- the promise: after the import, the first runs send only what license-manager never sent -------------------------


def test_after_the_import_the_reminders_go_only_to_licenses_license_manager_never_reminded(app_env, upstream, tmp_path):
    customer = upstream.dataset.add_customer("Acme")
    plan = upstream.dataset.add_plan(customer.uuid, title="Acme plan", expires_in_days=10)
    licenses = upstream.dataset.add_licenses(plan.uuid, "activated", 5, "acme{n:03d}@example.com")
    export = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, [
        (licenses[0].uuid, customer.uuid, plan.uuid, plan.expiration_date, NOW - 2 * DAY, None),
        (licenses[1].uuid, customer.uuid, plan.uuid, plan.expiration_date, NOW - 5 * DAY, None),
        # an earlier plan's post-expiration email does not stand for this plan's reminder
        (licenses[2].uuid, customer.uuid, plan.uuid, plan.expiration_date, None, NOW - 30 * DAY),
    ])  # fmt: skip
    code, imported, _ = cli("import-sent", "--licenses", str(export))
    assert code == EXIT_OK

    code, preview = run(["expiration-reminders", "--dry-run", "--as-of", NOW.isoformat()])
    assert code == EXIT_OK
    assert sum(o.would_send for o in preview.outcomes) == 3
    assert upstream.braze.sent_to(REMINDER_CAMPAIGN) == []

    code, summary = run(["expiration-reminders", "--as-of", NOW.isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 3)
    reminded = Counter(props["license_uuid"] for _, props in upstream.braze.sent_to(REMINDER_CAMPAIGN))
    assert reminded == Counter({lic.uuid: 1 for lic in licenses[2:]})
    ledger = Ledger(app_env["LEDGER_TABLE_NAME"])
    for lic, sent_at in ((licenses[0], NOW - 2 * DAY), (licenses[1], NOW - 5 * DAY)):
        record = ledger.get(expiration_reminders.ledger_key(lic.uuid))
        assert (record.run_id, record.dispatch_id, record.sent_at) == (imported.run_id, "license-manager", sent_at)

    code, again = run(["expiration-reminders", "--as-of", (NOW + DAY).isoformat()])
    assert (code, again.sent) == (EXIT_OK, 0)


def test_after_the_import_the_post_expiration_emails_go_only_to_licenses_license_manager_never_told(
    app_env, upstream, tmp_path
):
    customer = upstream.dataset.add_customer("Globex")
    plan = upstream.dataset.add_plan(customer.uuid, title="Globex plan", expires_in_days=-2)
    licenses = upstream.dataset.add_licenses(plan.uuid, "activated", 5, "globex{n:03d}@example.com")
    export = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, [
        # license-manager told these two after the plan expired (and reminded the first one before)
        (licenses[0].uuid, customer.uuid, plan.uuid, plan.expiration_date, NOW - 20 * DAY, NOW - DAY),
        (licenses[1].uuid, customer.uuid, plan.uuid, plan.expiration_date, None, NOW - 2 * HOUR),
        # only reminded: the reminder does not stand for the post-expiration email
        (licenses[2].uuid, customer.uuid, plan.uuid, plan.expiration_date, NOW - 25 * DAY, None),
    ])  # fmt: skip
    code, imported, _ = cli("import-sent", "--licenses", str(export))
    assert code == EXIT_OK

    code, preview = run(["plan-expiration-emails", "--dry-run", "--as-of", NOW.isoformat()])
    assert code == EXIT_OK
    assert sum(o.would_send for o in preview.outcomes) == 3
    assert upstream.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN) == []

    code, summary = run(["plan-expiration-emails", "--as-of", NOW.isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 3)
    told = Counter(props["license_uuid"] for _, props in upstream.braze.sent_to(PLAN_EXPIRATION_CAMPAIGN))
    assert told == Counter({lic.uuid: 1 for lic in licenses[2:]})
    ledger = Ledger(app_env["LEDGER_TABLE_NAME"])
    for lic, sent_at in ((licenses[0], NOW - DAY), (licenses[1], NOW - 2 * HOUR)):
        record = ledger.get(plan_expiration_emails.ledger_key(lic.uuid))
        assert (record.run_id, record.dispatch_id, record.sent_at) == (imported.run_id, "license-manager", sent_at)

    code, again = run(["plan-expiration-emails", "--as-of", (NOW + HOUR).isoformat()])
    assert (code, again.sent) == (EXIT_OK, 0)


def test_after_the_import_admins_get_only_the_threshold_emails_and_digests_license_manager_never_sent(
    app_env, upstream, tmp_path
):
    def enterprise(name: str, allocated: int, admins: int):
        customer = upstream.dataset.add_customer(name)
        plan = upstream.dataset.add_plan(customer.uuid, title=f"{name} auto", expires_in_days=200,
                                         should_auto_apply_licenses=True)  # fmt: skip
        upstream.dataset.add_licenses(plan.uuid, "activated", allocated)
        upstream.dataset.add_licenses(plan.uuid, "unassigned", 10 - allocated)
        people = [upstream.dataset.add_admin(customer.uuid, email=f"admin{i}@{name.lower()}.example.com",
                                             created=NOW - 30 * DAY) for i in range(admins)]  # fmt: skip
        return customer, plan, people

    stark, stark_plan, (a, b) = enterprise("Stark", allocated=8, admins=2)  # 80 %: the 75 % email is due
    wayne, wayne_plan, (c, d) = enterprise("Wayne", allocated=10, admins=2)  # 100 %
    limited, full, weekly = (t.value for t in NotificationType)
    export = write_tsv(tmp_path / "notifications.tsv", NOTIFICATION_HEADER, [
        (stark.uuid, UUID(int=a.id), stark_plan.uuid, limited, NOW - 10 * DAY, stark_plan.expiration_date),
        (stark.uuid, UUID(int=a.id), None, weekly, NOW - 3 * DAY, None),  # A's last digest: 3 days ago
        (wayne.uuid, UUID(int=c.id), wayne_plan.uuid, full, NOW - 2 * DAY, wayne_plan.expiration_date),
        (wayne.uuid, UUID(int=d.id), wayne_plan.uuid, limited, NOW - 20 * DAY, wayne_plan.expiration_date),
    ])  # fmt: skip
    licenses = write_tsv(tmp_path / "licenses.tsv", LICENSE_HEADER, [])
    code, imported, _ = cli("import-sent", "--licenses", str(licenses), "--notifications", str(export))
    assert (code, imported.imported.total()) == (EXIT_OK, 4)
    ledger = Ledger(app_env["LEDGER_TABLE_NAME"])
    assert ledger.get(threshold_key(stark_plan.uuid, stark.uuid, a.id, NotificationType(limited))).run_id == (
        imported.run_id
    )

    code, preview = run(["utilization", "--dry-run", "--as-of", NOW.isoformat()])
    assert code == EXIT_OK
    assert sum(o.would_send for o in preview.outcomes) == 5  # 75 % to B, 100 % to D, digests to B, C, D

    code, summary = run(["utilization", "--as-of", NOW.isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 5)
    user = {admin.id: str(admin.user.id) for admin in (a, b, c, d)}
    assert recipients(upstream, LIMITED_CAMPAIGN) == Counter([user[b.id]])  # A was told by license-manager
    assert recipients(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter([user[d.id]])  # C was; D only had the 75 %
    assert recipients(upstream, WEEKLY_CAMPAIGN) == Counter(
        [user[b.id], user[c.id], user[d.id]]
    )  # A had one 3 days ago

    run(["utilization", "--as-of", (NOW + 3 * DAY).isoformat()])  # 6 days after A's last digest: not yet
    assert recipients(upstream, WEEKLY_CAMPAIGN)[user[a.id]] == 0
    run(["utilization", "--as-of", (NOW + 4 * DAY).isoformat()])  # 7 days after it: A's next digest
    assert recipients(upstream, WEEKLY_CAMPAIGN) == Counter([user[a.id], user[b.id], user[c.id], user[d.id]])
    assert recipients(upstream, LIMITED_CAMPAIGN) == Counter([user[b.id]])
    assert recipients(upstream, NO_ALLOCATIONS_CAMPAIGN) == Counter([user[d.id]])
    assert ledger.sent([weekly_key(stark.uuid, a.id)]) == {weekly_key(stark.uuid, a.id): NOW + 4 * DAY}
