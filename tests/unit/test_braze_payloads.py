"""Braze payload formatting and reading (pure: no sockets): dates, recipients, non-fatal errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from license_notifications.adapters.braze import Recipient, UserAlias, attribute_errors, braze_datetime


def test_braze_datetime_format():
    plus2 = timezone(timedelta(hours=2))
    assert braze_datetime(datetime(2026, 3, 15, 2, 30, 5, 999, tzinfo=plus2)) == "2026-03-15T00:30:05Z"


def test_braze_datetime_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        braze_datetime(datetime(2026, 3, 15, 2, 30))


def alias_recipient(email: str, **props) -> Recipient:
    return Recipient(user_alias=UserAlias(email), attributes={"email": email}, trigger_properties=props)


def test_recipient_needs_exactly_one_identifier():
    with pytest.raises(ValueError, match="exactly one"):
        Recipient(user_alias=UserAlias("a@example.com"), external_user_id="7", attributes={"email": "a@example.com"})
    with pytest.raises(ValueError, match="exactly one"):
        Recipient()


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (["recipients[1] (x): unsubscribed"], {1}),
        (["Invalid email at index 0"], {0}),
        (["b@example.com: bounced"], {1}),
        (["ab@example.com: bounced"], set()),  # another address that merely ends like one of ours
        (["something went wrong"], set()),
        (["recipients[7]: out of range"], set()),
        ([{"type": "x", "index": 2}], {2}),
    ],
)
def test_non_fatal_errors_are_attributed_by_index_or_identifier(errors, expected):
    recipients = [alias_recipient(f"{n}@example.com") for n in ("a", "b", "c")]
    assert set(attribute_errors(errors, recipients)) == expected
