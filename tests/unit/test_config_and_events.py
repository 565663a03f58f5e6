"""Configuration validation and the service's own input models (dispatcher event, work message)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from license_notifications.clock import AS_OF_MAX, AS_OF_MIN, new_run_id
from license_notifications.config import load_settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job, WorkMessage, parse_enterprise_uuids
from license_notifications.jobs.dispatch import plan_run
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import RECORD_RETENTION
from license_notifications.jobs.utilization import THRESHOLD_RETENTION, WEEKLY_RETENTION
from license_notifications.rules.expiration import MAX_DAYS_BEFORE_EXPIRATION, expiration_window
from license_notifications.rules.utilization import weekly_resend_cutoff
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


# -- as_of: an ISO-8601 string with a timezone, within clock.AS_OF_MIN..AS_OF_MAX --------------------------------

WORK = {"job": "license_expiration_reminders", "run_id": "r1", "enterprise_customer_uuid": UUID_A}
REQUEST = {"job": "license_expiration_reminders"}


@pytest.mark.parametrize(
    "bad",
    [
        1767225600,  # an epoch: pydantic alone would read it as 2026-01-01
        1767225600.0,
        "1767225600",
        True,
        "2026-03-01T09:00:00",  # no timezone
        "next tuesday",
        "9999-12-31T23:59:59Z",  # as_of + the window overflows datetime
        "2999-12-31T23:00:00-01:00",  # 3000-01-01 in UTC
        "9999-12-31T23:00:00-05:00",  # no UTC datetime at all
        "0001-01-01T00:00:00+01:00",
        "1999-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ],
)
@pytest.mark.parametrize("model", [DispatchRequest, WorkMessage])
def test_as_of_must_be_an_iso_string_with_a_timezone_within_range(model, bad):
    base = WORK if model is WorkMessage else REQUEST
    with pytest.raises(ValidationError, match="as_of"):
        model.model_validate({**base, "as_of": bad})
    with pytest.raises(ValidationError, match="as_of"):
        model.model_validate_json(json.dumps({**base, "as_of": bad}))


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("2026-03-01T09:00:00Z", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2026-03-01T10:30:00+01:30", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2000-01-01T00:00:00Z", AS_OF_MIN),
        ("2999-12-31T23:59:59.999999Z", AS_OF_MAX),
    ],
)
@pytest.mark.parametrize("model", [DispatchRequest, WorkMessage])
def test_as_of_is_normalised_to_utc(model, given, utc):
    base = WORK if model is WorkMessage else REQUEST
    for parsed in (
        model.model_validate({**base, "as_of": given}),
        model.model_validate_json(json.dumps({**base, "as_of": given})),
    ):
        assert parsed.as_of == utc
        assert parsed.as_of.utcoffset() == timedelta(0)


def test_as_of_given_from_python_as_a_datetime_is_checked_too():
    assert DispatchRequest(job=Job.UTILIZATION, as_of=AS_OF_MAX).as_of == AS_OF_MAX
    with pytest.raises(ValidationError, match="as_of"):
        DispatchRequest(job=Job.UTILIZATION, as_of=datetime(9999, 12, 31, tzinfo=UTC))
    with pytest.raises(ValidationError, match="timezone"):
        DispatchRequest(job=Job.UTILIZATION, as_of=datetime(2026, 3, 1))


def test_every_date_a_run_derives_from_as_of_is_representable_at_the_bounds():
    """The reason for the bounds: as_of + the widest window, + the ledger's retention, - the digest interval."""
    start, end = expiration_window(AS_OF_MAX, MAX_DAYS_BEFORE_EXPIRATION)
    assert end > start
    assert end + RECORD_RETENTION + THRESHOLD_RETENTION > AS_OF_MAX  # plan expiry in the window + retention
    assert AS_OF_MAX + WEEKLY_RETENTION > AS_OF_MAX
    assert (end + RECORD_RETENTION).timestamp() > 0  # a DynamoDB TTL in epoch seconds
    assert weekly_resend_cutoff(AS_OF_MIN) < AS_OF_MIN
    assert new_run_id("j", AS_OF_MAX).startswith("j:29991231T235959Z:")
    assert AS_OF_MAX + timedelta(days=MAX_DAYS_BEFORE_EXPIRATION + 366) < datetime.max.replace(tzinfo=UTC)
    assert AS_OF_MIN - timedelta(days=366) > datetime.min.replace(tzinfo=UTC)


# -- days_before_expiration: an integer, not a bool, a string or a float ------------------------------------------


@pytest.mark.parametrize("bad", [True, False, "30", 30.0, 30.5, None])
@pytest.mark.parametrize("model", [DispatchRequest, WorkMessage])
def test_days_before_expiration_must_be_an_integer(model, bad):
    base = {**WORK, "as_of": "2026-03-01T09:00:00Z"} if model is WorkMessage else REQUEST
    with pytest.raises(ValidationError, match="days_before_expiration"):
        model.model_validate({**base, "days_before_expiration": bad})
    with pytest.raises(ValidationError, match="days_before_expiration"):
        model.model_validate_json(json.dumps({**base, "days_before_expiration": bad}))
    assert model.model_validate_json(json.dumps({**base, "days_before_expiration": 45})).days_before_expiration == 45


# -- enterprise uuid lists -----------------------------------------------------------------------------------------


def test_a_hundred_thousand_uuids_parse_in_linear_time():
    many = [str(uuid.UUID(int=i)) for i in range(100_000)]
    raw = ",".join(many + many[:10] + ["not-a-uuid"])
    started = time.perf_counter()
    valid, invalid = parse_enterprise_uuids(raw)
    elapsed = time.perf_counter() - started
    assert valid == many
    assert invalid == ["not-a-uuid"]
    assert elapsed < 5, f"{elapsed:.1f}s: de-duplication is not linear"


def test_a_blank_run_id_is_refused_not_stored_as_an_empty_index_key():
    with pytest.raises(ValidationError, match="run_id"):
        WorkMessage(
            job=Job.EXPIRATION_REMINDERS, run_id="   ", enterprise_customer_uuid=UUID_A, as_of="2026-03-01T09:00:00Z"
        )
    message = WorkMessage(
        job=Job.EXPIRATION_REMINDERS, run_id=" r-1 ", enterprise_customer_uuid=UUID_A, as_of="2026-03-01T09:00:00Z"
    )
    assert message.run_id == "r-1"


# -- the post-expiration emails' window, and which jobs are continued by page --------------------------------------


@pytest.mark.parametrize("bad", [True, False, "7", 7.0, 0, 3651, None])
@pytest.mark.parametrize("model", [DispatchRequest, WorkMessage])
def test_days_since_expiration_must_be_an_integer_in_range(model, bad):
    base = {**WORK, "as_of": "2026-03-01T09:00:00Z"} if model is WorkMessage else REQUEST
    with pytest.raises(ValidationError, match="days_since_expiration"):
        model.model_validate_json(json.dumps({**base, "days_since_expiration": bad}))
    assert model.model_validate_json(json.dumps({**base, "days_since_expiration": 3})).days_since_expiration == 3
    assert model.model_validate({**base}).days_since_expiration == 7  # license-manager's default


def test_the_post_expiration_window_is_carried_from_the_request_to_every_message_and_run():
    settings = load_settings({**BASE_ENV, "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN": "campaign-2"})
    request = DispatchRequest(
        job=Job.PLAN_EXPIRATION_EMAILS, enterprise_customer_uuids=f"{UUID_A} {UUID_B}", days_since_expiration=3
    )
    result, messages = plan_run(request, settings, Services(settings).license_manager)
    assert result.run_id.startswith("subscription_plan_expiration_emails:")
    assert [m.days_since_expiration for m in messages] == [3, 3]
    assert JobRun.from_message(messages[0]).days_since_expiration == 3
    continued = messages[0].continuation(UUID_B, 5, None)
    assert (continued.job, continued.days_since_expiration, continued.first_page) == (Job.PLAN_EXPIRATION_EMAILS, 3, 5)


def test_the_post_expiration_campaign_is_required_for_that_job_only():
    settings = load_settings(BASE_ENV)
    request = DispatchRequest(job=Job.PLAN_EXPIRATION_EMAILS, enterprise_customer_uuids=UUID_A)
    with pytest.raises(ConfigurationError, match="BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN"):
        plan_run(request, settings, Services(settings).license_manager)
    reminders = DispatchRequest(job=Job.EXPIRATION_REMINDERS, enterprise_customer_uuids=UUID_A)
    assert plan_run(reminders, settings, Services(settings).license_manager)[1]  # planned without it


@pytest.mark.parametrize(
    ("job", "continued"),
    [(Job.EXPIRATION_REMINDERS, True), (Job.PLAN_EXPIRATION_EMAILS, True), (Job.UTILIZATION, False)],
)
def test_only_the_learner_jobs_are_continued_by_plan_and_page(job, continued):
    fields = {**WORK, "job": job.value, "as_of": "2026-03-01T09:00:00Z", "plan_uuid": UUID_B, "first_page": 5}
    if continued:
        assert WorkMessage.model_validate(fields).first_page == 5
    else:
        with pytest.raises(ValidationError, match="continued by plan and page"):
            WorkMessage.model_validate(fields)


def test_the_widest_post_expiration_window_stays_representable_at_the_lower_bound():
    from license_notifications.rules.plan_expiration import MAX_DAYS_SINCE_EXPIRATION, expired_window

    start, end = expired_window(AS_OF_MIN, MAX_DAYS_SINCE_EXPIRATION)
    assert start < end == AS_OF_MIN
    assert start > datetime.min.replace(tzinfo=UTC)


def test_a_post_expiration_record_outlives_every_run_that_could_still_find_its_license_due():
    """DynamoDB deletes a record once its TTL passed; a license whose record is gone while it is still due would be
    emailed again. It is due until its plan expired days_since_expiration ago (at most the widest window)."""
    from license_notifications.jobs.plan_expiration_emails import RECORD_RETENTION
    from license_notifications.rules.plan_expiration import MAX_DAYS_SINCE_EXPIRATION, expired_in_window

    expiry = datetime(2026, 3, 1, 9, tzinfo=UTC)
    last_due = expiry + timedelta(days=MAX_DAYS_SINCE_EXPIRATION) - timedelta(microseconds=1)
    assert expired_in_window(expiry, last_due, MAX_DAYS_SINCE_EXPIRATION)
    assert expiry + RECORD_RETENTION >= last_due + timedelta(days=90)
