"""The sample events in events/ parse as the handlers will parse them (sam local invoke -e, manual invokes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from devstack.aws import load_template
from devstack.dataset import build_sample_dataset

from license_notifications.config import Settings
from license_notifications.events import DispatchRequest, WorkMessage, parse_enterprise_uuids

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize("path", sorted(EVENTS.glob("dispatcher-*.json")), ids=lambda p: p.name)
def test_dispatcher_events_are_valid_requests_naming_sample_enterprises(path: Path):
    request = DispatchRequest.model_validate(json.loads(path.read_text()))
    valid, invalid = parse_enterprise_uuids(request.enterprise_customer_uuids)
    assert invalid == []
    sample = set(build_sample_dataset(request.as_of or datetime.now(UTC)).customers)  # uuids do not depend on the date
    assert set(valid) <= sample


@pytest.mark.parametrize("path", sorted(EVENTS.glob("worker-sqs-*.json")), ids=lambda p: p.name)
def test_worker_events_carry_valid_work_messages(path: Path):
    event = json.loads(path.read_text())
    assert event["Records"], "an SQS event needs records"
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        message = WorkMessage.model_validate_json(record["body"])
        assert message.dry_run, "sample worker events stay dry runs: safe to invoke against real endpoints"


def test_every_event_file_is_covered():
    covered = set(EVENTS.glob("dispatcher-*.json")) | set(EVENTS.glob("worker-sqs-*.json"))
    assert covered | {EVENTS / "sam-local-env.json"} == set(EVENTS.glob("*.json"))


def test_sam_local_env_names_only_real_settings_for_real_functions():
    """events/sam-local-env.json (sam local invoke --env-vars) uses the template's function ids and the
    configuration model's variable names, so a typo cannot silently leave a setting unset."""
    env = json.loads((EVENTS / "sam-local-env.json").read_text())
    template = load_template()
    assert set(env) == {"DispatcherFunction", "WorkerFunction"} <= set(template["Resources"])
    known = {f.alias for f in Settings.model_fields.values()} | {"POWERTOOLS_TRACE_DISABLED"}
    for variables in env.values():
        assert set(variables) <= known
        assert {"LICENSE_MANAGER_URL", "LMS_URL", "OAUTH_CLIENT_ID", "BRAZE_API_URL"} <= set(variables)
