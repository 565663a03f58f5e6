"""The cutover importer (ops/import_sent.py) and its CLI command on the in-memory ledger: the two exports' formats
(CSV and mysql --batch TSV), license-manager's quirks, bad input, the mapping to ledger keys, idempotency and the
summary. On moto, with the jobs running after the import: tests/integration/test_import_sent.py."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from uuid import UUID

import pytest
from botocore.exceptions import ClientError

from conftest import NOW
from fakes import InMemoryLedger
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT
from license_notifications.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, run
from license_notifications.jobs import expiration_reminders, plan_expiration_emails
from license_notifications.jobs.utilization import THRESHOLD_RETENTION, WEEKLY_RETENTION, threshold_key, weekly_key
from license_notifications.ops.import_sent import (
    DISPATCH_ID,
    MAX_PROBLEMS_SHOWN,
    InputError,
    ecu_id,
    import_sent,
    new_run_id,
    read_files,
    render,
)
from license_notifications.rules.utilization import NotificationType

LIMITED = NotificationType.LIMITED_ALLOCATIONS_REMAINING
FULL = NotificationType.NO_ALLOCATIONS_REMAINING
WEEKLY = NotificationType.PERIODIC_INFORMATIONAL

ENTERPRISE = UUID("aaaaaaaa-0000-4000-8000-000000000001")
OTHER_ENTERPRISE = UUID("bbbbbbbb-0000-4000-8000-000000000002")
PLAN = UUID("cccccccc-0000-4000-8000-000000000003")
LICENSES = [UUID(f"dddddddd-0000-4000-8000-{n:012d}") for n in range(10)]
EXPIRES = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)  # the plan's expiration date
RUN = "import-sent:test"

LICENSE_HEADER = [
    "uuid",
    "enterprise_customer_uuid",
    "subscription_plan_uuid",
    "plan_expiration_date",
    "expiration_reminder_sent_date",
    "subscription_plan_expiration_email_sent_date",
]
NOTIFICATION_HEADER = [
    "enterprise_customer_uuid",
    "enterprise_customer_user_uuid",
    "subscripton_plan_id",
    "notification_type",
    "last_sent",
]


def ecu(admin_id: int) -> str:
    """An admin as license-manager stores it: ``UUID(int=id)``, 32 hex digits."""
    return UUID(int=admin_id).hex


def tsv(*rows: list[str]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def csv_text(*rows: list[str]) -> str:
    return "".join(",".join(row) + "\r\n" for row in rows)


@pytest.fixture
def files(tmp_path: Path):
    def write(name: str, text: str, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
        return path

    return write


def license_row(lic: UUID, reminded: str = "\\N", told_expired: str = "\\N", *, enterprise: UUID = ENTERPRISE):
    return [lic.hex, enterprise.hex, PLAN.hex, "2026-03-20 00:00:00", reminded, told_expired]


def cli(*args: str, ledger: InMemoryLedger) -> tuple[int, object, str]:
    out = io.StringIO()
    code, result = run(["import-sent", *args], services=SimpleNamespace(ledger=ledger), out=out)
    return code, result, out.getvalue()


# -- formats ---------------------------------------------------------------------------------------------------


def test_a_mysql_batch_export_becomes_sent_records_of_the_reminder_and_the_post_expiration_email(files):
    path = files(
        "licenses.tsv",
        tsv(
            LICENSE_HEADER,
            license_row(LICENSES[0], "2026-02-18 09:00:00"),
            license_row(LICENSES[1], "NULL", "2026-03-27 10:30:00.123456"),
            license_row(LICENSES[2], "2026-02-18 09:00:00.5", "2026-03-27 10:30:00"),
            license_row(LICENSES[3], "", "\\N"),  # neither: nothing to import
        ),
    )
    plan = read_files(path)
    reminder, expired = expiration_reminders, plan_expiration_emails
    assert list(plan.records) == [
        reminder.ledger_key(LICENSES[0]),
        expired.ledger_key(LICENSES[1]),
        reminder.ledger_key(LICENSES[2]),
        expired.ledger_key(LICENSES[2]),
    ]
    first = plan.records[f"expiration_reminder#{LICENSES[0]}"]  # dashed, lower-case: as the jobs name licenses
    assert first.kind == "expiration_reminder"
    assert first.sent_at == datetime(2026, 2, 18, 9, 0, tzinfo=UTC)
    assert first.enterprise_customer_uuid == str(ENTERPRISE)
    assert first.subject_uuid == str(LICENSES[0])
    assert first.expires_at == EXPIRES + expiration_reminders.RECORD_RETENTION
    told = plan.records[f"plan_expiration_email#{LICENSES[1]}"]
    assert (told.kind, told.sent_at) == ("plan_expiration_email", datetime(2026, 3, 27, 10, 30, 0, 123456, UTC))
    assert told.expires_at == EXPIRES + plan_expiration_emails.RECORD_RETENTION
    assert plan.records[f"expiration_reminder#{LICENSES[2]}"].sent_at == datetime(2026, 2, 18, 9, 0, 0, 500000, UTC)
    assert plan.rows_without_date == 1
    assert plan.rows[str(path)] == 4


def test_a_csv_export_with_dashes_quotes_iso_datetimes_and_extra_columns(files):
    header = ['"uuid"', "enterprise_customer_uuid", "subscription_plan_uuid", "plan_expiration_date",
              "expiration_reminder_sent_date", "subscription_plan_expiration_email_sent_date", "note"]  # fmt: skip
    path = files(
        "licenses.csv",
        "\ufeff"  # a byte-order mark, as spreadsheet programs write one
        + csv_text(
            header,
            [
                f'"{LICENSES[0]}"',
                str(ENTERPRISE).upper(),
                str(PLAN),
                '"2026-03-20T00:00:00Z"',
                "2026-02-18T11:00:00+02:00",
                "",
                '"quoted, with a comma\r\nand a line break"',
            ],
            [
                LICENSES[1].hex,
                ENTERPRISE.hex,
                PLAN.hex,
                "2026-03-20 00:00:00",
                "NULL",
                "2026-03-27T10:30:00.25-0130",
                '"say ""hi"""',
            ],
        ),
    )
    plan = read_files(path)
    reminded = plan.records[f"expiration_reminder#{LICENSES[0]}"]
    assert reminded.sent_at == datetime(2026, 2, 18, 9, 0, tzinfo=UTC)  # the offset made UTC
    assert reminded.enterprise_customer_uuid == str(ENTERPRISE)  # upper-case made lower
    assert reminded.expires_at == EXPIRES + expiration_reminders.RECORD_RETENTION
    told = plan.records[f"plan_expiration_email#{LICENSES[1]}"]
    assert told.sent_at == datetime(2026, 3, 27, 12, 0, 0, 250000, UTC)
    assert len(plan.records) == 2


def test_csv_line_numbers_count_the_physical_lines_of_quoted_line_breaks(files):
    header = [*LICENSE_HEADER, "note"]
    path = files(
        "licenses.csv",
        csv_text(
            header,
            [*license_row(LICENSES[0], "2026-02-18 09:00:00"), '"one\ntwo\nthree"'],  # lines 2-4
            [*license_row(LICENSES[1], "2026-02-31 09:00:00"), "x"],  # line 5: February has no 31st
        ),
    )
    with pytest.raises(InputError) as info:
        read_files(path)
    assert info.value.lines() == [
        f"{path}, line 5, column expiration_reminder_sent_date: not a datetime (2026-03-01 09:00:00[.ffffff] UTC, "
        "or ISO-8601): '2026-02-31 09:00:00'"
    ]


def test_tsv_fields_are_unescaped_as_mysql_batch_escapes_them(files):
    path = files(
        "licenses.tsv",
        tsv(
            [*LICENSE_HEADER, "title"],
            [*license_row(LICENSES[0], "2026-02-18 09:00:00"), "tab\\there\\nnewline \\\\N back\\\\slash"],
            [*license_row(LICENSES[1], "2026-02-18\\t09:00:00\\\\"), "x"],  # an escaped tab and backslash
        ),
    )
    with pytest.raises(InputError) as info:
        read_files(path)
    assert info.value.lines() == [
        f"{path}, line 3, column expiration_reminder_sent_date: not a datetime (2026-03-01 09:00:00[.ffffff] UTC, "
        "or ISO-8601): '2026-02-18\\t09:00:00\\\\'"
    ]


def test_crlf_line_endings_and_blank_lines_are_read(files):
    path = files(
        "licenses.tsv",
        "\r\n".join(["\t".join(LICENSE_HEADER), "\t".join(license_row(LICENSES[0], "2026-02-18 09:00:00")), "", ""]),
    )
    assert list(read_files(path).records) == [f"expiration_reminder#{LICENSES[0]}"]


# -- the notifications ---------------------------------------------------------------------------------------


def test_notifications_become_threshold_and_digest_records_of_the_decoded_admin(files):
    path = files(
        "notifications.tsv",
        tsv(
            NOTIFICATION_HEADER,
            [ENTERPRISE.hex, ecu(42), PLAN.hex, "limited_allocations_remaining", "2026-02-01 10:00:00"],
            [ENTERPRISE.hex, ecu(42), PLAN.hex, "no_allocations_remaining", "2026-02-10 10:00:00.000001"],
            [ENTERPRISE.hex, ecu(42), "\\N", "periodic_informational", "2026-02-25 08:00:00"],
            [OTHER_ENTERPRISE.hex, str(UUID(int=7)), PLAN.hex, "periodic_informational", "2026-02-26T08:00:00Z"],
        ),
    )
    plan = read_files(files("licenses.tsv", tsv(LICENSE_HEADER)), path)
    limited = plan.records[threshold_key(PLAN, str(ENTERPRISE), 42, LIMITED)]
    assert limited.key == f"utilization#{PLAN}#{ENTERPRISE}#42#limited_allocations_remaining"
    assert (limited.kind, limited.sent_at, limited.subject_uuid) == (
        "limited_allocations_remaining", datetime(2026, 2, 1, 10, 0, tzinfo=UTC), str(PLAN),
    )  # fmt: skip
    assert limited.enterprise_customer_uuid == str(ENTERPRISE)
    assert limited.expires_at is None  # no plan_expiration_date column: kept until deleted
    full = plan.records[threshold_key(PLAN, str(ENTERPRISE), 42, FULL)]
    assert full.sent_at == datetime(2026, 2, 10, 10, 0, 0, 1, UTC)
    digest = plan.records[weekly_key(str(ENTERPRISE), 42)]
    assert digest.key == f"weekly_digest#{ENTERPRISE}#42"
    assert (digest.kind, digest.subject_uuid) == ("periodic_informational", None)
    assert digest.sent_at == datetime(2026, 2, 25, 8, 0, tzinfo=UTC)
    assert digest.expires_at == digest.sent_at + WEEKLY_RETENTION
    assert plan.records[weekly_key(str(OTHER_ENTERPRISE), 7)].subject_uuid == str(PLAN)
    assert plan.unmappable == []
    assert plan.without_expiry == 2


def test_the_optional_plan_expiration_date_gives_threshold_records_their_retention(files):
    path = files(
        "notifications.csv",
        csv_text(
            [*NOTIFICATION_HEADER, "plan_expiration_date"],
            [
                ENTERPRISE.hex,
                ecu(42),
                PLAN.hex,
                "limited_allocations_remaining",
                "2026-02-01 10:00:00",
                "2026-03-20 00:00:00",
            ],
            [ENTERPRISE.hex, ecu(43), PLAN.hex, "limited_allocations_remaining", "2026-02-01 10:00:00", "NULL"],
            [ENTERPRISE.hex, ecu(44), "", "periodic_informational", "2026-02-01 10:00:00", ""],
        ),
    )
    plan = read_files(files("licenses.tsv", tsv(LICENSE_HEADER)), path)
    assert plan.records[threshold_key(PLAN, str(ENTERPRISE), 42, LIMITED)].expires_at == EXPIRES + THRESHOLD_RETENTION
    assert plan.records[threshold_key(PLAN, str(ENTERPRISE), 43, LIMITED)].expires_at is None
    assert plan.records[weekly_key(str(ENTERPRISE), 44)].expires_at == datetime(2026, 2, 1, 10, tzinfo=UTC) + (
        WEEKLY_RETENTION
    )
    result = import_sent(InMemoryLedger(), plan, run_id=RUN)
    assert "note: 1 threshold record(s) are written without an expiry (its plan_expiration_date is NULL)" in render(
        result
    )


def test_the_plan_column_under_its_corrected_name_is_accepted_too(files):
    header = [*NOTIFICATION_HEADER]
    header[2] = "subscription_plan_id"
    path = files(
        "notifications.tsv",
        tsv(header, [ENTERPRISE.hex, ecu(42), PLAN.hex, "no_allocations_remaining", "2026-02-01 10:00:00"]),
    )
    plan = read_files(files("licenses.tsv", tsv(LICENSE_HEADER)), path)
    assert list(plan.records) == [threshold_key(PLAN, str(ENTERPRISE), 42, FULL)]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("0000000000000000000000000000002a", 42),
        ("00000000-0000-0000-0000-000000000001", 1),
        ("00000000000000007fffffffffffffff", 2**63 - 1),
        ("00000000000000008000000000000000", None),  # beyond any id
        ("00000000000000000000000000000000", None),  # 0 is no id
        ("9b2f7f0e5c1d4e6a8b3c2d1e0f9a8b7c", None),  # a random uuid4
    ],
)
def test_an_admin_is_decoded_from_uuid_int_id(stored, expected):
    assert ecu_id(UUID(stored)) == expected


def test_rows_that_name_no_record_are_reported_with_file_line_and_reason_not_guessed(files):
    path = files(
        "notifications.tsv",
        tsv(
            NOTIFICATION_HEADER,
            [ENTERPRISE.hex, ecu(42), "\\N", "limited_allocations_remaining", "2026-02-01 10:00:00"],
            [
                ENTERPRISE.hex,
                "9b2f7f0e5c1d4e6a8b3c2d1e0f9a8b7c",
                PLAN.hex,
                "no_allocations_remaining",
                "2026-02-01 10:00:00",
            ],
            [ENTERPRISE.hex, ecu(0), "\\N", "periodic_informational", "2026-02-01 10:00:00"],
            [ENTERPRISE.hex, ecu(42), PLAN.hex, "no_allocations_remaining", "2026-02-01 10:00:00"],
        ),
    )
    plan = read_files(files("licenses.tsv", tsv(LICENSE_HEADER)), path)
    assert list(plan.records) == [threshold_key(PLAN, str(ENTERPRISE), 42, FULL)]
    assert [(u.file, u.line, u.kind) for u in plan.unmappable] == [
        (str(path), 2, "limited_allocations_remaining"),
        (str(path), 3, "no_allocations_remaining"),
        (str(path), 4, "periodic_informational"),
    ]
    assert "without a plan (subscripton_plan_id is NULL)" in plan.unmappable[0].reason
    assert "9b2f7f0e5c1d4e6a8b3c2d1e0f9a8b7c is not UUID(int=id)" in plan.unmappable[1].reason
    assert "(as an integer: 0)" in plan.unmappable[2].reason
    text = render(import_sent(InMemoryLedger(), plan, run_id=RUN))
    assert f"  {path}, line 3: enterprise_customer_user_uuid 9b2f7f0e5c1d4e6a8b3c2d1e0f9a8b7c is not" in text


def test_two_rows_of_one_key_keep_the_latest_date(files):
    licenses = files(
        "licenses.tsv",
        tsv(
            LICENSE_HEADER,
            license_row(LICENSES[0], "2026-02-18 09:00:00"),
            license_row(LICENSES[0], "2026-02-19 09:00:00"),
            license_row(LICENSES[0], "2026-02-17 09:00:00"),
        ),
    )
    notifications = files(
        "notifications.tsv",
        tsv(
            NOTIFICATION_HEADER,
            [ENTERPRISE.hex, ecu(42), PLAN.hex, "periodic_informational", "2026-02-25 08:00:00"],
            [ENTERPRISE.hex, ecu(42), "\\N", "periodic_informational", "2026-02-18 08:00:00"],
        ),
    )
    plan = read_files(licenses, notifications)
    assert plan.records[f"expiration_reminder#{LICENSES[0]}"].sent_at == datetime(2026, 2, 19, 9, tzinfo=UTC)
    digest = plan.records[weekly_key(str(ENTERPRISE), 42)]
    assert (digest.sent_at, digest.expires_at) == (
        datetime(2026, 2, 25, 8, tzinfo=UTC), datetime(2026, 2, 25, 8, tzinfo=UTC) + WEEKLY_RETENTION,
    )  # fmt: skip
    assert plan.duplicates == 3
    assert "note: 3 row(s) named a key another row named too: the latest date is kept" in render(
        import_sent(InMemoryLedger(), plan, run_id=RUN)
    )


# -- bad input: named by file, line and column, nothing written -----------------------------------------------


@pytest.mark.parametrize(
    ("row", "line"),
    [
        ([LICENSES[0].hex[:-1], ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00", ""],
         "column uuid: not a UUID (32 hex digits, with or without dashes): '" + LICENSES[0].hex[:-1] + "'"),
        ([LICENSES[0].hex, "{" + str(ENTERPRISE) + "}", PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00", ""],
         "column enterprise_customer_uuid: not a UUID"),
        ([LICENSES[0].hex, ENTERPRISE.hex, "not-a-plan", "2026-03-20 00:00:00", "", "2026-03-27 00:00:00"],
         "column subscription_plan_uuid: not a UUID"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20", "2026-02-18 09:00:00", ""],
         "column plan_expiration_date: not a datetime"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "\\N", "2026-02-18 09:00:00", ""],
         "column plan_expiration_date: no value (required)"),
        ([LICENSES[0].hex, "", PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00", ""],
         "column enterprise_customer_uuid: no value (required)"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "yesterday", ""],
         "column expiration_reminder_sent_date: not a datetime"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "", "0000-00-00 00:00:00"],
         "column subscription_plan_expiration_email_sent_date: not a datetime"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00+25:00", ""],
         "column expiration_reminder_sent_date: not a datetime"),
        ([LICENSES[0].hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00"],
         "column subscription_plan_expiration_email_sent_date: 5 field(s), the header has 6"),
        ([*license_row(LICENSES[0], "2026-02-18 09:00:00"), "extra"],
         "column 7 (beyond the header): 7 field(s), the header has 6"),
    ],
)  # fmt: skip
def test_a_malformed_license_row_names_file_line_and_column_and_nothing_is_written(files, row, line):
    good = [license_row(lic, "2026-02-18 09:00:00") for lic in LICENSES[1:6]]
    path = files("licenses.tsv", tsv(LICENSE_HEADER, *good[:3], row, *good[3:]))
    ledger = InMemoryLedger()
    code, result, out = cli("--licenses", str(path), ledger=ledger)
    assert (code, result, out) == (EXIT_USAGE, None, "")
    with pytest.raises(InputError) as info:
        read_files(path)
    [problem] = info.value.lines()
    assert problem.startswith(f"{path}, line 5, {line}")
    assert ledger.stored_keys() == []


@pytest.mark.parametrize(
    ("row", "line"),
    [
        ([ENTERPRISE.hex, ecu(42), PLAN.hex, "some_new_type", "2026-02-01 10:00:00"],
         "column notification_type: unknown notification_type 'some_new_type' (expected one of "
         "limited_allocations_remaining, no_allocations_remaining, periodic_informational)"),
        ([ENTERPRISE.hex, "42", PLAN.hex, "periodic_informational", "2026-02-01 10:00:00"],
         "column enterprise_customer_user_uuid: not a UUID"),
        ([ENTERPRISE.hex, ecu(42), PLAN.hex[:8], "periodic_informational", "2026-02-01 10:00:00"],
         "column subscripton_plan_id: not a UUID"),
        ([ENTERPRISE.hex, ecu(42), PLAN.hex, "periodic_informational", "\\N"], "column last_sent: no value (required)"),
        ([ENTERPRISE.hex, "NULL", PLAN.hex, "periodic_informational", "2026-02-01 10:00:00"],
         "column enterprise_customer_user_uuid: no value (required)"),
    ],
)  # fmt: skip
def test_a_malformed_notification_row_names_file_line_and_column_and_nothing_is_written(files, row, line):
    licenses = files("licenses.tsv", tsv(LICENSE_HEADER, license_row(LICENSES[0], "2026-02-18 09:00:00")))
    good = [ENTERPRISE.hex, ecu(43), PLAN.hex, "no_allocations_remaining", "2026-02-01 10:00:00"]
    path = files("notifications.tsv", tsv(NOTIFICATION_HEADER, good, row))
    ledger = InMemoryLedger()
    code, _, _ = cli("--licenses", str(licenses), "--notifications", str(path), ledger=ledger)
    assert code == EXIT_USAGE
    with pytest.raises(InputError) as info:
        read_files(licenses, path)
    [problem] = info.value.lines()
    assert problem.startswith(f"{path}, line 3, {line}")
    assert ledger.stored_keys() == []


def test_a_missing_column_is_named_with_the_header_found(files):
    header = [c for c in NOTIFICATION_HEADER if c != "subscripton_plan_id"]
    path = files("notifications.csv", csv_text(header))
    licenses = files("licenses.csv", csv_text([c for c in LICENSE_HEADER if c != "plan_expiration_date"]))
    with pytest.raises(InputError) as info:
        read_files(licenses, path)
    assert info.value.lines() == [
        f"{licenses}, line 1, column plan_expiration_date: missing column (required); the header has uuid, "
        "enterprise_customer_uuid, subscription_plan_uuid, expiration_reminder_sent_date, "
        "subscription_plan_expiration_email_sent_date",
        f"{path}, line 1, column subscripton_plan_id: missing column (required); the header has "
        "enterprise_customer_uuid, enterprise_customer_user_uuid, notification_type, last_sent",
    ]


def test_files_that_cannot_be_read_are_named(files, tmp_path):
    empty = files("empty.csv", "")
    latin = files("latin.tsv", tsv(LICENSE_HEADER, [*license_row(LICENSES[0]), "é"]), encoding="latin-1")
    with pytest.raises(InputError) as info:
        read_files(empty, tmp_path / "missing.tsv")
    assert info.value.lines() == [
        f"{empty}: empty file: expected a header row",
        f"{tmp_path / 'missing.tsv'}: cannot read: No such file or directory",
    ]
    with pytest.raises(InputError, match=r"latin\.tsv: not UTF-8 text"):
        read_files(latin)
    with pytest.raises(InputError, match=r"line 1, column uuid: named twice"):
        read_files(files("twice.csv", csv_text([*LICENSE_HEADER, "UUID"])))


def test_malformed_csv_quoting_is_named_by_line(files):
    path = files(
        "licenses.csv",
        csv_text(LICENSE_HEADER, license_row(LICENSES[0], "2026-02-18 09:00:00"))
        + f'{LICENSES[1].hex},"{ENTERPRISE.hex}"x,{PLAN.hex},2026-03-20 00:00:00,,\r\n',
    )
    with pytest.raises(InputError) as info:
        read_files(path)
    assert info.value.lines()[0].startswith(f"{path}, line 3: not valid CSV:")


def test_every_problem_of_both_files_is_counted_and_the_first_ones_shown(files):
    bad = [license_row(lic, "not a date") for lic in LICENSES] * 3
    path = files("licenses.tsv", tsv(LICENSE_HEADER, *bad))
    with pytest.raises(InputError) as info:
        read_files(path)
    assert info.value.total == 30
    assert len(info.value.lines()) == MAX_PROBLEMS_SHOWN + 1
    assert info.value.lines()[-1] == f"... and {30 - MAX_PROBLEMS_SHOWN} more problem(s)"
    assert info.value.lines()[0].startswith(f"{path}, line 2, column expiration_reminder_sent_date")


# -- writing: never over an existing key, idempotent, dry run -----------------------------------------------


def licenses_file(files, count: int = 4) -> Path:
    rows = [license_row(lic, "2026-02-18 09:00:00") for lic in LICENSES[:count]]
    rows.append(license_row(LICENSES[count], "\\N", "2026-03-27 10:30:00"))
    return files("licenses.tsv", tsv(LICENSE_HEADER, *rows))


def test_import_writes_sent_records_with_the_audit_mark(files):
    ledger = InMemoryLedger(wall_clock=lambda: NOW.timestamp())
    code, result, out = cli("--licenses", str(licenses_file(files)), ledger=ledger)
    assert code == EXIT_OK
    assert result.imported == {"expiration_reminder": 4, "plan_expiration_email": 1}
    record = ledger.get(f"expiration_reminder#{LICENSES[0]}")
    assert (record.state, record.sent_at, record.recorded_at) == (SENT, datetime(2026, 2, 18, 9, tzinfo=UTC), NOW)
    assert (record.run_id, record.dispatch_id) == (result.run_id, DISPATCH_ID)
    assert result.run_id.startswith("import-sent:")
    assert (record.enterprise_customer_uuid, record.subject_uuid) == (str(ENTERPRISE), str(LICENSES[0]))
    assert record.expires_at == EXPIRES + timedelta(days=90)
    assert ledger.get(f"plan_expiration_email#{LICENSES[4]}").kind == "plan_expiration_email"
    lines = out.splitlines()
    assert lines[0] == f"import-sent run {result.run_id}, dispatch id license-manager: 5 row(s) read, 5 record(s)"
    assert lines[1].split() == ["kind", "imported", "already", "in", "the", "ledger", "unmappable"]
    assert lines[2].split() == ["expiration_reminder", "4", "0", "0"]
    assert lines[3].split() == ["plan_expiration_email", "1", "0", "0"]
    assert lines[7].split() == ["total", "5", "0", "0"]


def test_a_second_import_writes_nothing_and_counts_everything_as_already_there(files):
    ledger = InMemoryLedger()
    path = licenses_file(files)
    _, first, _ = cli("--licenses", str(path), ledger=ledger)
    before = {k: ledger.get(k) for k in ledger.stored_keys()}
    code, again, out = cli("--licenses", str(path), ledger=ledger)
    assert code == EXIT_OK
    assert again.imported.total() == 0
    assert again.already == {"expiration_reminder": 4, "plan_expiration_email": 1}
    assert {k: ledger.get(k) for k in ledger.stored_keys()} == before  # the first import's run id stays
    assert again.run_id != first.run_id
    assert out.splitlines()[7].split() == ["total", "0", "5", "0"]


def test_keys_the_ledger_holds_in_any_state_are_left_as_they_are(files):
    ledger = InMemoryLedger()
    expires = NOW + timedelta(days=90)
    keys = [f"expiration_reminder#{lic}" for lic in LICENSES[:4]]
    ledger.record_sent(keys[0], kind="expiration_reminder", as_of=NOW)
    ledger.claim(keys[1], kind="expiration_reminder", run_id="running", expires_at=expires)
    held = ledger.claim(keys[2], kind="expiration_reminder", run_id="running", expires_at=expires)
    ledger.hold(held, seconds=3600, reason="refused")
    before = {k: ledger.get(k) for k in keys[:3]}
    code, result, _ = cli("--licenses", str(licenses_file(files)), ledger=ledger)
    assert code == EXIT_OK
    assert (result.imported, result.already) == (
        {"expiration_reminder": 1, "plan_expiration_email": 1}, {"expiration_reminder": 3},
    )  # fmt: skip
    assert {k: ledger.get(k) for k in keys[:3]} == before
    assert ledger.states(keys) == {keys[0]: SENT, keys[1]: CLAIMED, keys[2]: REJECTED, keys[3]: SENT}


def test_a_dry_run_reads_the_ledger_and_writes_nothing(files):
    ledger = InMemoryLedger()
    ledger.record_sent(f"expiration_reminder#{LICENSES[0]}", kind="expiration_reminder", as_of=NOW)
    code, result, out = cli("--licenses", str(licenses_file(files)), "--dry-run", ledger=ledger)
    assert code == EXIT_OK
    assert ledger.stored_keys() == [f"expiration_reminder#{LICENSES[0]}"]
    assert (result.imported, result.already) == (
        {"expiration_reminder": 3, "plan_expiration_email": 1}, {"expiration_reminder": 1},
    )  # fmt: skip
    assert out.startswith("import-sent (dry run: nothing written) run import-sent:")
    assert out.splitlines()[1].split()[:3] == ["kind", "would", "import"]


def test_unmappable_rows_exit_1_after_importing_the_rest(files):
    notifications = files(
        "notifications.tsv",
        tsv(
            NOTIFICATION_HEADER,
            [ENTERPRISE.hex, ecu(42), "\\N", "no_allocations_remaining", "2026-02-01 10:00:00"],
            [ENTERPRISE.hex, ecu(42), PLAN.hex, "periodic_informational", "2026-02-01 10:00:00"],
        ),
    )
    ledger = InMemoryLedger()
    code, result, out = cli("--licenses", str(licenses_file(files)), "--notifications", str(notifications),
                            ledger=ledger)  # fmt: skip
    assert code == EXIT_FAILURES
    assert result.unmappable == {"no_allocations_remaining": 1}
    assert result.imported["periodic_informational"] == 1
    assert weekly_key(str(ENTERPRISE), 42) in ledger.stored_keys()
    assert [line.split() for line in out.splitlines() if line.startswith("no_allocations")] == [
        ["no_allocations_remaining", "0", "0", "1"]
    ]
    assert "unmappable row(s), not imported (1):" in out


def test_many_records_are_written_in_batches_by_several_writers(files):
    class Counting(InMemoryLedger):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[int] = []

        def import_sent_many(self, records):
            self.calls.append(len(records))
            return super().import_sent_many(records)

    rows = [
        [UUID(int=n).hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00", "\\N"]
        for n in range(1, 1051)
    ]
    ledger = Counting()
    result = import_sent(ledger, read_files(files("licenses.tsv", tsv(LICENSE_HEADER, *rows))), run_id=RUN, writers=4)
    assert result.imported == {"expiration_reminder": 1050}
    assert sorted(ledger.calls) == [50] + [100] * 10
    assert len(ledger.stored_keys()) == 1050


# -- the ledger failing -------------------------------------------------------------------------------------


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "TransactWriteItems")


def test_a_ledger_failing_part_way_keeps_what_was_done_and_says_to_run_again(files):
    class Failing(InMemoryLedger):
        def import_sent_many(self, records):
            if any(r["key"].endswith(str(LICENSES[3])) for r in records):
                raise client_error("InternalServerError")
            return super().import_sent_many(records)

    ledger = Failing()
    code, result, out = cli("--licenses", str(licenses_file(files)), ledger=ledger)
    assert code == EXIT_FAILURES
    assert isinstance(result.error, ClientError)
    assert "run the same import again to finish it" in out
    assert not result.configuration_error


def test_after_a_failed_batch_no_new_one_starts_and_the_counts_are_what_was_written(files):
    class FailingThird(InMemoryLedger):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def import_sent_many(self, records):
            self.calls += 1
            if records[0]["key"] == f"expiration_reminder#{UUID(int=201)}":
                raise client_error("ProvisionedThroughputExceededException")
            return super().import_sent_many(records)

    rows = [
        [UUID(int=n).hex, ENTERPRISE.hex, PLAN.hex, "2026-03-20 00:00:00", "2026-02-18 09:00:00", "\\N"]
        for n in range(1, 1001)
    ]
    ledger = FailingThird()
    result = import_sent(ledger, read_files(files("licenses.tsv", tsv(LICENSE_HEADER, *rows))), run_id=RUN, writers=1)
    assert result.error is not None
    assert result.imported.total() == len(ledger.stored_keys())
    assert len(ledger.stored_keys()) == 200  # the two batches before it; none after it
    assert ledger.calls == 3
    assert "run the same import again to finish it" in render(result)


def test_a_missing_table_is_a_configuration_error(files):
    class NoTable(InMemoryLedger):
        def import_sent_many(self, records):
            raise client_error("ResourceNotFoundException")

    code, result, _ = cli("--licenses", str(licenses_file(files)), ledger=NoTable())
    assert code == EXIT_USAGE
    assert result.configuration_error


def test_the_run_id_names_the_import_by_its_utc_start():
    assert new_run_id(datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)) == "import-sent:2026-03-01T10:00:00.000005Z"
