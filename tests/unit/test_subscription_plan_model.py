"""The plan model's ``prior_renewals`` (contract 2.1), as license-manager serves it."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from pydantic import ValidationError

from license_notifications.models import SubscriptionPlan

OLD = "6e0a3a5c-0000-4000-8000-000000000001"
RENEWAL = "6e0a3a5c-0000-4000-8000-000000000002"


def plan_json(**overrides):
    plan = {
        "uuid": RENEWAL,
        "title": "Renewal",
        "start_date": "2026-03-01T00:00:00Z",
        "expiration_date": "2027-03-01T00:00:00Z",
        "enterprise_customer_uuid": "6e0a3a5c-0000-4000-8000-0000000000e1",
        "is_active": True,
    }
    plan.update(overrides)
    return plan


def test_prior_renewals_name_the_renewed_plan_and_the_renewal():
    plan = SubscriptionPlan.model_validate(
        plan_json(
            prior_renewals=[
                {
                    "prior_subscription_plan_id": OLD,
                    "prior_subscription_plan_start_date": "2025-03-01T00:00:00Z",
                    "renewed_subscription_plan_id": RENEWAL,
                    "renewed_subscription_plan_start_date": "2026-03-01T00:00:00.420499Z",
                }
            ]
        )
    )
    [renewal] = plan.prior_renewals
    assert renewal.prior_subscription_plan_id == UUID(OLD)
    assert renewal.renewed_subscription_plan_id == UUID(RENEWAL)
    assert renewal.renewed_subscription_plan_start_date == datetime(2026, 3, 1, 0, 0, 0, 420499, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, []])
def test_no_prior_renewals(value):
    assert SubscriptionPlan.model_validate(plan_json(prior_renewals=value)).prior_renewals == []
    assert SubscriptionPlan.model_validate(plan_json()).prior_renewals == []


@pytest.mark.parametrize(
    "entry",
    [
        {"renewed_subscription_plan_id": RENEWAL},  # which plan it renews is missing
        {"prior_subscription_plan_id": "not-a-uuid", "renewed_subscription_plan_id": RENEWAL},
    ],
)
def test_a_renewal_entry_without_its_plans_does_not_parse(entry):
    with pytest.raises(ValidationError, match="prior_renewals"):
        SubscriptionPlan.model_validate(plan_json(prior_renewals=[entry]))
