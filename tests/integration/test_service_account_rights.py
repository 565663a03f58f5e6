"""A service account with fewer rights than it needs, against stand-ins that answer as the real services did
(contract 2.4 / 3.3): the run never succeeds silently, and the error names the right to check."""

from __future__ import annotations

import pytest

from conftest import NOW, Upstream
from license_notifications.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, run


@pytest.fixture
def due_enterprise(upstream: Upstream):
    customer = upstream.dataset.add_customer("Rights")
    plan = upstream.dataset.add_plan(customer.uuid, title="Rights plan", expires_in_days=10)
    upstream.dataset.add_licenses(plan.uuid, "activated", 3, "rights{n:03d}@example.com")
    return customer


def use_client(upstream: Upstream, monkeypatch: pytest.MonkeyPatch, client_id: str, **rights: bool) -> None:
    upstream.lms.add_client(client_id, f"{client_id}-secret", **rights)
    monkeypatch.setenv("OAUTH_CLIENT_ID", client_id)
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", f"{client_id}-secret")


def reminders(*args: str):
    return run(["expiration-reminders", "--as-of", NOW.isoformat(), *args])


def test_the_full_rights_client_sends(app_env, upstream: Upstream, due_enterprise):
    code, summary = reminders("--enterprise-customer-uuid", due_enterprise.uuid)
    assert (code, summary.sent) == (EXIT_OK, 3)


def test_without_the_operator_role_discovery_stops_and_names_the_role(
    app_env, upstream: Upstream, due_enterprise, monkeypatch, caplog
):
    use_client(upstream, monkeypatch, "no-operator", operator=False)
    code, summary = reminders()
    assert (code, summary) == (EXIT_USAGE, None)
    assert "enterprise_openedx_operator" in caplog.text
    assert upstream.braze.requests == []


def test_without_the_operator_role_a_named_enterprise_fails_and_names_the_role(
    app_env, upstream: Upstream, due_enterprise, monkeypatch
):
    use_client(upstream, monkeypatch, "no-operator", operator=False)
    code, summary = reminders("--enterprise-customer-uuid", due_enterprise.uuid)
    assert code == EXIT_FAILURES
    (outcome,) = summary.outcomes
    assert "enterprise_openedx_operator" in outcome.error
    assert upstream.braze.requests == []


def test_a_service_user_that_is_not_lms_staff_stops_the_run_and_names_what_to_fix(
    app_env, upstream: Upstream, due_enterprise, monkeypatch, caplog
):
    """license-manager answers a non-staff caller's lists with 403 (contract 2.4): the account's problem, not
    one enterprise's, so the run stops as a configuration error (exit 2) instead of failing every enterprise."""
    use_client(upstream, monkeypatch, "not-staff", staff=False)
    code, summary = reminders("--enterprise-customer-uuid", due_enterprise.uuid)
    assert code == EXIT_USAGE
    assert summary.outcomes == []  # stopped at the first enterprise, before any send
    assert "LMS staff" in caplog.text
    assert "enterprise_openedx_operator" in caplog.text
    assert upstream.braze.requests == []
