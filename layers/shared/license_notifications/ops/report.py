"""``license-notifications report``: did they get it? Answered from the ledger, which holds every send.

A license's records are read by key (its reminder and its post-expiration email, in whatever state); an
enterprise's and a run's sends through the ledger's ``by-enterprise`` (enterprise, send time) and ``by-run``
indexes, which hold a record once it is marked sent. Reads only (GetItem / Query, never a Scan: the table
holds every send of every enterprise). One row per ledger record. Options and output:
docs/operations.md#report-did-they-get-it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from license_notifications.jobs import expiration_reminders, plan_expiration_emails

BY_ENTERPRISE = "by-enterprise"
BY_RUN = "by-run"
COLUMNS = ("key", "state", "sent_at", "run_id", "dispatch_id", "enterprise_customer_uuid", "license_uuid", "admin_id")
_SENT_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"  # how the ledger stores sent_at (pynamodb's UTCDateTimeAttribute)
_deserialize = TypeDeserializer().deserialize
# The records a license can have, in the order a learner gets them.
LICENSE_RECORDS = (expiration_reminders, plan_expiration_emails)


@dataclass(frozen=True)
class ReportRow:
    key: str
    state: str | None
    sent_at: str | None
    run_id: str | None
    dispatch_id: str | None
    enterprise_customer_uuid: str | None
    license_uuid: str | None
    admin_id: str | None

    @classmethod
    def of(cls, item: dict[str, Any]) -> ReportRow:
        record = {name: _deserialize(value) for name, value in item.items()}
        key = str(record["pk"])
        license_uuid, admin_id = _subject(key)
        return cls(
            key=key,
            state=record.get("state"),
            sent_at=record.get("sent_at"),
            run_id=record.get("run_id") or record.get("claimed_by_run"),
            dispatch_id=record.get("dispatch_id"),
            enterprise_customer_uuid=record.get("enterprise_customer_uuid"),
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
    """An instant as the ledger stores ``sent_at``: comparable as a string (same format, always UTC)."""
    return value.astimezone(UTC).strftime(_SENT_AT_FORMAT)


class LedgerReport:
    def __init__(self, dynamodb: Any, table_name: str):
        self._db = dynamodb
        self.table = table_name

    def license(self, license_uuid: str) -> list[ReportRow]:
        """Each record of the license (its reminder, then its post-expiration email), those that exist."""
        rows = []
        for job in LICENSE_RECORDS:
            item = self._db.get_item(TableName=self.table, Key={"pk": {"S": job.ledger_key(license_uuid)}})
            if "Item" in item:
                rows.append(ReportRow.of(item["Item"]))
        return rows

    def enterprise(self, enterprise_uuid: str, since: datetime | None, until: datetime | None) -> list[ReportRow]:
        low = sent_at_bound(since) if since else "0"
        high = sent_at_bound(until) if until else "9"
        return list(
            self._query(
                BY_ENTERPRISE,
                "enterprise_customer_uuid = :e AND sent_at BETWEEN :low AND :high",
                {":e": {"S": enterprise_uuid}, ":low": {"S": low}, ":high": {"S": high}},
            )
        )

    def run(self, run_id: str) -> list[ReportRow]:
        return list(self._query(BY_RUN, "run_id = :r", {":r": {"S": run_id}}))

    def _query(self, index: str, condition: str, values: dict[str, Any]) -> Iterator[ReportRow]:
        pages = self._db.get_paginator("query").paginate(
            TableName=self.table, IndexName=index, KeyConditionExpression=condition, ExpressionAttributeValues=values
        )
        for page in pages:
            yield from (ReportRow.of(item) for item in page.get("Items", []))


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
