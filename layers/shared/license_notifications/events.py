"""The service's own inputs: the dispatcher event and the work message it puts on the queue.

Parsed with Powertools Parser (pydantic). Unknown keys are rejected so a typo in a manual invoke is an
error, not a silently ignored option.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from license_notifications.clock import check_as_of, parse_as_of
from license_notifications.rules.expiration import DEFAULT_DAYS_BEFORE_EXPIRATION, MAX_DAYS_BEFORE_EXPIRATION


def _as_of(value: Any) -> datetime:
    """An ISO-8601 string with a timezone (what JSON carries) or, from Python, an aware datetime; within
    clock.AS_OF_MIN..AS_OF_MAX; made UTC. Not a number: pydantic would read it as epoch seconds."""
    if isinstance(value, datetime):
        return check_as_of(value)
    return parse_as_of(value)


AsOf = Annotated[AwareDatetime, BeforeValidator(_as_of)]
# Strict: JSON ``true`` (or "30", 30.0) is not a number of days.
DaysBeforeExpiration = Annotated[int, Field(strict=True, ge=1, le=MAX_DAYS_BEFORE_EXPIRATION)]


class Job(StrEnum):
    EXPIRATION_REMINDERS = "license_expiration_reminders"
    UTILIZATION = "license_utilization"


class DispatchRequest(BaseModel):
    """What a schedule, a manual invoke or ``sam local invoke`` sends the dispatcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: Job
    enterprise_customer_uuids: str | list[str] | None = None
    days_before_expiration: DaysBeforeExpiration = DEFAULT_DAYS_BEFORE_EXPIRATION
    dry_run: bool = False
    as_of: AsOf | None = None


class WorkMessage(BaseModel):
    """One enterprise's unit of work (one SQS message). ``as_of`` is fixed by the dispatcher for the whole run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: Job
    run_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]  # a ledger index key: never ""
    enterprise_customer_uuid: UUID
    as_of: AsOf
    days_before_expiration: DaysBeforeExpiration = DEFAULT_DAYS_BEFORE_EXPIRATION
    dry_run: bool = False
    dispatched_at: datetime | None = None


_SEPARATORS = re.compile(r"[\s,]+")


def parse_enterprise_uuids(raw: str | Iterable[str] | None) -> tuple[list[str], list[str]]:
    """Split ``"uuid1,uuid2 uuid3"`` (or a list of such strings) into (valid, invalid).

    Valid ones are normalised (lower-case, hyphenated) and de-duplicated in order; invalid ones are
    returned as given so they can be reported.
    """
    if raw is None:
        return [], []
    parts: list[str] = []
    for chunk in [raw] if isinstance(raw, str) else raw:
        parts.extend(p for p in _SEPARATORS.split(str(chunk)) if p)
    valid: dict[str, None] = {}  # a dict keeps the order and de-duplicates in constant time
    invalid: list[str] = []
    for part in parts:
        try:
            valid.setdefault(str(UUID(part)), None)
        except ValueError:
            invalid.append(part)
    return list(valid), invalid
