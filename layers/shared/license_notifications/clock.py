"""The run's clock. ``as_of`` is read once per run (or given), then passed to every rule and record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

# The range a given ``as_of`` must fall in (UTC, inclusive), checked by the dispatcher event, the work message
# and the CLI alike. Every date a run derives from ``as_of`` must be representable: the reminder window reaches
# as_of + MAX_DAYS_BEFORE_EXPIRATION (10 years), ledger records as_of + 60 days, the weekly digest looks back a
# week. Years 2000..2999 leave millennia of headroom on both sides of datetime's 1..9999 (and of a TTL in epoch
# seconds) while no real run can fall outside them: a value outside is a typo, not a date to evaluate.
# tests/unit/test_config_and_events.py checks that the derived dates at both bounds are representable.
AS_OF_MIN = datetime(2000, 1, 1, tzinfo=UTC)
AS_OF_MAX = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

AS_OF_EXAMPLE = "2026-03-01T09:00:00Z"


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_as_of(value: datetime) -> datetime:
    """``value`` made UTC, if it carries a timezone and lies within [AS_OF_MIN, AS_OF_MAX]; else ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"as_of must carry a timezone (e.g. {AS_OF_EXAMPLE}), got {value.isoformat()}")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 has no UTC datetime
        utc = None
    if utc is None or not AS_OF_MIN <= utc <= AS_OF_MAX:
        raise ValueError(
            f"as_of must lie between {AS_OF_MIN:%Y-%m-%dT%H:%M:%SZ} and {AS_OF_MAX:%Y-%m-%dT%H:%M:%SZ}, "
            f"got {value.isoformat()}"
        )
    return utc


def parse_as_of(value: Any) -> datetime:
    """An ``as_of`` given as text: an ISO-8601 string with a timezone, within range, returned in UTC.

    Anything else raises ValueError, a number in particular: an epoch would otherwise be read as seconds."""
    if not isinstance(value, str):
        raise ValueError(
            f"as_of must be an ISO-8601 string with a timezone (e.g. {AS_OF_EXAMPLE}), got {type(value).__name__}"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"as_of must be an ISO-8601 datetime with a timezone (e.g. {AS_OF_EXAMPLE}), got {value!r}"
        ) from None
    return check_as_of(parsed)


def resolve_as_of(as_of: datetime | None) -> datetime:
    """The instant a run behaves as if the clock read: the given one (checked, made UTC) or now, read once."""
    if as_of is None:
        return utcnow()
    return check_as_of(as_of)


def new_run_id(job: str, as_of: datetime) -> str:
    """A readable, unique run id: job, as_of, random suffix (the logs' correlation id)."""
    return f"{job}:{as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}:{uuid.uuid4().hex[:8]}"
