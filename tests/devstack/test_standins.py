"""The local stand-ins speak the upstream contracts and reject what the real services reject.

Contract: /work/shared/contracts/upstream-apis.md. Every server binds 127.0.0.1:0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from devstack.dataset import (
    ACME,
    CYBERDYNE,
    GLOBEX,
    INITECH,
    SHARED_ADMIN_LMS_USER_ID,
    STARK,
    TYRELL,
    UMBRELLA,
    VANDELAY,
    WAYNE,
    Dataset,
    build_sample_dataset,
)
from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn, TokenRegistry

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
API_KEY = "braze-test-key"
ALIAS = "/users/alias/new"
TRIGGER = "/campaigns/trigger/send"
TIMEOUT = 5


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def ds() -> Dataset:
    return build_sample_dataset(NOW)


@pytest.fixture
def lms(ds: Dataset) -> Iterator[LmsStandIn]:
    with LmsStandIn(ds) as standin:
        yield standin
    assert standin.errors == []


@pytest.fixture
def lm(ds: Dataset, lms: LmsStandIn) -> Iterator[LicenseManagerStandIn]:
    with LicenseManagerStandIn(ds, lms.registry, clock=lambda: NOW) as standin:
        yield standin
    assert standin.errors == []


@pytest.fixture
def braze() -> Iterator[BrazeStandIn]:
    with BrazeStandIn(API_KEY) as standin:
        yield standin
    assert standin.errors == []


def fetch_token(lms: LmsStandIn, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": lms.client_id,
        "client_secret": lms.client_secret,
        "token_type": "jwt",
        **overrides,
    }
    return requests.post(f"{lms.url}/oauth2/access_token", data=form, timeout=TIMEOUT)


@pytest.fixture
def auth(lms: LmsStandIn) -> dict[str, str]:
    return {"Authorization": f"JWT {fetch_token(lms).json()['access_token']}"}


def get(url: str, headers: dict[str, str], **params: Any) -> requests.Response:
    return requests.get(url, headers=headers, params=params, timeout=TIMEOUT)


def follow(url: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page, following the absolute ``next`` URLs until null."""
    pages = []
    response = get(url, headers, **params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if pages[-1]["next"] is None:
            return pages
        assert pages[-1]["next"].startswith("http://127.0.0.1:")
        response = get(pages[-1]["next"], headers)


def braze_post(braze: BrazeStandIn, path: str, body: Any, **headers: str) -> requests.Response:
    sent = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **headers}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(braze.url + path, data=data, headers=sent, timeout=TIMEOUT)


def alias_recipient(email: str, **extra: Any) -> dict[str, Any]:
    return {"user_alias": {"alias_name": email, "alias_label": "Enterprise"}, **extra}


def valid_alias_recipient(email: str) -> dict[str, Any]:
    return alias_recipient(email, send_to_existing_only=False, attributes={"email": email})


# ----------------------------------------------------------------------------------------- sample dataset
def test_sample_dataset_is_deterministic_and_relative_to_now() -> None:
    first, second = build_sample_dataset(NOW), build_sample_dataset(NOW)
    assert list(first.plans) == list(second.plans)
    assert [lic.uuid for lic in first.licenses_of(first.plan_by_title("Acme Analytics 2025 Enterprise").uuid)] == [
        lic.uuid for lic in second.licenses_of(second.plan_by_title("Acme Analytics 2025 Enterprise").uuid)
    ]
    later = build_sample_dataset(NOW + timedelta(days=7))
    assert later.plan_by_title("Globex University Campus").expiration_date == NOW + timedelta(days=42, hours=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_sample_dataset(datetime(2025, 6, 1))


def test_sample_dataset_covers_the_cases(ds: Dataset) -> None:
    active = [c for c in ds.customers.values() if c.active]
    assert len(active) >= 4
    assert all(c.uuid in ds.agreements for c in ds.customers.values())
    days = {p.title: (p.expiration_date - NOW).days for p in ds.plans.values()}
    assert days["Acme Analytics 2025 Enterprise"] == 10
    assert days["Globex University Campus"] == 35
    assert days["Globex University 2024"] == -5
    assert days["Stark Learning Auto-Apply"] == 200
    in_window = ds.plan_by_title("Acme Analytics 2025 Enterprise")
    counts = ds.license_counts(in_window.uuid)
    assert all(counts[status] > 0 for status in ("activated", "assigned", "unassigned", "revoked"))
    assert counts["activated"] > 50
    assert ds.agreements[ds.customer_by_slug(INITECH).uuid].disable_expiration_notifications is True
    assert ds.customer_by_slug(GLOBEX).sender_alias == ""
    assert ds.plan_by_title("Acme Analytics Pilot").is_active is False
    utilization = {
        slug: ds.license_counts(ds.plans_of(ds.customer_by_slug(slug).uuid)[0].uuid)
        for slug in (STARK, WAYNE, CYBERDYNE)
    }
    assert [round(100 * c["allocated"] / c["total"]) for c in utilization.values()] == [60, 80, 100]
    assert len(ds.admins_of(ds.customer_by_slug(STARK).uuid)) == 55
    shared = [lrn for lrn in ds.learners if lrn.user.id == SHARED_ADMIN_LMS_USER_ID]
    assert len(shared) == 2
    assert len({lrn.id for lrn in shared}) == 2
    renewed = ds.plan_by_title("Umbrella Health 2025 - Renewal")
    old = ds.plan_by_title("Umbrella Health 2025")
    assert renewed.start_date == old.expiration_date
    old_emails = {lic.user_email for lic in ds.licenses_of(old.uuid) if lic.status == "activated"}
    new = [lic for lic in ds.licenses_of(renewed.uuid) if lic.status == "activated"]
    assert {lic.user_email for lic in new} == old_emails
    assert not {lic.uuid for lic in new} & {lic.uuid for lic in ds.licenses_of(old.uuid)}
    assert any("Acme Analytics" in line for line in ds.describe())


def test_sample_dataset_covers_the_post_expiration_cases(ds: Dataset) -> None:
    ago = {p.title: NOW - p.expiration_date for p in ds.plans.values() if p.expiration_date <= NOW}
    week = timedelta(days=7)
    assert timedelta(0) < ago["Tyrell Replicant Training"] <= timedelta(hours=1)  # due at once
    assert ago["Globex University 2024"] < week  # inside
    assert ago["Globex University 2023"] > week  # outside
    assert ds.plan_by_title("Globex University Summer School").is_active is False
    assert ago["Globex University Summer School"] < week  # in the window, but inactive
    assert ago["Initech 2025 Onboarding"] < week  # Initech opted out
    old, renewal = ds.plan_by_title("Tyrell 2025"), ds.plan_by_title("Tyrell 2026 - Renewal")
    assert ds.renewals[old.uuid] == renewal.uuid
    assert renewal.start_date == old.expiration_date
    learners = {lic.user_email for lic in ds.licenses_of(old.uuid) if lic.status == "activated"}
    moved = {lic.user_email for lic in ds.licenses_of(renewal.uuid) if lic.status in ("activated", "assigned")}
    assert (len(learners), len(moved), len(learners - moved)) == (20, 15, 5)
    assert ds.customer_by_slug(TYRELL).default_language == "de"


# ------------------------------------------------------------------------------------------- OAuth2 / JWT
def test_token_endpoint_success_shape(lms: LmsStandIn) -> None:
    response = fetch_token(lms)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "JWT"
    assert body["expires_in"] == 3600
    assert body["scope"] == "read write"
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) > 20
    assert lms.requests[-1].form["grant_type"] == ["client_credentials"]


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "someone-else"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_endpoint_errors(lms: LmsStandIn, overrides: dict[str, str], status: int, error: str) -> None:
    response = fetch_token(lms, **overrides)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_token_endpoint_rejects_json_body(lms: LmsStandIn) -> None:
    body = {"grant_type": "client_credentials", "client_id": lms.client_id, "client_secret": lms.client_secret}
    response = requests.post(f"{lms.url}/oauth2/access_token", json=body, timeout=TIMEOUT)
    assert response.status_code == 400


def test_token_without_token_type_jwt_is_not_a_jwt(lms: LmsStandIn, ds: Dataset) -> None:
    response = fetch_token(lms, token_type="")
    assert response.json()["token_type"] == "Bearer"
    url = f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(ACME).uuid}/"
    assert get(url, {"Authorization": f"JWT {response.json()['access_token']}"}).status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "Token", None])
def test_apis_require_the_jwt_scheme(
    lms: LmsStandIn, lm: LicenseManagerStandIn, ds: Dataset, scheme: str | None
) -> None:
    token = fetch_token(lms).json()["access_token"]
    headers = {"Authorization": f"{scheme} {token}"} if scheme else {}
    for url in (
        f"{lm.url}/api/v1/subscriptions/",
        f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(ACME).uuid}/",
    ):
        response = get(url, headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}
        assert response.headers["WWW-Authenticate"] == 'JWT realm="api"'  # contract 2.4
        assert get(url, {"Authorization": f"JWT {token}"}).status_code == 200
        assert get(url, {"Authorization": "JWT not-a-token-we-issued"}).json() == {"detail": "Invalid token."}


def test_revoked_and_expired_tokens_get_401_and_a_fresh_token_works(lms: LmsStandIn, lm: LicenseManagerStandIn) -> None:
    url = f"{lm.url}/api/v1/subscriptions/"
    old = {"Authorization": f"JWT {fetch_token(lms).json()['access_token']}"}
    assert get(url, old).status_code == 200
    assert lms.revoke_all_tokens() == 1
    assert get(url, old).status_code == 401
    fresh = {"Authorization": f"JWT {fetch_token(lms).json()['access_token']}"}
    assert get(url, fresh).status_code == 200
    lms.registry.expire_all()
    response = get(url, fresh)
    assert response.status_code == 401
    assert response.json() == {"detail": "Token has expired."}  # contract 2.4


def test_configurable_expires_in(ds: Dataset) -> None:
    with LmsStandIn(ds, expires_in=2) as lms:
        assert fetch_token(lms).json()["expires_in"] == 2


# ------------------------------------------------------------------------------------------------ LMS 3.1
def test_enterprise_customer_fields(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    acme = ds.customer_by_slug(ACME)
    body = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{acme.uuid}/", auth).json()
    for name in ("uuid", "name", "slug", "active", "sender_alias", "contact_email", "reply_to", "default_language"):
        assert name in body
    assert body["uuid"] == acme.uuid
    assert body["slug"] == ACME
    assert body["active"] is True
    assert {"email": "dana.whitfield@acme-analytics.example.com", "lms_user_id": 3001} in body["admin_users"]
    globex = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(GLOBEX).uuid}", auth).json()
    assert globex["sender_alias"] == ""
    assert globex["default_language"] == "es"
    umbrella = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(UMBRELLA).uuid}", auth)
    assert umbrella.json()["default_language"] is None


@pytest.mark.parametrize("which", ["inactive", "unknown", "malformed"])
def test_enterprise_customer_404(lms: LmsStandIn, ds: Dataset, auth: dict[str, str], which: str) -> None:
    key = {
        "inactive": ds.customer_by_slug(VANDELAY).uuid,
        "unknown": "00000000-0000-0000-0000-000000000000",
        "malformed": "not-a-uuid",
    }[which]
    response = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{key}/", auth)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


# ------------------------------------------------------------------------------------------------ LMS 3.2
def test_enterprise_admins_paginate_by_ten(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    stark = ds.customer_by_slug(STARK).uuid
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    pages = follow(url, auth, enterprise_customer_uuid=stark, role="enterprise_admin")
    assert len(pages) == 6
    assert [page["current_page"] for page in pages] == [1, 2, 3, 4, 5, 6]
    assert [page["start"] for page in pages] == [0, 10, 20, 30, 40, 50]
    assert {page["num_pages"] for page in pages} == {6}
    assert {page["count"] for page in pages} == {55}
    assert pages[0]["previous"] is None
    assert pages[1]["previous"] is not None
    results = [result for page in pages for result in page["results"]]
    assert len(results) == 55
    assert len({r["id"] for r in results}) == 55
    first = results[0]
    assert set(first) >= {"id", "active", "user_id", "user", "created", "role_assignments", "enterprise_customer"}
    assert set(first["user"]) == {
        "id",
        "username",
        "first_name",
        "last_name",
        "email",
        "is_staff",
        "is_active",
        "date_joined",
    }
    assert all("enterprise_admin" in r["role_assignments"] for r in results)
    assert first["user_id"] == first["user"]["id"]
    assert isinstance(first["id"], int)
    assert first["enterprise_customer"]["uuid"] == stark


def test_enterprise_learner_page_size_and_role_filter(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    stark = ds.customer_by_slug(STARK).uuid
    everyone = get(url, auth, enterprise_customer_uuid=stark, page_size=100).json()
    assert everyone["count"] == 58
    assert len(everyone["results"]) == 58
    assert everyone["next"] is None
    assert sum("enterprise_admin" not in r["role_assignments"] for r in everyone["results"]) == 3
    big = ds.add_customer("Big Corp", slug="big-corp")
    for n in range(120):
        ds.add_admin(big.uuid, email=f"admin{n:03d}@big-corp.example.com")
    clamped = get(url, auth, enterprise_customer_uuid=big.uuid, role="enterprise_admin", page_size=1000).json()
    assert len(clamped["results"]) == 100
    assert clamped["num_pages"] == 2


def test_enterprise_learner_errors(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    assert get(url, auth, role="enterprise_admin").status_code == 400
    out_of_range = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid, page=7)
    assert out_of_range.status_code == 404
    assert out_of_range.json() == {"detail": "Invalid page."}
    assert get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid, page="x").status_code == 404
    malformed = get(url, auth, enterprise_customer_uuid="not-a-uuid", role="enterprise_admin")
    assert malformed.status_code == 500  # contract 3.3
    assert "Server Error (500)" in malformed.text


def test_admin_of_two_enterprises_has_two_records(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    records = []
    for slug in (WAYNE, CYBERDYNE):
        body = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(slug).uuid, role="enterprise_admin").json()
        records += [r for r in body["results"] if r["user"]["id"] == SHARED_ADMIN_LMS_USER_ID]
    assert len(records) == 2
    assert records[0]["id"] != records[1]["id"]
    assert records[0]["enterprise_customer"]["uuid"] != records[1]["enterprise_customer"]["uuid"]


# -------------------------------------------------------------------------------------- license-manager 2.1
def test_subscriptions_of_one_enterprise_are_active_only(
    lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    body = get(f"{lm.url}/api/v1/subscriptions/", auth, enterprise_customer_uuid=ds.customer_by_slug(ACME).uuid).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert [plan["title"] for plan in body["results"]] == ["Acme Analytics 2025 Enterprise"]
    plan = body["results"][0]
    expected_fields = {
        "uuid",
        "title",
        "start_date",
        "expiration_date",
        "enterprise_customer_uuid",
        "enterprise_catalog_uuid",
        "is_active",
        "is_current",
        "is_revocation_cap_enabled",
        "days_until_expiration",
        "days_until_expiration_including_renewals",
        "is_locked_for_renewal_processing",
        "should_auto_apply_licenses",
        "created",
        "plan_type",
        "salesforce_opportunity_line_item",
        "licenses",
        "revocations",
        "prior_renewals",
    }
    assert set(plan) == expected_fields
    assert plan["licenses"] == {
        "activated": 120,
        "assigned": 6,
        "unassigned": 5,
        "revoked": 4,
        "total": 131,
        "allocated": 126,
    }
    assert plan["is_current"] is True
    assert plan["days_until_expiration"] == 10
    assert plan["expiration_date"].endswith("Z")
    assert plan["start_date"].endswith("Z")


def test_all_subscriptions_feed_includes_inactive_and_paginates(ds: Dataset, lms: LmsStandIn) -> None:
    with LicenseManagerStandIn(ds, lms.registry, clock=lambda: NOW, plan_page_size=4) as lm:
        auth = {"Authorization": f"JWT {fetch_token(lms).json()['access_token']}"}
        pages = follow(f"{lm.url}/api/v1/subscriptions/", auth, page_size=500)  # page_size is not honoured
        assert all(len(page["results"]) <= 4 for page in pages)
        plans = [plan for page in pages for plan in page["results"]]
        assert len(plans) == len(ds.plans) == pages[0]["count"]
        assert any(plan["is_active"] is False for plan in plans)
        starts = [plan["start_date"] for plan in plans]
        assert starts == sorted(starts, reverse=True)


def plan_json(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str], title: str) -> dict[str, Any]:
    """A plan as the enterprise's plans list renders it."""
    plan = ds.plan_by_title(title)
    url = f"{lm.url}/api/v1/subscriptions/"
    plans = get(url, auth, enterprise_customer_uuid=plan.enterprise_customer_uuid).json()["results"]
    return next(p for p in plans if p["uuid"] == plan.uuid)


def test_plan_licenses_counts_follow_runtime_changes(
    lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    title = "Hooli Auto-Apply (not provisioned)"
    plan = ds.plan_by_title(title)
    assert plan_json(lm, ds, auth, title)["licenses"]["total"] == 0
    ds.add_licenses(plan.uuid, "activated", 3)
    ds.add_licenses(plan.uuid, "revoked", 2)
    ds.add_licenses(plan.uuid, "unassigned", 1)
    counts = plan_json(lm, ds, auth, title)["licenses"]
    assert counts == {"activated": 3, "assigned": 0, "unassigned": 1, "revoked": 2, "total": 4, "allocated": 3}


def test_clock_drives_is_current_and_days(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    title = "Acme Analytics 2025 Enterprise"
    lm.set_now(NOW + timedelta(days=11))
    body = plan_json(lm, ds, auth, title)
    assert body["is_current"] is False
    assert body["days_until_expiration"] == -1
    lm.set_now(NOW + timedelta(days=9, hours=2))  # 23 hours left
    assert plan_json(lm, ds, auth, title)["days_until_expiration"] == 0  # whole days, rounded down, like upstream


def test_renewal_is_visible_from_both_plans(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    old = plan_json(lm, ds, auth, "Umbrella Health 2025")
    new = plan_json(lm, ds, auth, "Umbrella Health 2025 - Renewal")
    assert old["days_until_expiration"] == 20
    assert old["days_until_expiration_including_renewals"] == new["days_until_expiration"] == 385
    assert new["prior_renewals"] == [
        {
            "prior_subscription_plan_id": old["uuid"],
            "prior_subscription_plan_start_date": old["start_date"],
            "renewed_subscription_plan_id": new["uuid"],
            "renewed_subscription_plan_start_date": new["start_date"],
        }
    ]
    assert new["is_current"] is False
    # license-manager's prior_renewals lists the renewals that LED TO a plan: the old plan has none.
    assert old["prior_renewals"] == []


def test_an_active_plan_that_expired_is_still_listed_with_its_renewal(
    lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    """Contract 2.4: "active plans only" means is_active only; an active plan expired two days ago is listed."""
    url = f"{lm.url}/api/v1/customer-agreement/"
    [agreement] = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(TYRELL).uuid).json()["results"]
    plans = {p["title"]: p for p in agreement["subscriptions"]}
    old, renewal = plans["Tyrell 2025"], plans["Tyrell 2026 - Renewal"]
    assert (old["is_current"], old["days_until_expiration"]) == (False, -2)
    assert [r["prior_subscription_plan_id"] for r in renewal["prior_renewals"]] == [old["uuid"]]
    assert renewal["is_current"] is True
    globex = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(GLOBEX).uuid).json()["results"][0]
    assert "Globex University Summer School" not in {p["title"] for p in globex["subscriptions"]}  # inactive


# -------------------------------------------------------------------------------------- license-manager 2.2
def test_customer_agreement(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lm.url}/api/v1/customer-agreement/"
    initech = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(INITECH).uuid).json()
    assert initech["count"] == 1
    agreement = initech["results"][0]
    assert agreement["disable_expiration_notifications"] is True
    assert "enterprise_customer_name" not in agreement
    assert "name" not in agreement
    acme_uuid = ds.customer_by_slug(ACME).uuid
    active_only = get(url, auth, enterprise_customer_uuid=acme_uuid).json()["results"][0]["subscriptions"]
    assert [plan["title"] for plan in active_only] == ["Acme Analytics 2025 Enterprise"]  # not the inactive pilot
    stark = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid).json()["results"][0]
    assert stark["subscription_for_auto_applied_licenses"] == ds.plan_by_title("Stark Learning Auto-Apply").uuid
    unknown = get(url, auth, enterprise_customer_uuid="00000000-0000-4000-8000-000000000000").json()
    assert unknown["count"] == 0
    assert unknown["results"] == []


# -------------------------------------------------------------------------------------- license-manager 2.3
def test_licenses_follow_next_to_the_end(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    plan = ds.plan_by_title("Acme Analytics 2025 Enterprise")
    pages = follow(f"{lm.url}/api/v1/subscriptions/{plan.uuid}/licenses/", auth, page_size=50)
    assert [len(page["results"]) for page in pages] == [50, 50, 35]
    assert {page["num_pages"] for page in pages} == {3}
    licenses = [lic for page in pages for lic in page["results"]]
    assert len({lic["uuid"] for lic in licenses}) == 135
    assert set(licenses[0]) == {
        "uuid",
        "status",
        "user_email",
        "activation_date",
        "last_remind_date",
        "subscription_plan_uuid",
        "revoked_date",
        "activation_key",
    }
    activated = [lic for lic in licenses if lic["status"] == "activated"]
    assert all(lic["activation_date"].endswith("Z") for lic in activated)
    assert "learner017@acme-analytics.example.com" in {lic["user_email"] for lic in activated}
    again = follow(f"{lm.url}/api/v1/subscriptions/{plan.uuid}/licenses", auth, page_size=50)
    assert [lic["uuid"] for page in again for lic in page["results"]] == [lic["uuid"] for lic in licenses]


def test_licenses_page_size_clamps_at_500(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    plan = ds.add_plan(ds.customer_by_slug(ACME).uuid, title="Acme Huge", expires_in_days=60)
    ds.add_licenses(plan.uuid, "activated", 620)
    body = get(f"{lm.url}/api/v1/subscriptions/{plan.uuid}/licenses/", auth, page_size=5000).json()
    assert len(body["results"]) == 500
    assert body["num_pages"] == 2
    assert body["count"] == 620
    default = get(f"{lm.url}/api/v1/subscriptions/{plan.uuid}/licenses/", auth).json()
    assert len(default["results"]) == 100
    assert default["num_pages"] == 7


def test_license_status_filter_takes_a_comma_list(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lm.url}/api/v1/subscriptions/{ds.plan_by_title('Acme Analytics 2025 Enterprise').uuid}/licenses/"
    assert get(url, auth, status="activated", page_size=500).json()["count"] == 120
    both = get(url, auth, status="activated,assigned", page_size=500).json()
    assert both["count"] == 126
    assert {lic["status"] for lic in both["results"]} == {"activated", "assigned"}
    assert get(url, auth, status="expired").json()["count"] == 0
    assert get(url, auth, page=9).json() == {"detail": "Invalid page."}


def test_unknown_plan_has_no_licenses_and_a_malformed_one_crashes(
    lm: LicenseManagerStandIn, auth: dict[str, str]
) -> None:
    """Contract 2.4: an unknown plan's licenses are an empty 200; a malformed plan uuid in the path a 500."""
    unknown = get(f"{lm.url}/api/v1/subscriptions/{'2' * 32}/licenses/", auth)
    assert unknown.status_code == 200
    assert unknown.json() == {"count": 0, "next": None, "previous": None, "num_pages": 1, "results": []}
    assert get(f"{lm.url}/api/v1/subscriptions/{'2' * 32}/licenses/", auth, page=2).status_code == 404
    malformed = get(f"{lm.url}/api/v1/subscriptions/not-a-plan/licenses/", auth)
    assert malformed.status_code == 500
    assert malformed.headers["Content-Type"].startswith("text/html")
    assert "Server Error (500)" in malformed.text
    assert lm.errors == []  # answered on purpose, not a stand-in crash


def test_throttle_answers_429_with_retry_after(lm: LicenseManagerStandIn, auth: dict[str, str]) -> None:
    url = f"{lm.url}/api/v1/subscriptions/"
    lm.throttle(2)
    statuses = [get(url, auth).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    throttled = get(url, auth)
    assert int(throttled.headers["Retry-After"]) >= 1
    lm.throttle(None)
    assert get(url, auth).status_code == 200


# ------------------------------------------------------------------------------------------------ Braze
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", f"JWT {API_KEY}", f"{API_KEY}", "Bearer"], ids=repr
)
def test_braze_requires_bearer_key(braze: BrazeStandIn, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = {"user_aliases": [{"alias_name": "a@example.com", "alias_label": "Enterprise"}]}
    response = requests.post(braze.url + ALIAS, json=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json()["message"].startswith("Invalid API key")
    assert braze.aliases == set()


def test_braze_requires_json_object_bodies(braze: BrazeStandIn) -> None:
    alias = {"user_aliases": [{"alias_name": "a@example.com", "alias_label": "Enterprise"}]}
    assert braze_post(braze, ALIAS, alias, **{"Content-Type": "text/plain"}).status_code == 400
    assert braze_post(braze, ALIAS, [alias]).status_code == 400
    assert braze_post(braze, ALIAS, b"{not json").status_code == 400
    assert braze_post(braze, ALIAS, alias, **{"Content-Type": "application/json; charset=utf-8"}).status_code == 201


def test_braze_alias_limits_and_idempotence(braze: BrazeStandIn) -> None:
    def aliases(count: int) -> dict[str, Any]:
        return {
            "user_aliases": [{"alias_name": f"l{n}@x.example.com", "alias_label": "Enterprise"} for n in range(count)]
        }

    assert braze_post(braze, ALIAS, aliases(0)).status_code == 400
    assert braze_post(braze, ALIAS, aliases(51)).status_code == 400
    assert braze.aliases == set()
    ok = braze_post(braze, ALIAS, aliases(50))
    assert ok.status_code == 201
    assert ok.json() == {"aliases_processed": 50, "message": "success"}
    assert braze_post(braze, ALIAS, aliases(50)).status_code == 201  # existing aliases: accepted
    assert len(braze.aliases) == 50
    assert ("Enterprise", "l0@x.example.com") in braze.aliases
    for bad in ({"alias_name": "x@example.com"}, {"alias_name": "", "alias_label": "Enterprise"}, "x@example.com"):
        assert braze_post(braze, ALIAS, {"user_aliases": [bad]}).status_code == 400


BAD_TRIGGERS: dict[str, dict[str, Any]] = {
    "no campaign_id": {"recipients": [{"external_user_id": "1"}]},
    "campaign_id not a string": {"campaign_id": 7, "recipients": [{"external_user_id": "1"}]},
    "no recipients": {"campaign_id": "c"},
    "empty recipients": {"campaign_id": "c", "recipients": []},
    "51 recipients": {"campaign_id": "c", "recipients": [{"external_user_id": str(n)} for n in range(51)]},
    "broadcast with recipients": {"campaign_id": "c", "broadcast": True, "recipients": [{"external_user_id": "1"}]},
    "both identifiers": {
        "campaign_id": "c",
        "recipients": [{"external_user_id": "1", **valid_alias_recipient("a@example.com")}],
    },
    "no identifier": {"campaign_id": "c", "recipients": [{"trigger_properties": {"a": 1}}]},
    "integer external_user_id": {"campaign_id": "c", "recipients": [{"external_user_id": 3001}]},
    "alias with default send_to_existing_only": {"campaign_id": "c", "recipients": [alias_recipient("a@example.com")]},
    "alias with send_to_existing_only true": {
        "campaign_id": "c",
        "recipients": [alias_recipient("a@example.com", send_to_existing_only=True, attributes={"email": "a"})],
    },
    "send_to_existing_only false without attributes": {
        "campaign_id": "c",
        "recipients": [alias_recipient("a@example.com", send_to_existing_only=False)],
    },
    "alias missing its label": {
        "campaign_id": "c",
        "recipients": [{"user_alias": {"alias_name": "a"}, "send_to_existing_only": False, "attributes": {}}],
    },
    "trigger_properties not an object": {
        "campaign_id": "c",
        "trigger_properties": ["x"],
        "recipients": [{"external_user_id": "1"}],
    },
    "recipient trigger_properties not an object": {
        "campaign_id": "c",
        "recipients": [{"external_user_id": "1", "trigger_properties": "x"}],
    },
    "misspelt key": {"campaign_id": "c", "recipient": [{"external_user_id": "1"}]},
}


@pytest.mark.parametrize("payload", BAD_TRIGGERS.values(), ids=BAD_TRIGGERS.keys())
def test_braze_trigger_rejects(braze: BrazeStandIn, payload: dict[str, Any]) -> None:
    response = braze_post(braze, TRIGGER, payload)
    assert response.status_code == 400
    assert "message" in response.json()
    assert braze.outbox == []


def test_braze_trigger_accepts_50_and_merges_properties(braze: BrazeStandIn) -> None:
    admins = [{"external_user_id": str(3000 + n), "trigger_properties": {"user_name": f"Admin {n}"}} for n in range(49)]
    payload = {
        "campaign_id": "weekly",
        "broadcast": False,
        "trigger_properties": {"enterprise_customer_name": "Stark", "user_name": "default"},
        "recipients": [*admins, valid_alias_recipient("learner001@stark-learning.example.com")],
    }
    response = braze_post(braze, TRIGGER, payload)
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "success"
    assert int(body["dispatch_id"], 16) >= 0
    sent = braze.sent_to("weekly")
    assert len(sent) == 50
    assert sent[0] == ("3000", {"enterprise_customer_name": "Stark", "user_name": "Admin 0"})
    assert sent[-1] == (
        "learner001@stark-learning.example.com",
        {"enterprise_customer_name": "Stark", "user_name": "default"},
    )
    assert braze.sent_to("other-campaign") == []
    assert braze.outbox[0]["dispatch_id"] == body["dispatch_id"]
    second = braze_post(braze, TRIGGER, payload).json()["dispatch_id"]
    assert second != body["dispatch_id"]
    assert braze.request_count(TRIGGER) == 2


def test_braze_known_campaigns() -> None:
    with BrazeStandIn(API_KEY, known_campaigns={"expiring"}) as braze:
        payload = {"campaign_id": "nope", "recipients": [{"external_user_id": "1"}]}
        response = braze_post(braze, TRIGGER, payload)
        assert response.status_code == 400
        assert response.json() == {"message": "Invalid campaign_id"}
        assert braze_post(braze, TRIGGER, {**payload, "campaign_id": "expiring"}).status_code == 201


def test_braze_rate_limit_headers_on_every_reply(braze: BrazeStandIn) -> None:
    payload = {"campaign_id": "c", "recipients": [{"external_user_id": "1"}]}
    first = braze_post(braze, TRIGGER, payload)
    rejected = braze_post(braze, TRIGGER, {"campaign_id": "c"})
    unauthorised = braze_post(braze, TRIGGER, payload, Authorization="Bearer nope")
    for response in (first, rejected, unauthorised):
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= {
            name.lower() for name in response.headers
        }
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
    assert int(first.headers["X-RateLimit-Limit"]) == 250_000
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in (first, rejected)]
    assert remaining[1] in (remaining[0] - 1, 250_000 - 1)  # the second form only if the hour window rolled over


def test_braze_rate_limit_next(braze: BrazeStandIn) -> None:
    payload = {"campaign_id": "c", "recipients": [{"external_user_id": "1"}]}
    braze.rate_limit_next(TRIGGER, reset_in_seconds=2.5, times=2)
    before = time.time()
    limited = braze_post(braze, TRIGGER, payload)
    assert limited.status_code == 429
    assert "X-RateLimit-Reset" in limited.raw.headers  # the name as Braze spells it
    reset = int(limited.headers["x-ratelimit-reset"])  # clients must read headers case-insensitively
    assert math.ceil(before + 2.5) <= reset <= math.ceil(time.time() + 2.5)
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert braze_post(braze, ALIAS, {"user_aliases": [{"alias_name": "a", "alias_label": "b"}]}).status_code == 201
    assert braze_post(braze, TRIGGER, payload).status_code == 429
    assert braze_post(braze, TRIGGER, payload).status_code == 201
    assert len(braze.outbox) == 1


def test_braze_enforces_configured_rate_limits() -> None:
    with BrazeStandIn(API_KEY, rate_limits={TRIGGER: (2, 10**9)}) as braze:
        payload = {"campaign_id": "c", "recipients": [{"external_user_id": "1"}]}
        responses = [braze_post(braze, TRIGGER, payload) for _ in range(3)]
        assert [r.status_code for r in responses] == [201, 201, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["1", "0", "0"]


def test_braze_queued_reply_and_save_outbox(braze: BrazeStandIn, tmp_path: Any) -> None:
    braze.queue_next()
    payload = {"campaign_id": "c", "recipients": [valid_alias_recipient("a@example.com")]}
    queued = braze_post(braze, TRIGGER, payload)
    assert queued.status_code == 202
    assert queued.json() == {"message": "queued"}
    assert braze_post(braze, TRIGGER, payload).status_code == 201
    path = braze.save_outbox(tmp_path / "out" / "outbox.json")
    saved = json.loads(path.read_text())
    assert [entry["dispatch_id"] is None for entry in saved] == [True, False]
    assert saved[1]["recipients"][0]["user_alias"]["alias_name"] == "a@example.com"
    assert saved[0]["received_at"].endswith("Z")


def test_braze_rejected_recipient_fails_the_whole_request_and_minor_errors_are_listed(braze: BrazeStandIn) -> None:
    braze.reject("bad@example.com")
    braze.reject("worse@example.com", alias=True)
    braze.minor_error("quiet@example.com")
    good, bad, quiet = (valid_alias_recipient(f"{n}@example.com") for n in ("good", "bad", "quiet"))
    refused = braze_post(braze, TRIGGER, {"campaign_id": "c", "recipients": [good, bad]})
    assert refused.status_code == 400
    assert "recipients[1]" in refused.json()["message"]
    assert braze.outbox == []
    accepted = braze_post(braze, TRIGGER, {"campaign_id": "c", "recipients": [good, quiet]})
    assert accepted.status_code == 201
    assert accepted.json()["errors"] == ["recipients[1] (quiet@example.com): user is unsubscribed"]
    assert [who for who, _ in braze.sent_to("c")] == ["good@example.com", "quiet@example.com"]
    aliases = [{"alias_name": name, "alias_label": "Enterprise"} for name in ("bad@example.com", "worse@example.com")]
    assert braze_post(braze, "/users/alias/new", {"user_aliases": aliases}).status_code == 400
    assert braze_post(braze, "/users/alias/new", {"user_aliases": aliases[:1]}).status_code == 201


# -------------------------------------------------------------------------------------- fault injection
def test_fail_next_counts_down_and_matches_prefix(lm: LicenseManagerStandIn, auth: dict[str, str]) -> None:
    url = f"{lm.url}/api/v1/subscriptions/"
    lm.fail_next("/api/v1/subscriptions", 503, times=2, headers={"Retry-After": "0"})
    assert get(f"{lm.url}/api/v1/customer-agreement/", auth).status_code == 200  # other prefix untouched
    first, second, third = (get(url, auth) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["Retry-After"] == "0"
    assert "detail" in first.json()
    lm.fail_next("/api/v1/subscriptions", 400, body=b"plain text")
    assert get(url, auth).text == "plain text"
    logged = [r.status for r in lm.requests if r.path.startswith("/api/v1/subscriptions")]
    assert logged == [503, 503, 200, 400]


def test_delay_next_provokes_a_client_timeout(braze: BrazeStandIn) -> None:
    payload = {"campaign_id": "c", "recipients": [{"external_user_id": "1"}]}
    braze.delay_next(TRIGGER, 1.0)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(braze.url + TRIGGER, json=payload, headers=headers, timeout=0.2)
    assert braze_post(braze, TRIGGER, payload).status_code == 201


def test_malformed_next_returns_200_that_is_not_json(lms: LmsStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    lms.malformed_next("/enterprise/api/v1/enterprise-learner")
    response = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid)
    assert response.status_code == 200
    with pytest.raises(ValueError):  # noqa: PT011 - requests' JSONDecodeError is a ValueError
        response.json()
    assert get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid).json()["count"] == 58


def test_request_log_and_routing(lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]) -> None:
    acme = ds.customer_by_slug(ACME).uuid
    get(f"{lm.url}/api/v1/subscriptions", auth, enterprise_customer_uuid=acme)
    recorded = lm.requests[-1]
    assert (recorded.method, recorded.path, recorded.status) == ("GET", "/api/v1/subscriptions", 200)
    assert recorded.query == {"enterprise_customer_uuid": [acme]}
    assert recorded.headers["authorization"].startswith("JWT ")
    assert requests.post(f"{lm.url}/api/v1/subscriptions/", headers=auth, timeout=TIMEOUT).status_code == 405
    assert get(f"{lm.url}/api/v2/nothing/", auth).status_code == 404
    assert lm.request_count("/api/v1/subscriptions", method="POST") == 1


def test_standins_bind_loopback_ephemeral_ports_and_stop() -> None:
    registry = TokenRegistry()
    standin = LicenseManagerStandIn(Dataset(now=NOW), registry).start()
    other = LicenseManagerStandIn(Dataset(now=NOW), registry).start()
    try:
        assert standin.url.startswith("http://127.0.0.1:")
        assert standin.url != other.url
    finally:
        other.stop()
    url = standin.url
    standin.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/api/v1/subscriptions/", timeout=1)


# ------------------------------------------------------------------------ service users with fewer rights
def token_for(lms: LmsStandIn, client_id: str, **rights: bool) -> dict[str, str]:
    lms.add_client(client_id, f"{client_id}-secret", **rights)
    reply = fetch_token(lms, client_id=client_id, client_secret=f"{client_id}-secret")
    return {"Authorization": f"JWT {reply.json()['access_token']}"}


def test_a_staff_user_without_the_operator_role_gets_empty_200s_from_license_manager(
    lms: LmsStandIn, lm: LicenseManagerStandIn, ds: Dataset
) -> None:
    """Contract 2.4: missing permission is an empty 200, not a 403, on the three lists."""
    auth = token_for(lms, "no-operator", operator=False)
    acme = ds.customer_by_slug(ACME).uuid
    plan = ds.plan_by_title("Acme Analytics 2025 Enterprise").uuid
    empty = {"count": 0, "next": None, "previous": None, "results": []}
    for url, params in (
        (f"{lm.url}/api/v1/customer-agreement/", {"enterprise_customer_uuid": acme}),
        (f"{lm.url}/api/v1/subscriptions/", {}),
        (f"{lm.url}/api/v1/subscriptions/", {"enterprise_customer_uuid": acme}),
        (f"{lm.url}/api/v1/subscriptions/{plan}/licenses/", {"status": "activated"}),
    ):
        response = get(url, auth, **params)
        assert (response.status_code, response.json()) == (200, empty), url
    # the LMS side is unaffected: the user is staff
    learners = get(f"{lms.url}/enterprise/api/v1/enterprise-learner/", auth, enterprise_customer_uuid=acme)
    assert learners.json()["count"] > 0


def test_a_user_that_is_not_lms_staff_gets_403s_and_sees_no_enterprise(
    lms: LmsStandIn, lm: LicenseManagerStandIn, ds: Dataset
) -> None:
    """Contract 2.4: only non-staff tokens get 403 on the lists; 3.3 / section 1: the LMS ignores a non-staff
    caller's filters and shows only its own records (a service user has none). The customer detail is a 404
    (contract silent; edx-enterprise's UserFilterBackend limits non-staff users to their own enterprises)."""
    auth = token_for(lms, "not-staff", staff=False)
    stark = ds.customer_by_slug(STARK).uuid
    forbidden = get(f"{lm.url}/api/v1/subscriptions/", auth, enterprise_customer_uuid=stark)
    assert forbidden.status_code == 403
    assert forbidden.json() == {"detail": "You do not have permission to perform this action."}
    learners = get(
        f"{lms.url}/enterprise/api/v1/enterprise-learner/",
        auth,
        enterprise_customer_uuid=stark,
        role="enterprise_admin",
    )
    assert (learners.status_code, learners.json()["count"], learners.json()["results"]) == (200, 0, [])
    assert get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{stark}/", auth).status_code == 404


def test_an_inactive_enterprise_lists_no_admins_and_pages_carry_enterprise_features(
    lms: LmsStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    url = f"{lms.url}/enterprise/api/v1/enterprise-learner/"
    inactive = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(VANDELAY).uuid, role="enterprise_admin")
    assert (inactive.status_code, inactive.json()["count"]) == (200, 0)  # contract 3.3
    page = get(url, auth, enterprise_customer_uuid=ds.customer_by_slug(STARK).uuid, role="enterprise_admin").json()
    assert isinstance(page["enterprise_features"], dict)


def test_admin_users_is_not_the_admin_list_and_contact_email_may_be_null(
    lms: LmsStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    umbrella = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(UMBRELLA).uuid}/", auth)
    listed = {entry["email"] for entry in umbrella.json()["admin_users"]}
    admins = get(
        f"{lms.url}/enterprise/api/v1/enterprise-learner/",
        auth,
        enterprise_customer_uuid=ds.customer_by_slug(UMBRELLA).uuid,
        role="enterprise_admin",
    ).json()["results"]
    assert {a["user"]["email"] for a in admins} < listed  # a removed admin is still in admin_users
    globex = get(f"{lms.url}/enterprise/api/v1/enterprise-customer/{ds.customer_by_slug(GLOBEX).uuid}/", auth)
    assert globex.json()["contact_email"] is None


def test_customer_agreement_lists_inactive_plans_only_when_asked(
    lm: LicenseManagerStandIn, ds: Dataset, auth: dict[str, str]
) -> None:
    url, acme = f"{lm.url}/api/v1/customer-agreement/", ds.customer_by_slug(ACME).uuid
    default = get(url, auth, enterprise_customer_uuid=acme).json()["results"][0]
    every = get(url, auth, enterprise_customer_uuid=acme, active_plans_only="false").json()["results"][0]
    assert "Acme Analytics Pilot" not in {p["title"] for p in default["subscriptions"]}
    assert "Acme Analytics Pilot" in {p["title"] for p in every["subscriptions"]}
    assert default["enable_auto_applied_subscriptions_with_universal_link"] is False  # a field the client ignores
