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

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from license_notifications.clock import check_as_of, parse_as_of
from license_notifications.rules.expiration import DEFAULT_DAYS_BEFORE_EXPIRATION, MAX_DAYS_BEFORE_EXPIRATION
from license_notifications.rules.plan_expiration import DEFAULT_DAYS_SINCE_EXPIRATION, MAX_DAYS_SINCE_EXPIRATION


def _as_of(value: Any) -> datetime:
    """An ISO-8601 string with a timezone (what JSON carries) or, from Python, an aware datetime; within
    clock.AS_OF_MIN..AS_OF_MAX; made UTC. Not a number: pydantic would read it as epoch seconds."""
    if isinstance(value, datetime):
        return check_as_of(value)
    return parse_as_of(value)


AsOf = Annotated[AwareDatetime, BeforeValidator(_as_of)]
# Strict: JSON ``true`` (or "30", 30.0) is not a number of days.
DaysBeforeExpiration = Annotated[int, Field(strict=True, ge=1, le=MAX_DAYS_BEFORE_EXPIRATION)]
DaysSinceExpiration = Annotated[int, Field(strict=True, ge=1, le=MAX_DAYS_SINCE_EXPIRATION)]


class Job(StrEnum):
    EXPIRATION_REMINDERS = "license_expiration_reminders"
    UTILIZATION = "license_utilization"
    PLAN_EXPIRATION_EMAILS = "subscription_plan_expiration_emails"


# The learner jobs: one email per license, read in license pages, so a large enterprise is shared by page.
CONTINUED_JOBS = frozenset({Job.EXPIRATION_REMINDERS, Job.PLAN_EXPIRATION_EMAILS})


class DispatchRequest(BaseModel):
    """What a schedule, a manual invoke or ``sam local invoke`` sends the dispatcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: Job
    enterprise_customer_uuids: str | list[str] | None = None
    days_before_expiration: DaysBeforeExpiration = DEFAULT_DAYS_BEFORE_EXPIRATION
    days_since_expiration: DaysSinceExpiration = DEFAULT_DAYS_SINCE_EXPIRATION  # the post-expiration emails' window
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
    days_since_expiration: DaysSinceExpiration = DEFAULT_DAYS_SINCE_EXPIRATION
    dry_run: bool = False
    dispatched_at: datetime | None = None
    # A continuation (the learner jobs, CONTINUED_JOBS): only this plan's license pages first_page..last_page (inclusive;
    # no last_page: to the end). The worker that finds a large enterprise, or runs out of time, hands the rest
    # of the run on in such messages, with the same run id and as_of.
    plan_uuid: UUID | None = None
    first_page: Annotated[int, Field(ge=1, strict=True)] | None = None
    last_page: Annotated[int, Field(ge=1, strict=True)] | None = None

    @model_validator(mode="after")
    def _a_continuation_names_its_plan_and_pages(self) -> WorkMessage:
        if (self.plan_uuid is None) != (self.first_page is None):
            raise ValueError("plan_uuid and first_page go together (a continuation of one plan's pages)")
        if self.plan_uuid is not None and self.job not in CONTINUED_JOBS:
            raise ValueError(
                f"only {', '.join(sorted(CONTINUED_JOBS))} are continued by plan and page, not {self.job.value}"
            )
        if self.last_page is not None and (self.first_page is None or self.last_page < self.first_page):
            raise ValueError("last_page needs a first_page no greater than it")
        return self

    def continuation(self, plan_uuid: UUID | str, first_page: int, last_page: int | None) -> WorkMessage:
        """The same run (run id, as_of, window, dry run) for one plan's pages ``first_page..last_page``."""
        return WorkMessage.model_validate(
            {**self.model_dump(), "plan_uuid": str(plan_uuid), "first_page": first_page, "last_page": last_page}
        )


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
