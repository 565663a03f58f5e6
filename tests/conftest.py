"""Shared pytest fixtures.

Sections are owned by topic; add new fixtures in a section of their own.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from devstack.aws import (
    MotoStack,
    StackResources,
    create_resources_from_template,
    create_tables_from_template,
    load_template,
)
from devstack.dataset import Dataset
from devstack.dynamodb_local import DynamoDBLocal
from devstack.standins import BrazeStandIn, LicenseManagerStandIn, LmsStandIn
from hypothesis import settings as hypothesis_settings

from license_notifications.adapters.oauth import clear_token_cache
from license_notifications.jobs.enterprise_run import JobRun

# Hypothesis: no per-example deadline. The properties are checked exhaustively enough by their example counts;
# a wall-clock deadline only measures how loaded the (2-core) CI machine happens to be.
hypothesis_settings.register_profile("project", deadline=None)
hypothesis_settings.load_profile("project")

# =====================================================================================================
# AWS (moto) fixtures -- devstack/aws.py
#
#   moto_stack     session: one moto server on 127.0.0.1 (free port) for the whole run.
#   aws_resources  function: fresh table / queues / topic created from template.yaml with a unique name
#                  suffix, and an environment that sends every boto3 / pynamodb / Powertools client created
#                  inside the test to moto (AWS_ENDPOINT_URL, region, fake credentials, no ~/.aws) plus the
#                  resource env vars the functions get (LEDGER_TABLE_NAME, WORK_QUEUE_URL, ERROR_TOPIC_ARN).
#
# Do not use moto's mock_aws in a test that uses these: it resets the backends this server serves.
# =====================================================================================================

# Environment variables that would send clients elsewhere or override the fake credentials.
_AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@pytest.fixture(scope="session")
def moto_stack() -> Iterator[MotoStack]:
    """A moto server (all services) for the test session; DynamoDB requests are serialised like real
    DynamoDB's per-item atomicity (see devstack.aws.MotoStack)."""
    with MotoStack() as stack:
        yield stack


@pytest.fixture
def aws_resources(moto_stack: MotoStack, monkeypatch: pytest.MonkeyPatch) -> StackResources:
    """The template's resources, fresh for this test, and the environment pointing at them."""
    for name in list(os.environ):
        if name in _AWS_ENV_TO_CLEAR or name.startswith("AWS_ENDPOINT_URL_"):
            monkeypatch.delenv(name)
    for name, value in moto_stack.env().items():
        monkeypatch.setenv(name, value)
    resources = create_resources_from_template(moto_stack.endpoint_url, suffix=f"-{uuid.uuid4().hex[:10]}")
    for name, value in resources.lambda_env().items():
        monkeypatch.setenv(name, value)
    return resources


# ===================================================================================== end AWS (moto)


# =====================================================================================================
# The ledger's engines: moto and AWS's DynamoDB Local -- devstack/dynamodb_local.py
#
#   dynamodb_local  session: DynamoDB Local (installed by `make dynamodb-local`, which `make test` runs) on a
#                   free port, started once, stopped by its pid at the end of the session.
#   ledger_engine   function, parametrized "moto" / "dynamodb-local": on top of aws_resources, the engine the
#                   ledger's table lives on. For "dynamodb-local" the template's tables are created there
#                   under the same names and AWS_ENDPOINT_URL_DYNAMODB sends every DynamoDB client of the test
#                   (the ledger, pynamodb, report) there, while SQS, SNS and Secrets Manager stay on moto.
#                   A test that needs an engine's own behaviour asks ``ledger_engine.name``.
#                   Its tables have no TTL (``without_ttl``); the demo, the soak and the benchmark run on the
#                   wall clock with the template's TTL on, as deployed.
# =====================================================================================================


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as engine:
        yield engine


@dataclass(frozen=True)
class LedgerEngine:
    name: str  # "moto" or "dynamodb-local"
    endpoint_url: str
    client: Any  # a boto3 DynamoDB client on that engine
    table: str  # the ledger table's name (LEDGER_TABLE_NAME)


ENGINES = ["moto", "dynamodb-local"]


@pytest.fixture(params=ENGINES)
def ledger_engine(
    request: pytest.FixtureRequest, aws_resources: StackResources, moto_stack: MotoStack, monkeypatch
) -> Iterator[LedgerEngine]:
    if request.param == "moto":
        engine = LedgerEngine("moto", moto_stack.endpoint_url, moto_stack.client("dynamodb"),
                              aws_resources.ledger_table_name)  # fmt: skip
        tables = aws_resources.tables
    else:
        local: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
        tables = create_tables_from_template(local.endpoint_url, without_ttl(), suffix=aws_resources.suffix)
        assert tables == aws_resources.tables  # the same names the functions' environment holds
        _drop_tables(moto_stack.client("dynamodb"), tables.values())  # a client still on moto would fail
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local.endpoint_url)
        engine = LedgerEngine("dynamodb-local", local.endpoint_url, local.client(), tables["LedgerTable"])
    yield engine
    # gone afterwards: a session's engine would otherwise hold every test's tables (moto's first page of
    # ListTables holds 100, and tests/test_template.py reads only that page)
    _drop_tables(engine.client, tables.values())


def without_ttl() -> dict[str, Any]:
    """template.yaml without the tables' TTL. The tests' clock (``NOW``, 2026-03-01) lies before the wall clock,
    so every record they write has expired by DynamoDB's TTL (``expires_at``, epoch seconds, wall clock), and
    DynamoDB Local deletes expired items, at times within the test (moto never does; AWS within days): with
    TTL on, test_ledger's import tests on DynamoDB Local failed 4 runs of 5 (20 of 150 records gone a moment
    after they were written); a plain table of the same engine deleted a long-expired item within about a
    second. Without TTL, 0 failures in 8 runs. test_ledger.py pins what each engine does with expired records."""
    template = load_template()
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::DynamoDB::Table":
            resource.get("Properties", {}).pop("TimeToLiveSpecification", None)
    return template


def _drop_tables(dynamodb: Any, names: Iterable[str]) -> None:
    for name in names:
        dynamodb.update_table(TableName=name, DeletionProtectionEnabled=False)
        dynamodb.delete_table(TableName=name)


# ===================================================================================== end engines


# =====================================================================================================
# Upstream stand-ins and the app's settings pointing at them -- devstack/standins
#
#   upstream   function: LMS (+OAuth2), license-manager and Braze stand-ins on 127.0.0.1, serving an empty
#              Dataset (tests add what they need) with ``now`` = NOW.
#   app_env    function: the environment the app reads (upstream URLs, credentials, campaign ids, fast
#              retries), on top of aws_resources; returns the dict it set.
# =====================================================================================================

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BRAZE_KEY = "braze-test-key"
REMINDER_CAMPAIGN = "campaign-expiration-reminder"
LIMITED_CAMPAIGN = "campaign-limited-allocations"
NO_ALLOCATIONS_CAMPAIGN = "campaign-no-allocations"
WEEKLY_CAMPAIGN = "campaign-weekly-utilization"
PLAN_EXPIRATION_CAMPAIGN = "campaign-plan-expiration"
ADMIN_PORTAL = "https://portal.example.com"


@dataclass
class Upstream:
    dataset: Dataset
    lms: LmsStandIn
    license_manager: LicenseManagerStandIn
    braze: BrazeStandIn


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    clear_token_cache()
    dataset = Dataset(now=NOW)
    lms = LmsStandIn(dataset).start()
    lm = LicenseManagerStandIn(dataset, lms.registry, clock=lambda: NOW).start()
    braze = BrazeStandIn(BRAZE_KEY).start()
    try:
        yield Upstream(dataset, lms, lm, braze)
    finally:
        for standin in (braze, lm, lms):
            standin.stop()
        clear_token_cache()


def upstream_env(up: Upstream) -> dict[str, str]:
    return {
        "LICENSE_MANAGER_URL": up.license_manager.url,
        "LMS_URL": up.lms.url,
        "OAUTH_CLIENT_ID": up.lms.client_id,
        "OAUTH_CLIENT_SECRET": up.lms.client_secret,
        "BRAZE_API_URL": up.braze.url,
        "BRAZE_API_KEY": BRAZE_KEY,
        "BRAZE_LICENSE_EXPIRATION_REMINDER_CAMPAIGN": REMINDER_CAMPAIGN,
        "LIMITED_ALLOCATIONS_REMAINING_CAMPAIGN": LIMITED_CAMPAIGN,
        "NO_ALLOCATIONS_REMAINING_CAMPAIGN": NO_ALLOCATIONS_CAMPAIGN,
        "WEEKLY_LICENSE_UTILIZATION_CAMPAIGN": WEEKLY_CAMPAIGN,
        "BRAZE_SUBSCRIPTION_PLAN_EXPIRATION_CAMPAIGN": PLAN_EXPIRATION_CAMPAIGN,
        "ENTERPRISE_ADMIN_PORTAL_BASE_URL": ADMIN_PORTAL,
        "HTTP_MAX_ATTEMPTS": "3",
        "HTTP_MAX_WAIT_SECONDS": "0.2",
        "HTTP_TIMEOUT_SECONDS": "2",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "LicenseNotificationsTest",
    }


@pytest.fixture
def app_env(aws_resources: StackResources, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = upstream_env(upstream)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**env, **aws_resources.lambda_env()}


@pytest.fixture
def error_inbox(app_env, aws_resources: StackResources):
    """Reads the error notifications: an SQS queue subscribed (raw delivery) to the template's error topic."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=f"errors{aws_resources.suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=aws_resources.error_topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )

    def read() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return read


# ===================================================================================== end stand-ins


# ===================================================================================== shared steps
def race(jobs: list, enterprise: str, *, as_of: datetime = NOW) -> list:
    """Each job (one per worker: its own ``Services``) runs ``enterprise`` in a thread of its own, all started
    together through a barrier (runs ``run-0``, ``run-1``...); returns their outcomes."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list = []

    def work(i: int) -> None:
        barrier.wait()
        outcomes.append(jobs[i].run_enterprise(enterprise, JobRun(run_id=f"run-{i}", as_of=as_of)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def fully_allocated_enterprise(up: Upstream):
    """An auto-apply plan with every license activated and one admin: a 100 % email and a digest are due."""
    customer = up.dataset.add_customer("Auto")
    plan = up.dataset.add_plan(customer.uuid, title="auto", expires_in_days=100, should_auto_apply_licenses=True)
    up.dataset.add_licenses(plan.uuid, "activated", 10)
    return customer, up.dataset.add_admin(customer.uuid)
