"""Shared pytest fixtures.

Sections are owned by topic; add new fixtures in a section of their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from devstack.aws import MotoStack, StackResources, create_resources_from_template

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
