"""The run's clock. ``as_of`` is read once per run (or given), then passed to every rule and record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def resolve_as_of(as_of: datetime | None) -> datetime:
    """The instant a run behaves as if the clock read: the given one (made UTC) or now, read once."""
    if as_of is None:
        return utcnow()
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must carry a timezone (e.g. 2026-03-01T09:00:00Z)")
    return as_of.astimezone(UTC)


def new_run_id(job: str, as_of: datetime) -> str:
    """A readable, unique run id: job, as_of, random suffix (the logs' correlation id)."""
    return f"{job}:{as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}:{uuid.uuid4().hex[:8]}"
