"""Configuration validation and the service's own input models (dispatcher event, work message)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from license_notifications.config import load_settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage, parse_enterprise_uuids
from license_notifications.jobs.dispatch import plan_run
from license_notifications.services import Services

BASE_ENV = {
    "LICENSE_MANAGER_URL": "http://127.0.0.1:1/",
    "LMS_URL": "http://127.0.0.1:2",
    "OAUTH_CLIENT_ID": "client",
    "OAUTH_CLIENT_SECRET": "secret",
    "BRAZE_API_URL": "http://127.0.0.1:3",
    "BRAZE_API_KEY": "key",
    "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": "campaign-1",
}
UUID_A = "3f1e2d4c-1111-4a6b-8c9d-0123456789ab"
UUID_B = "9a8b7c6d-2222-4e5f-a1b2-c3d4e5f60718"


def test_valid_settings_normalise_urls_and_default_oauth_to_lms():
    settings = load_settings(BASE_ENV)
    assert settings.license_manager_url == "http://127.0.0.1:1"
    assert settings.oauth_url == "http://127.0.0.1:2"
    assert settings.resolve_braze_api_key() == "key"
    assert settings.log_full_emails is False


@pytest.mark.parametrize("name", ["LICENSE_MANAGER_URL", "LMS_URL", "OAUTH_CLIENT_ID", "BRAZE_API_URL"])
def test_missing_setting_is_named(name):
    env = {k: v for k, v in BASE_ENV.items() if k != name}
    with pytest.raises(ConfigurationError, match=name):
        load_settings(env)


def test_blank_setting_counts_as_missing():
    with pytest.raises(ConfigurationError, match="LMS_URL"):
        load_settings({**BASE_ENV, "LMS_URL": "  "})


def test_malformed_url_is_named():
    with pytest.raises(ConfigurationError, match=r"BRAZE_API_URL.*http"):
        load_settings({**BASE_ENV, "BRAZE_API_URL": "rest.iad-06.braze.com"})


@pytest.mark.parametrize(
    ("drop", "message"),
    [("OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET_ARN"), ("BRAZE_API_KEY", "BRAZE_API_KEY_SECRET_ARN")],
)
def test_a_secret_needs_a_value_or_an_arn(drop, message):
    env = {k: v for k, v in BASE_ENV.items() if k != drop}
    with pytest.raises(ConfigurationError, match=message):
        load_settings(env)


def test_malformed_number_is_named():
    with pytest.raises(ConfigurationError, match="HTTP_MAX_ATTEMPTS"):
        load_settings({**BASE_ENV, "HTTP_MAX_ATTEMPTS": "many"})


def test_a_claim_lease_shorter_than_the_slowest_send_is_refused():
    env = {**BASE_ENV, "HTTP_MAX_ATTEMPTS": "10", "HTTP_MAX_WAIT_SECONDS": "120", "CLAIM_LEASE_SECONDS": "1200"}
    with pytest.raises(ConfigurationError, match="CLAIM_LEASE_SECONDS"):
        load_settings(env)
    assert load_settings({**env, "CLAIM_LEASE_SECONDS": "5000"}).claim_lease_seconds == 5000


def test_missing_campaign_is_named_before_anything_is_planned():
    settings = load_settings({k: v for k, v in BASE_ENV.items() if "CAMPAIGN" not in k})
    request = DispatchRequest(job=Job.EXPIRATION_REMINDERS, enterprise_customer_uuids=UUID_A)
    with pytest.raises(ConfigurationError, match="BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN"):
        plan_run(request, settings, Services(settings).license_manager)


@pytest.mark.parametrize(
    "raw",
    [f"{UUID_A},{UUID_B}", f"{UUID_A} {UUID_B}", f" {UUID_A} ,\n{UUID_B} ", [UUID_A, UUID_B], [f"{UUID_A},{UUID_B}"]],
)
def test_uuid_lists_accept_commas_spaces_and_lists(raw):
    assert parse_enterprise_uuids(raw) == ([UUID_A, UUID_B], [])


def test_invalid_uuids_are_reported_and_duplicates_dropped():
    valid, invalid = parse_enterprise_uuids(f"{UUID_A.upper()},not-a-uuid,{UUID_A},1234")
    assert valid == [UUID_A]
    assert invalid == ["not-a-uuid", "1234"]


def test_no_valid_uuid_is_a_configuration_error_naming_the_bad_ones():
    settings = load_settings(BASE_ENV)
    request = DispatchRequest(job=Job.EXPIRATION_REMINDERS, enterprise_customer_uuids="nope, nada")
    with pytest.raises(ConfigurationError, match=r"No valid enterprise customer UUIDs.*nope, nada"):
        plan_run(request, settings, Services(settings).license_manager)


def test_plan_run_fixes_one_as_of_and_run_id_for_every_message():
    settings = load_settings(BASE_ENV)
    as_of = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    request = DispatchRequest(
        job=Job.EXPIRATION_REMINDERS,
        enterprise_customer_uuids=f"{UUID_A} bad {UUID_B}",
        days_before_expiration=45,
        dry_run=True,
        as_of=as_of,
    )
    result, messages = plan_run(request, settings, Services(settings).license_manager)
    assert result.invalid_enterprise_customer_uuids == ["bad"]
    assert [str(m.enterprise_customer_uuid) for m in messages] == [UUID_A, UUID_B]
    assert {m.as_of for m in messages} == {as_of}
    assert {m.run_id for m in messages} == {result.run_id}
    assert result.run_id.startswith("license_expiration_reminders:20260301T090000Z:")
    assert all(m.dry_run and m.days_before_expiration == 45 for m in messages)


def test_dispatch_request_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError, match="dry_rn"):
        DispatchRequest.model_validate({"job": "license_expiration_reminders", "dry_rn": True})
    with pytest.raises(ValidationError, match="job"):
        DispatchRequest.model_validate({"job": "send_everything"})
    with pytest.raises(ValidationError, match="days_before_expiration"):
        DispatchRequest.model_validate({"job": "license_expiration_reminders", "days_before_expiration": 0})
    with pytest.raises(ValidationError, match="as_of"):
        DispatchRequest.model_validate({"job": "license_expiration_reminders", "as_of": "2026-03-01T09:00:00"})


def test_work_message_round_trips_through_json():
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS,
        run_id="r1",
        enterprise_customer_uuid=UUID_A,
        as_of=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert WorkMessage.model_validate_json(message.model_dump_json()) == message
