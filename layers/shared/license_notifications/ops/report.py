"""``license-notifications report``: did they get it? Answered from the ledger, which holds every send.

A license's records are read by key (its reminder and its post-expiration email, in whatever state); an
enterprise's and a run's sends through the ledger's ``by-enterprise`` (enterprise, send time) and ``by-run``
indexes, which hold a record once it is marked sent. Reads only (GetItem / Query, never a Scan: the table
holds every send of every enterprise). One row per ledger record. Options and output:
docs/operations.md#report-did-they-get-it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from license_notifications.adapters.ledger import LedgerItem, ledger_model
from license_notifications.jobs import expiration_reminders, plan_expiration_emails

COLUMNS = ("key", "state", "sent_at", "run_id", "dispatch_id", "enterprise_customer_uuid", "license_uuid", "admin_id")
# The records a license can have, in the order a learner gets them.
LICENSE_RECORDS = (expiration_reminders, plan_expiration_emails)


@dataclass(frozen=True)
class ReportRow:
    key: str
    state: str | None
    sent_at: str | None  # as the ledger stores it: 2026-03-01T09:00:00.000000+0000
    run_id: str | None
    dispatch_id: str | None
    enterprise_customer_uuid: str | None
    license_uuid: str | None
    admin_id: str | None

    @classmethod
    def of(cls, record: LedgerItem) -> ReportRow:
        license_uuid, admin_id = _subject(record.pk)
        return cls(
            key=record.pk,
            state=record.state,
            sent_at=sent_at_bound(record.sent_at) if record.sent_at else None,
            run_id=record.run_id or record.claimed_by_run,
            dispatch_id=record.dispatch_id,
            enterprise_customer_uuid=record.enterprise_customer_uuid,
            license_uuid=license_uuid,
            admin_id=admin_id,
        )


def _subject(key: str) -> tuple[str | None, str | None]:
    """(license uuid, admin id) named by a ledger key (see the jobs' key functions)."""
    parts = key.split("#")
    if parts[0] in {job.LEDGER_KIND for job in LICENSE_RECORDS} and len(parts) == 2:
        return parts[1], None
    if parts[0] == "utilization" and len(parts) == 5:
        return None, parts[3]
    if parts[0] == "weekly_digest" and len(parts) == 3:
        return None, parts[2]
    return None, None


def sent_at_bound(value: datetime) -> str:
    """An instant as the ledger stores ``sent_at`` (the model's UTCDateTimeAttribute): sorts by time."""
    return LedgerItem.sent_at.serialize(value)


class LedgerReport:
    """Reads through the ledger's pynamodb model (``LedgerItem``) and its ``by-enterprise`` / ``by-run`` indexes."""

    def __init__(self, table_name: str, *, host: str | None = None):
        self.table = table_name
        self.model = ledger_model(table_name, host=host)

    def license(self, license_uuid: str) -> list[ReportRow]:
        """Each record of the license (its reminder, then its post-expiration email), those that exist."""
        rows = []
        for job in LICENSE_RECORDS:
            with contextlib.suppress(self.model.DoesNotExist):
                rows.append(ReportRow.of(self.model.get(job.ledger_key(license_uuid))))
        return rows

    def enterprise(self, enterprise_uuid: str, since: datetime | None, until: datetime | None) -> list[ReportRow]:
        sent_at = self.model.sent_at
        low, high = since or datetime.min.replace(tzinfo=UTC), until or datetime.max.replace(tzinfo=UTC)
        records = self.model.by_enterprise.query(enterprise_uuid, sent_at.between(low, high))
        return [ReportRow.of(record) for record in records]

    def run(self, run_id: str) -> list[ReportRow]:
        return [ReportRow.of(record) for record in self.model.by_run.query(run_id)]


def as_json(rows: list[ReportRow]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2)


def as_table(rows: list[ReportRow]) -> str:
    """Aligned columns, a header, one line per record ("-" for an empty field)."""
    cells = [list(COLUMNS)] + [[getattr(row, column) or "-" for column in COLUMNS] for row in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join([*lines, f"({len(rows)} record(s))"])
