"""Braze payload formatting (pure: no sockets)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from license_notifications.adapters.braze import braze_datetime


def test_braze_datetime_format():
    plus2 = timezone(timedelta(hours=2))
    assert braze_datetime(datetime(2026, 3, 15, 2, 30, 5, 999, tzinfo=plus2)) == "2026-03-15T00:30:05Z"


def test_braze_datetime_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        braze_datetime(datetime(2026, 3, 15, 2, 30))
