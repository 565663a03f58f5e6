"""The ``license-notifications`` command: same planning and logic as the Lambdas, inline; exit status."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import NOW, REMINDER_CAMPAIGN, Upstream, fully_allocated_enterprise
from license_notifications.cli import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, build_parser, run

ROOT = Path(__file__).resolve().parents[2]


def enterprise(up: Upstream, name: str, *, activated=3, expires_in_days=10, **kwargs):
    customer = up.dataset.add_customer(name, **kwargs)
    plan = up.dataset.add_plan(customer.uuid, title=f"{name} plan", expires_in_days=expires_in_days)
    up.dataset.add_licenses(plan.uuid, "activated", activated, f"{name.lower()}{{n:03d}}@example.com")
    return customer


def cli(*args: str):
    return run(["expiration-reminders", *args])


def test_sends_for_several_enterprises_and_exits_zero(app_env, upstream: Upstream):
    a, b = enterprise(upstream, "Alpha"), enterprise(upstream, "Beta", activated=2)
    code, summary = cli("--enterprise-customer-uuid", f"{a.uuid} {b.uuid}", "--as-of", NOW.isoformat())
    assert code == EXIT_OK
    assert summary.sent == 5
    assert Counter(p["enterprise_customer_name"] for _, p in upstream.braze.sent_to(REMINDER_CAMPAIGN)) == {
        "Alpha": 3,
        "Beta": 2,
    }


def test_a_failed_enterprise_does_not_stop_the_others_but_exits_non_zero(app_env, upstream: Upstream):
    bad = enterprise(upstream, "Gone")
    bad.active = False
    good = enterprise(upstream, "Fine")
    code, summary = cli("--enterprise-customer-uuid", f"{bad.uuid},{good.uuid}", "--as-of", NOW.isoformat())
    assert code == EXIT_FAILURES
    assert summary.sent == 3
    assert summary.failed == 1


def test_invalid_uuid_is_reported_valid_ones_still_run_and_exit_is_non_zero(app_env, upstream: Upstream, caplog):
    good = enterprise(upstream, "Fine")
    code, summary = cli("--enterprise-customer-uuid", f"{good.uuid},bogus", "--as-of", NOW.isoformat())
    assert code == EXIT_FAILURES
    assert summary.sent == 3
    assert summary.invalid_uuids == ["bogus"]
    assert "bogus" in caplog.text


def test_no_valid_uuid_is_a_usage_error_and_sends_nothing(app_env, upstream: Upstream, caplog):
    code, summary = cli("--enterprise-customer-uuid", "bogus, nope")
    assert (code, summary) == (EXIT_USAGE, None)
    assert "No valid enterprise customer UUIDs" in caplog.text
    assert upstream.braze.request_count() == 0


def job_commands() -> list[str]:
    """Every job subcommand (those taking an enterprise list and ``--as-of``), so a new job is covered too."""
    (subparsers,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = [
        name
        for name, parser in subparsers.choices.items()
        if {"--enterprise-customer-uuid", "--as-of"} <= set(parser._option_string_actions)
    ]
    assert {"expiration-reminders", "utilization"} <= set(commands)
    return commands


@pytest.mark.parametrize("command", job_commands())
@pytest.mark.parametrize("given", ["", " ", ",", " , ,"])
def test_an_empty_enterprise_list_is_a_usage_error_not_a_run_over_discovered_enterprises(
    app_env, upstream: Upstream, caplog, command, given
):
    enterprise(upstream, "Due")  # discovery would find these (reminders, utilization): nothing may be sent
    fully_allocated_enterprise(upstream)
    code, summary = run([command, "--enterprise-customer-uuid", given, "--as-of", NOW.isoformat()])
    assert (code, summary) == (EXIT_USAGE, None)
    assert "Configuration error: No valid enterprise customer UUIDs provided" in caplog.text
    assert "enterprise customer(s)" not in caplog.text  # no run started
    assert upstream.braze.request_count() == 0
    assert upstream.license_manager.request_count() == 0  # nothing discovered


def test_missing_campaign_is_a_usage_error_naming_the_setting(app_env, upstream: Upstream, monkeypatch, caplog):
    monkeypatch.delenv("BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN")
    a = enterprise(upstream, "Alpha")
    code, _ = cli("--enterprise-customer-uuid", a.uuid)
    assert code == EXIT_USAGE
    assert "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN" in caplog.text
    assert upstream.braze.request_count() == 0


def test_dry_run_then_real_run(app_env, upstream: Upstream):
    a = enterprise(upstream, "Alpha")
    code, summary = cli("--enterprise-customer-uuid", a.uuid, "--dry-run", "--as-of", NOW.isoformat())
    assert code == EXIT_OK
    assert summary.outcomes[0].would_send == 3
    assert upstream.braze.request_count() == 0
    code, summary = cli("--enterprise-customer-uuid", a.uuid, "--as-of", NOW.isoformat())
    assert summary.sent == 3


def test_as_of_and_days_before_expiration_move_the_window(app_env, upstream: Upstream):
    a = enterprise(upstream, "Alpha", expires_in_days=50)
    _, summary = cli("--enterprise-customer-uuid", a.uuid, "--as-of", NOW.isoformat())
    assert summary.sent == 0
    _, summary = cli("--enterprise-customer-uuid", a.uuid, "--as-of", NOW.isoformat(), "--days-before-expiration", "60")
    assert summary.sent == 3
    assert upstream.braze.outbox[0]["recipients"][0]["trigger_properties"]["days_until_expiration"] == 50


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("yesterday", "ISO-8601"),
        ("2026-03-01T09:00:00", "timezone"),
        ("1767225600", "ISO-8601"),  # an epoch is not read as seconds
        ("9999-12-31T23:59:59Z", "between 2000-01-01T00:00:00Z and 2999-12-31T23:59:59Z"),
        ("9999-12-31T23:00:00-05:00", "between"),
        ("1999-12-31T23:59:59Z", "between"),
    ],
)
def test_as_of_must_be_an_aware_iso_datetime_within_range(bad, says, app_env, upstream: Upstream, capsys):
    a = enterprise(upstream, "Alpha")
    with pytest.raises(SystemExit) as info:
        cli("--enterprise-customer-uuid", a.uuid, "--as-of", bad)
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--as-of" in err
    assert says in err
    assert upstream.braze.request_count() == 0


@pytest.mark.parametrize("as_of", ["2999-12-31T23:59:59Z", "2000-01-01T00:00:00Z"])
def test_the_bounds_of_as_of_run_with_the_widest_window(as_of, app_env, upstream: Upstream):
    a = enterprise(upstream, "Alpha")
    code, summary = cli("--enterprise-customer-uuid", a.uuid, "--as-of", as_of, "--days-before-expiration", "3650")
    assert code == EXIT_OK
    assert summary.outcomes[0].error is None
    code, summary = run(["utilization", "--enterprise-customer-uuid", a.uuid, "--as-of", as_of])
    assert code == EXIT_OK


def test_console_script_prints_the_spec_log_lines(app_env, upstream: Upstream):
    a = enterprise(upstream, "Alpha", activated=2)
    env = {**os.environ, **app_env}
    script = Path(sys.executable).parent / "license-notifications"
    proc = subprocess.run(
        [str(script), "expiration-reminders", "--enterprise-customer-uuid", a.uuid, "--as-of",
         (NOW + timedelta(hours=1)).isoformat()],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "INFO Starting send_license_expiration_reminders command for 1 enterprise customer(s), " in err
    assert f"INFO Found 2 licenses to process for enterprise {a.uuid}" in err
    assert err.count("INFO Successfully sent license expiration reminder to a***@example.com for license") == 2
    assert "Total Success: 2, Total Failures: 0" in err


def test_utilization_command_discovers_and_sends(app_env, upstream: Upstream):
    customer, admin = fully_allocated_enterprise(upstream)
    code, summary = run(["utilization", "--as-of", NOW.isoformat()])
    assert code == EXIT_OK
    assert [o.enterprise_customer_uuid for o in summary.outcomes] == [customer.uuid]
    assert summary.outcomes[0].sent_by_type == {"no_allocations_remaining": 1, "periodic_informational": 1}
    assert {r for r, _ in upstream.braze.sent_to()} == {str(admin.user.id)}
    code, summary = run(["utilization", "--enterprise-customer-uuid", customer.uuid, "--as-of", NOW.isoformat()])
    assert (code, summary.sent) == (EXIT_OK, 0)  # the same day again: nothing twice


def test_reminders_without_a_list_discover_the_enterprises_with_a_plan_in_the_window(app_env, upstream: Upstream):
    due, far = enterprise(upstream, "Due", activated=2), enterprise(upstream, "Far", expires_in_days=90)
    code, summary = cli("--as-of", NOW.isoformat())
    assert code == EXIT_OK
    assert [o.enterprise_customer_uuid for o in summary.outcomes] == [due.uuid]
    assert summary.sent == 2
    assert far.uuid not in {o.enterprise_customer_uuid for o in summary.outcomes}


def test_an_empty_all_plans_feed_is_a_usage_error_naming_the_likely_missing_role(app_env, upstream, caplog):
    code, summary = cli("--as-of", NOW.isoformat())
    assert (code, summary) == (EXIT_USAGE, None)
    assert "enterprise_openedx_operator" in caplog.text


def test_an_out_of_range_window_is_a_usage_error(app_env, caplog):
    code, summary = cli(
        "--enterprise-customer-uuid", "00000000-0000-4000-8000-000000000000", "--days-before-expiration", "0"
    )
    assert (code, summary) == (EXIT_USAGE, None)
    assert "days_before_expiration" in caplog.text


def test_a_rejected_oauth_client_stops_the_run_with_a_summary(app_env, upstream: Upstream, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    a, b = enterprise(upstream, "Alpha"), enterprise(upstream, "Beta")
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "wrong")
    code, summary = cli("--enterprise-customer-uuid", f"{a.uuid},{b.uuid}", "--as-of", NOW.isoformat())
    assert code == EXIT_USAGE
    assert summary is not None
    assert summary.sent == 0
    assert "run stopped after 0 enterprise(s)" in caplog.text
    assert "Total Success: 0" in caplog.text
