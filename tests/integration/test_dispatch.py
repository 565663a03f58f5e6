"""Planning a run (the dispatcher's and the CLI's logic): enterprise discovery from license-manager's feed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest import NOW, Upstream
from license_notifications.config import JOB_SETTINGS, Settings, load_settings
from license_notifications.errors import ConfigurationError
from license_notifications.events import DispatchRequest, Job
from license_notifications.jobs.dispatch import plan_run
from license_notifications.services import Services


@pytest.fixture
def services(app_env) -> Services:
    return Services(load_settings())


def plan(services: Services, job: Job, uuids=None, **kwargs):
    request = DispatchRequest(job=job, enterprise_customer_uuids=uuids, as_of=NOW, **kwargs)
    return plan_run(request, services.settings, services.license_manager)


def test_reminders_without_a_list_cover_every_enterprise_with_an_active_plan_expiring_in_the_window(
    upstream: Upstream, services: Services
):
    ds = upstream.dataset
    due, later, inactive, expired = (ds.add_customer(name) for name in ("Due", "Later", "Inactive", "Expired"))
    ds.add_plan(due.uuid, title="due", expires_in_days=10)
    ds.add_plan(due.uuid, title="due too", expires_in_days=20)  # one message per enterprise
    ds.add_plan(later.uuid, title="later", expires_in_days=45)
    ds.add_plan(inactive.uuid, title="inactive", expires_in_days=10, is_active=False)
    ds.add_plan(expired.uuid, title="expired", expires_in_days=-1)
    result, messages = plan(services, Job.EXPIRATION_REMINDERS)
    assert [str(m.enterprise_customer_uuid) for m in messages] == [due.uuid]
    _, wider = plan(services, Job.EXPIRATION_REMINDERS, days_before_expiration=60)
    assert sorted(str(m.enterprise_customer_uuid) for m in wider) == sorted([due.uuid, later.uuid])
    assert result.as_of == NOW


def test_a_given_list_still_limits_the_run(upstream: Upstream, services: Services):
    a, b = upstream.dataset.add_customer("A"), upstream.dataset.add_customer("B")
    for customer in (a, b):
        upstream.dataset.add_plan(customer.uuid, title="p", expires_in_days=10)
    _, messages = plan(services, Job.EXPIRATION_REMINDERS, a.uuid)
    assert [str(m.enterprise_customer_uuid) for m in messages] == [a.uuid]
    feed = [r for r in upstream.license_manager.requests if r.path.rstrip("/") == "/api/v1/subscriptions"]
    assert feed == []  # no discovery when a list is given


@pytest.mark.parametrize("job", list(Job))
@pytest.mark.parametrize(
    ("given", "named"),
    [("", "is empty"), (" ,\t", "is empty"), ([], "is empty"), (["", " "], "is empty"), ("nope x", "invalid: nope, x")],
)
def test_a_given_list_without_a_valid_uuid_is_a_configuration_error_for_every_job(
    upstream: Upstream, services: Services, job: Job, given, named
):
    upstream.dataset.add_plan(upstream.dataset.add_customer("Due").uuid, title="p", expires_in_days=10)
    with pytest.raises(ConfigurationError, match=rf"^No valid enterprise customer UUIDs provided \(.*{named}"):
        plan(services, job, given)
    assert upstream.license_manager.request_count() == 0  # only None discovers


@pytest.mark.parametrize("job", list(Job))
def test_an_empty_feed_is_reported_as_the_permission_problem_it_likely_is(services: Services, job: Job):
    with pytest.raises(ConfigurationError, match="enterprise_openedx_operator"):
        plan(services, job)


def test_a_feed_with_plans_but_none_due_is_an_empty_run(upstream: Upstream, services: Services):
    customer = upstream.dataset.add_customer("Far")
    upstream.dataset.add_plan(customer.uuid, title="far", expiration_date=NOW + timedelta(days=300))
    result, messages = plan(services, Job.EXPIRATION_REMINDERS)
    assert messages == []
    assert result.enterprise_customer_uuids == []


@pytest.mark.parametrize("job", list(Job))
def test_each_jobs_required_settings_are_named_before_anything_is_planned(app_env, job: Job):
    for setting in JOB_SETTINGS[job]:
        alias = Settings.model_fields[setting].alias
        env = {k: v for k, v in app_env.items() if k != alias}
        settings = load_settings(env)
        with pytest.raises(ConfigurationError, match=alias):
            plan_run(DispatchRequest(job=job), settings, Services(settings).license_manager)
        with pytest.raises(ConfigurationError, match=alias):
            Services(settings).job_for(job)
