"""``license-notifications import-sent``: license-manager's own sent state into the ledger, once, at the cutover,
so the first runs of this service send only what license-manager never sent (issue 13, contract 2.5).

Two exports of license-manager's database (the queries: docs/operations.md#cutover-from-license-manager):

- ``--licenses``: one row per license with ``expiration_reminder_sent_date`` and/or
  ``subscription_plan_expiration_email_sent_date``. Each date becomes the ``sent`` record of that license's
  reminder (``expiration_reminder#<license>``) or post-expiration email (``plan_expiration_email#<license>``),
  kept until the plan expired ``RECORD_RETENTION`` ago, as the jobs keep theirs.
- ``--notifications``: ``subscriptions_notification`` (its plan column really is ``subscripton_plan_id``).
  ``limited_allocations_remaining`` / ``no_allocations_remaining`` become the 75 % / 100 % record of (plan,
  enterprise, admin), ``periodic_informational`` the admin's weekly-digest record with ``last_sent`` as its
  last send. The admin is the enterprise-customer-user id, which license-manager stores as ``UUID(int=id)``.
  An optional ``plan_expiration_date`` column (the query with a LEFT JOIN on the plan) gives the threshold
  records their retention; without it they have no ``expires_at`` (kept until deleted: they can only prevent a
  duplicate).

Files: a header row, then comma-separated values (RFC 4180, quoted fields allowed) or tab-separated ones (what
``mysql --batch`` prints: backslash escapes, ``\\N`` for NULL), told apart by the header. ``NULL``, ``\\N`` and an
empty field mean no value. UUIDs with or without dashes; datetimes ``2026-03-01 09:00:00[.ffffff]`` (UTC, as
Django stores them) or ISO-8601 (``T``, with ``Z`` or an offset, made UTC).

Every row of every file is read and checked before anything is written: a missing column, a malformed value or
an unknown ``notification_type`` is an :class:`InputError` naming the file, line and column. A row that is
well-formed but cannot be mapped (a threshold without a plan, an admin value that is not ``UUID(int=id)``) is
reported as unmappable, not guessed. Two rows naming one key: the latest date is kept.

The records are written with ``Ledger.import_sent_many`` (100 conditional puts a transaction, a few
transactions at once): a key the ledger already holds, in any state, is left as it is and counted, so a second
import writes nothing. Each record carries the run id ``import-sent:<UTC start>`` (``report --run-id``) and the
dispatch id ``license-manager``. A dry run reads the ledger (how many keys exist) and writes nothing.
"""

from __future__ import annotations

import csv
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from license_notifications.jobs import expiration_reminders, plan_expiration_emails
from license_notifications.jobs.utilization import THRESHOLD_RETENTION, WEEKLY_RETENTION, threshold_key, weekly_key
from license_notifications.rules.utilization import NotificationType

logger = logging.getLogger(__name__)

RUN_ID_PREFIX = "import-sent"
DISPATCH_ID = "license-manager"  # the audit mark of every imported record
MAX_ECU_ID = 2**63 - 1  # the largest id an enterprise-customer-user row can have (a signed 64-bit primary key)
WRITE_BATCH = 100  # records per import_sent_many call: one TransactWriteItems
READ_BATCH = 1000  # keys per states() call of a dry run
WRITERS = 4  # import_sent_many calls in flight at once
MAX_PROBLEMS_SHOWN = 20
MAX_UNMAPPABLE_SHOWN = 1000

# -- the two files' columns
LICENSE = "uuid"
ENTERPRISE = "enterprise_customer_uuid"
PLAN_UUID = "subscription_plan_uuid"
PLAN_EXPIRATION = "plan_expiration_date"
REMINDER_SENT = "expiration_reminder_sent_date"
PLAN_EXPIRED_SENT = "subscription_plan_expiration_email_sent_date"
ADMIN = "enterprise_customer_user_uuid"
NOTIFICATION_PLAN = "subscripton_plan_id"  # license-manager's spelling (the model's field is misspelled)
NOTIFICATION_PLAN_FIXED = "subscription_plan_id"  # accepted too, for an export that renamed it
NOTIFICATION_TYPE = "notification_type"
LAST_SENT = "last_sent"
LICENSE_COLUMNS = (LICENSE, ENTERPRISE, PLAN_EXPIRATION, REMINDER_SENT, PLAN_EXPIRED_SENT)  # + PLAN_UUID, optional
NOTIFICATION_COLUMNS = (ENTERPRISE, ADMIN, NOTIFICATION_PLAN, NOTIFICATION_TYPE, LAST_SENT)  # + PLAN_EXPIRATION

# -- the ledger kinds, in the order the summary lists them
KINDS = (
    expiration_reminders.LEDGER_KIND,
    plan_expiration_emails.LEDGER_KIND,
    NotificationType.LIMITED_ALLOCATIONS_REMAINING.value,
    NotificationType.NO_ALLOCATIONS_REMAINING.value,
    NotificationType.PERIODIC_INFORMATIONAL.value,
)

_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?")
_NULLS = frozenset({"", "NULL", "null", "\\N"})
_MYSQL_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)")
_CONFIGURATION_ERRORS = {"ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"}


# -- what reading the files gives ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a file cannot be imported, and where."""

    file: str
    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}"


class InputError(Exception):
    """The files cannot be imported as they are: nothing was written. ``problems`` holds the first
    ``MAX_PROBLEMS_SHOWN``; ``total`` counts them all."""

    def __init__(self, problems: list[Problem], total: int):
        self.problems = problems
        self.total = total
        super().__init__(str(problems[0]) if problems else "bad input")

    def lines(self) -> list[str]:
        shown = [str(p) for p in self.problems]
        if self.total > len(self.problems):
            shown.append(f"... and {self.total - len(self.problems)} more problem(s)")
        return shown


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One ledger record to write: what license-manager sent, under this service's key."""

    key: str
    kind: str
    sent_at: datetime
    enterprise_customer_uuid: str
    subject_uuid: str | None
    expires_at: datetime | None

    def ledger_record(self, run_id: str) -> dict[str, Any]:
        """The record as ``Ledger.import_sent_many`` takes it."""
        return {
            "key": self.key,
            "kind": self.kind,
            "sent_at": self.sent_at,
            "enterprise_customer_uuid": self.enterprise_customer_uuid,
            "subject_uuid": self.subject_uuid,
            "expires_at": self.expires_at,
            "run_id": run_id,
            "dispatch_id": DISPATCH_ID,
        }


@dataclass(frozen=True)
class Unmappable:
    """A well-formed row that names no record of this service (reported, not imported)."""

    file: str
    line: int
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.reason}"


@dataclass
class ImportPlan:
    """What the files say, checked: the records to write (one per key), and what could not be mapped."""

    records: dict[str, SentRecord] = field(default_factory=dict)
    unmappable: list[Unmappable] = field(default_factory=list)
    rows: Counter[str] = field(default_factory=Counter)  # data rows read, per file
    duplicates: int = 0  # rows whose key an earlier row named (the latest date kept)
    rows_without_date: int = 0  # license rows with neither date (nothing to import)
    notifications_have_expiration: bool | None = None  # None: no notifications file

    def add(self, record: SentRecord) -> None:
        earlier = self.records.get(record.key)
        if earlier is not None:
            self.duplicates += 1
            if record.sent_at <= earlier.sent_at:
                return
        self.records[record.key] = record

    @property
    def without_expiry(self) -> int:
        return sum(1 for r in self.records.values() if r.expires_at is None)


# -- reading ----------------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.shown: list[Problem] = []
        self.total = 0

    def add(self, problem: Problem) -> None:
        self.total += 1
        if len(self.shown) < MAX_PROBLEMS_SHOWN:
            self.shown.append(problem)


def _unescape_mysql(value: str) -> str | None:
    """One field as ``mysql --batch`` prints it: ``\\N`` is NULL, backslash escapes stand for special characters."""
    if value == "\\N":
        return None
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: _MYSQL_ESCAPES.get(m.group(1), m.group(1)), value)


def _records(path: Path, name: str, problems: _Problems) -> Iterator[tuple[int, list[str | None]]]:
    """(line number, fields) of each line of ``path``, the header first; tab-separated when the header holds a
    tab, else comma-separated (RFC 4180). Blank lines are skipped."""
    with path.open(encoding="utf-8-sig", newline="") as stream:
        first = stream.readline()
        stream.seek(0)
        if "\t" in first:
            for number, line in enumerate(stream, start=1):
                line = line.rstrip("\r\n")
                if line:
                    yield number, [_unescape_mysql(value) for value in line.split("\t")]
            return
        reader = csv.reader(stream, strict=True)
        start = 1
        try:
            for fields in reader:
                if fields:
                    yield start, list(fields)
                start = reader.line_num + 1
        except csv.Error as exc:
            problems.add(Problem(name, reader.line_num, None, f"not valid CSV: {exc}"))


class _Row:
    """One data row's values by column name, checked one at a time; each malformed value is a problem."""

    __slots__ = ("bad", "line", "name", "problems", "values")

    def __init__(self, name: str, line: int, values: dict[str, str | None], problems: _Problems):
        self.name = name
        self.line = line
        self.values = values
        self.problems = problems
        self.bad = False

    def _fail(self, column: str, message: str) -> None:
        self.bad = True
        self.problems.add(Problem(self.name, self.line, column, message))

    def _raw(self, column: str, required: bool) -> str | None:
        value = self.values.get(column)
        if value is not None:
            value = value.strip()
        if value is None or value in _NULLS:
            if required:
                self._fail(column, "no value (required)")
            return None
        return value

    def uuid(self, column: str, *, required: bool = True) -> UUID | None:
        value = self._raw(column, required)
        if value is None:
            return None
        if not _UUID.fullmatch(value):
            self._fail(column, f"not a UUID (32 hex digits, with or without dashes): {value!r}")
            return None
        return UUID(value)

    def when(self, column: str, *, required: bool = True) -> datetime | None:
        value = self._raw(column, required)
        if value is None:
            return None
        parsed = None
        if _DATETIME.fullmatch(value):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                parsed = None
        if parsed is None:
            self._fail(column, f"not a datetime (2026-03-01 09:00:00[.ffffff] UTC, or ISO-8601): {value!r}")
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def notification_type(self, column: str) -> NotificationType | None:
        value = self._raw(column, True)
        if value is None:
            return None
        try:
            return NotificationType(value)
        except ValueError:
            known = ", ".join(t.value for t in NotificationType)
            self._fail(column, f"unknown notification_type {value!r} (expected one of {known})")
            return None


def _read(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    problems: _Problems,
    renamed: dict[str, str] | None = None,
) -> Iterator[_Row]:
    """Each data row of ``path`` (after checking its header for ``required`` columns); ``renamed`` maps a
    header name to the column it stands for when that column is absent."""
    name = str(path)
    try:
        lines = _records(path, name, problems)
        header_line = next(lines, None)
        if header_line is None:
            problems.add(Problem(name, None, None, "empty file: expected a header row"))
            return
        header = [(column or "").strip().lower() for column in header_line[1]]
        for old, new in (renamed or {}).items():
            if new not in header and old in header:
                header[header.index(old)] = new
        missing = [column for column in required if column not in header]
        for column in missing:
            problems.add(Problem(name, 1, column, "missing column (required); the header has " + ", ".join(header)))
        repeated = sorted({column for column in header if column and header.count(column) > 1})
        for column in repeated:
            problems.add(Problem(name, 1, column, "named twice in the header"))
        if missing or repeated:
            return
        wanted = {c: header.index(c) for c in (*required, *optional) if c in header}
        width = len(header)
        for line, values in lines:
            if len(values) != width:
                column = header[len(values)] if len(values) < width else f"{len(values)} (beyond the header)"
                problems.add(Problem(name, line, column, f"{len(values)} field(s), the header has {width}"))
                continue
            yield _Row(name, line, {c: values[i] for c, i in wanted.items()}, problems)
    except OSError as exc:
        problems.add(Problem(name, None, None, f"cannot read: {exc.strerror or exc}"))
    except UnicodeDecodeError as exc:
        problems.add(Problem(name, None, None, f"not UTF-8 text: {exc.reason} at byte {exc.start}"))


def _read_licenses(path: Path, plan: ImportPlan, problems: _Problems) -> None:
    for row in _read(path, LICENSE_COLUMNS, (PLAN_UUID,), problems):
        plan.rows[row.name] += 1
        license_uuid = row.uuid(LICENSE)
        enterprise = row.uuid(ENTERPRISE)
        if PLAN_UUID in row.values:
            row.uuid(PLAN_UUID, required=False)  # not used in a key, but a malformed one says the export is wrong
        expiration = row.when(PLAN_EXPIRATION)
        reminded = row.when(REMINDER_SENT, required=False)
        told_expired = row.when(PLAN_EXPIRED_SENT, required=False)
        if row.bad or license_uuid is None or enterprise is None or expiration is None:
            continue
        if reminded is None and told_expired is None:
            plan.rows_without_date += 1
        for sent_at, job in ((reminded, expiration_reminders), (told_expired, plan_expiration_emails)):
            if sent_at is not None:
                plan.add(SentRecord(job.ledger_key(license_uuid), job.LEDGER_KIND, sent_at, str(enterprise),
                                    str(license_uuid), expiration + job.RECORD_RETENTION))  # fmt: skip


def ecu_id(value: UUID) -> int | None:
    """The enterprise-customer-user id license-manager stored as ``UUID(int=id)``, or None when ``value`` is not
    such a UUID (0, or beyond any id: a random uuid4 is about 2**126)."""
    return value.int if 1 <= value.int <= MAX_ECU_ID else None


def _read_notifications(path: Path, plan: ImportPlan, problems: _Problems) -> None:
    renamed = {NOTIFICATION_PLAN_FIXED: NOTIFICATION_PLAN}
    for row in _read(path, NOTIFICATION_COLUMNS, (PLAN_EXPIRATION,), problems, renamed):
        plan.rows[row.name] += 1
        has_expiration = PLAN_EXPIRATION in row.values
        plan.notifications_have_expiration = has_expiration
        enterprise = row.uuid(ENTERPRISE)
        admin_uuid = row.uuid(ADMIN)
        plan_uuid = row.uuid(NOTIFICATION_PLAN, required=False)
        kind = row.notification_type(NOTIFICATION_TYPE)
        last_sent = row.when(LAST_SENT)
        expiration = row.when(PLAN_EXPIRATION, required=False) if has_expiration else None
        if row.bad or enterprise is None or admin_uuid is None or kind is None or last_sent is None:
            continue
        admin = ecu_id(admin_uuid)
        if admin is None:
            reason = (f"{ADMIN} {admin_uuid.hex} is not UUID(int=id) of an enterprise-customer-user id "
                      f"(as an integer: {admin_uuid.int})")  # fmt: skip
            plan.unmappable.append(Unmappable(row.name, row.line, kind.value, reason))
            continue
        subject = str(plan_uuid) if plan_uuid is not None else None
        if kind is NotificationType.PERIODIC_INFORMATIONAL:
            key, expires_at = weekly_key(str(enterprise), admin), last_sent + WEEKLY_RETENTION
        elif plan_uuid is None:
            reason = f"{kind.value} notification without a plan ({NOTIFICATION_PLAN} is NULL): no record names it"
            plan.unmappable.append(Unmappable(row.name, row.line, kind.value, reason))
            continue
        else:
            key = threshold_key(plan_uuid, str(enterprise), admin, kind)
            expires_at = expiration + THRESHOLD_RETENTION if expiration is not None else None
        plan.add(SentRecord(key, kind.value, last_sent, str(enterprise), subject, expires_at))


def read_files(licenses: Path, notifications: Path | None = None) -> ImportPlan:
    """Read and check both files whole; raises :class:`InputError` (naming file, line and column) when any row
    is malformed, so that nothing is written from a file that is partly wrong."""
    plan = ImportPlan()
    problems = _Problems()
    _read_licenses(Path(licenses), plan, problems)
    if notifications is not None:
        plan.notifications_have_expiration = False
        _read_notifications(Path(notifications), plan, problems)
    if problems.total:
        raise InputError(problems.shown, problems.total)
    return plan


# -- writing ----------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    run_id: str
    dry_run: bool
    plan: ImportPlan
    imported: Counter[str] = field(default_factory=Counter)  # per kind (a dry run: would import)
    already: Counter[str] = field(default_factory=Counter)  # per kind: the ledger held the key
    error: BaseException | None = None  # the ledger failed part-way (what is counted was done)

    @property
    def unmappable(self) -> Counter[str]:
        return Counter(u.kind for u in self.plan.unmappable)

    @property
    def configuration_error(self) -> bool:
        """The ledger could not be used at all (no table, no permission, no credentials) and nothing was written."""
        if self.error is None or self.imported.total():
            return False
        if isinstance(self.error, NoCredentialsError):
            return True
        code = self.error.response.get("Error", {}).get("Code") if isinstance(self.error, ClientError) else None
        return code in _CONFIGURATION_ERRORS


def new_run_id(now: datetime | None = None) -> str:
    """``import-sent:<UTC start>``, to the microsecond: ``report --run-id`` lists one import."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{RUN_ID_PREFIX}:{now.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def _chunks(records: list[SentRecord], size: int) -> list[list[SentRecord]]:
    return [records[start : start + size] for start in range(0, len(records), size)]


def import_sent(
    ledger: Any,
    plan: ImportPlan,
    *,
    run_id: str,
    dry_run: bool = False,
    writers: int = WRITERS,
) -> ImportResult:
    """Write ``plan``'s records (``ledger.import_sent_many``, ``writers`` batches of 100 at once), or, in a dry
    run, only count which keys the ledger holds already (``ledger.states``). A DynamoDB error stops the import
    and is kept in the result with the counts of what was done; importing again finishes it."""
    result = ImportResult(run_id, dry_run, plan)
    records = list(plan.records.values())
    try:
        if dry_run:
            for chunk in _chunks(records, READ_BATCH):
                held = ledger.states([r.key for r in chunk])
                for record in chunk:
                    (result.already if record.key in held else result.imported)[record.kind] += 1
            return result

        counting, failed = threading.Lock(), threading.Event()

        def write(chunk: list[SentRecord]) -> None:
            if failed.is_set():  # after a failure no new batch starts; those in flight finish
                return
            try:
                written = ledger.import_sent_many([r.ledger_record(run_id) for r in chunk])
            except BaseException:
                failed.set()
                raise
            with counting:
                for record, ok in zip(chunk, written, strict=True):
                    (result.imported if ok else result.already)[record.kind] += 1

        with ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="import-sent") as pool:
            futures = [pool.submit(write, chunk) for chunk in _chunks(records, WRITE_BATCH)]
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
    except (ClientError, BotoCoreError) as exc:
        result.error = exc
    return result


# -- the summary ------------------------------------------------------------------------------------------------


def render(result: ImportResult) -> str:
    """Counts per kind (imported or would import, already in the ledger, unmappable), the unmappable rows, and
    notes on what the import decided."""
    plan = result.plan
    verb = "would import" if result.dry_run else "imported"
    head = ["kind", verb, "already in the ledger", "unmappable"]
    unmappable = result.unmappable
    rows = [[kind, result.imported[kind], result.already[kind], unmappable[kind]] for kind in KINDS]
    rows.append(["total", result.imported.total(), result.already.total(), unmappable.total()])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    lines = [
        f"import-sent {'(dry run: nothing written) ' if result.dry_run else ''}run {result.run_id}, "
        f"dispatch id {DISPATCH_ID}: {sum(plan.rows.values())} row(s) read, {len(plan.records)} record(s)",
    ]
    for row in [head, *rows]:
        cells = [str(row[0]).ljust(widths[0])] + [str(v).rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    if plan.unmappable:
        lines.append(f"unmappable row(s), not imported ({len(plan.unmappable)}):")
        lines.extend(f"  {u}" for u in plan.unmappable[:MAX_UNMAPPABLE_SHOWN])
        if len(plan.unmappable) > MAX_UNMAPPABLE_SHOWN:
            lines.append(f"  ... and {len(plan.unmappable) - MAX_UNMAPPABLE_SHOWN} more")
    if plan.duplicates:
        lines.append(f"note: {plan.duplicates} row(s) named a key another row named too: the latest date is kept")
    if plan.rows_without_date:
        lines.append(f"note: {plan.rows_without_date} license row(s) have neither sent date: nothing to import")
    if plan.without_expiry:
        why = (
            "its plan_expiration_date is NULL"
            if plan.notifications_have_expiration
            else "the notifications file has no plan_expiration_date column"
        )
        lines.append(
            f"note: {plan.without_expiry} threshold record(s) {'would be' if result.dry_run else 'are'} written "
            f"without an expiry ({why}): kept until deleted"
        )
    if result.error is not None:
        lines.append(
            f"error: the ledger failed ({result.error}); the counts above are what was done. Nothing written is "
            "ever changed: run the same import again to finish it."
        )
    return "\n".join(lines)
