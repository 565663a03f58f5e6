"""The enterprise admin model on its own: an enterprise-learner record (contract 3.2) as the LMS serves it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import NOW
from fakes import enterprise_learner_record as record
from license_notifications.models import EnterpriseAdmin


def parsed(**overrides: Any) -> EnterpriseAdmin:
    return EnterpriseAdmin.from_enterprise_learner(record("6f1c3c9e-2f8b-4d1e-9a55-0c5b8a2d7e10", **overrides))


def user(**fields: Any) -> dict[str, Any]:
    base = record(None)["user"]
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("user_fields", "expected"),
    [
        ({}, "Ada Lovelace"),
        ({"first_name": "  Ada ", "last_name": ""}, "Ada"),
        ({"first_name": "", "last_name": "Lovelace"}, "Lovelace"),
        ({"first_name": " ", "last_name": None}, "ada"),  # blank names: the username
        ({"first_name": "", "last_name": "", "username": ""}, "ada@example.com"),  # then the email
        ({"first_name": "", "last_name": "", "username": "", "email": None}, ""),
    ],
)
def test_display_name(user_fields, expected):
    assert parsed(user=user(**user_fields)).display_name == expected


def test_the_nested_user_id_is_the_lms_user_id():
    admin = parsed(user_id=1, user=user(id=7001))
    assert admin.user_id == 7001
    assert admin.created == datetime(2026, 2, 20, 10, 30, tzinfo=UTC)


def test_flat_fields_can_be_given_directly():
    admin = EnterpriseAdmin(
        id=1, user_id=2, username="u", email=None, user_is_active=True, created=NOW, role_assignments=[]
    )
    assert admin.display_name == "u"
    assert admin.is_admin is False
    assert admin.enterprise_customer_uuid is None
