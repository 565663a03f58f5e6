"""Secrets stay out of the logs at every log level: the Braze key, the OAuth client secret and the OAuth token.

An operator chasing a problem turns the root logger to DEBUG (Lambda's application log level,
``AWS_LAMBDA_LOG_LEVEL``, ``POWERTOOLS_LOG_LEVEL``). Then botocore logs every reply body (a ``GetSecretValue``
reply holds the secret), urllib3 every request line, and the Lambda handlers' own loggers everything they log.
These tests run the real handlers (and the CLI) with both secrets in Secrets Manager (moto) and a JWT from the
OAuth stand-in, capture every record of every logger and everything written to stdout / stderr, and look for
the secrets and for anything shaped like a JWT.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets as std_secrets
import sys
import types
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from devstack.aws import create_secret
from devstack.lambda_local import LocalContext, LocalEventSourceMapping, load_handler
from devstack.standins import oauth as oauth_standin
from devstack.standins.oauth import OAuthClient

from conftest import NOW, REMINDER_CAMPAIGN, Upstream
from license_notifications import lambda_runtime
from license_notifications.adapters.oauth import clear_token_cache
from license_notifications.cli import EXIT_OK, run

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_shaped() -> str:
    """A token shaped like the LMS's JWTs (header.payload.signature, base64url): the stand-in's own are opaque."""
    header = _b64(json.dumps({"alg": "RS512", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": "license-notifications", "jti": uuid.uuid4().hex}).encode())
    return f"{header}.{payload}.{_b64(std_secrets.token_bytes(64))}"


class Everything(logging.Handler):
    """Every record that reaches it, as a formatter renders it (message, traceback) and as its raw fields
    (msg, args, the ``extra`` keys)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []  # (logger name, formatted record + its raw fields)
        self._format = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, f"{self._format.format(record)}\n{vars(record)!r}"))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.records]

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.records]


@dataclass
class Captured:
    handler: Everything
    streams: dict[str, str] = field(default_factory=dict)  # stdout and stderr

    def sources(self) -> list[tuple[str, str]]:
        """(where, text): each logger's records, and each stream."""
        return [*((f"logger {name}", text) for name, text in self.handler.records), *self.streams.items()]


@pytest.fixture
def debug_logs() -> Iterator[Everything]:
    """The root logger at DEBUG, and every logger's records captured: those reaching the root (all that
    propagate) and those of the loggers that do not propagate (the package's, routed to Powertools' handler),
    whose level is lowered to DEBUG too (what POWERTOOLS_LOG_LEVEL=DEBUG does). The handler modules are imported
    first, so that their loggers exist."""
    load_handler("dispatcher"), load_handler("worker")
    handler = Everything()
    root = logging.getLogger()
    saved: dict[logging.Logger, int] = {root: root.level}
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    attached = []
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        saved[logger] = logger.level
        if logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
        if not logger.propagate:
            logger.addHandler(handler)
            attached.append(logger)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger in attached:
            logger.removeHandler(handler)
        for logger, level in saved.items():
            logger.setLevel(level)


@contextmanager
def powertools_to_captured_stdout() -> Iterator[None]:
    """Powertools' handler writes to the stdout of the moment the handler modules were first imported: point
    it at this test's captured stdout while the test runs."""
    handler = load_handler("worker").logger.registered_handler  # the dispatcher's too: one service logger
    bound, handler.stream = handler.stream, sys.stdout  # (not setStream: it flushes the old, maybe closed, one)
    try:
        yield
    finally:
        handler.stream = sys.__stdout__ if bound is sys.stdout else bound  # outliving this test's capture


@pytest.fixture
def secrets_in_secrets_manager(
    app_env, aws_resources, upstream: Upstream, monkeypatch
) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Both secrets only in Secrets Manager (as deployed), with values found nowhere else, and the OAuth stand-in
    issuing JWT-shaped tokens. Yields what must never appear: the secrets (name -> value) and the tokens issued."""
    braze_key = f"braze-key-{uuid.uuid4().hex}"
    oauth_secret = f"oauth-secret-{uuid.uuid4().hex}"
    upstream.braze.api_key = braze_key
    upstream.lms.clients[upstream.lms.client_id] = OAuthClient(oauth_secret)
    suffix = aws_resources.suffix
    monkeypatch.delenv("BRAZE_API_KEY")
    monkeypatch.delenv("OAUTH_CLIENT_SECRET")
    monkeypatch.setenv("BRAZE_API_KEY_SECRET_ARN", create_secret(aws_resources.endpoint_url, f"b{suffix}", braze_key))
    monkeypatch.setenv("OAUTH_CLIENT_SECRET_ARN", create_secret(aws_resources.endpoint_url, f"o{suffix}", oauth_secret))
    issued: list[str] = []

    def token_urlsafe(_n: int = 32) -> str:
        issued.append(jwt_shaped())
        return issued[-1]

    monkeypatch.setattr(
        oauth_standin,
        "secrets",
        types.SimpleNamespace(token_urlsafe=token_urlsafe, compare_digest=std_secrets.compare_digest),
    )
    fresh_container()
    found = {"Braze API key": braze_key, "OAuth client secret": oauth_secret}
    yield found, issued
    fresh_container()


def fresh_container() -> None:
    """What a new Lambda container starts without: the services, Powertools' secret cache, the token cache."""
    lambda_runtime.services.cache_clear()
    parameters.clear_caches()
    clear_token_cache()


def due_enterprise(up: Upstream, licenses: int = 3):
    customer = up.dataset.add_customer("Secretive")
    plan = up.dataset.add_plan(customer.uuid, title="Plan", expires_in_days=10)
    up.dataset.add_licenses(plan.uuid, "activated", licenses, "learner{n:03d}@example.com")
    return customer


def leaks(captured: Captured, secrets: dict[str, str], tokens: list[str]) -> Counter[tuple[str, str]]:
    """(what, where) -> how many of that logger's records hold it (or how often a stream does): each secret,
    each token issued, anything JWT-shaped."""
    found: Counter[tuple[str, str]] = Counter()
    for where, text in captured.sources():
        count = (lambda n: min(n, 1)) if where.startswith("logger ") else (lambda n: n)
        for name, value in secrets.items():
            found[name, where] += count(text.count(value))
        found["OAuth token", where] += count(sum(text.count(token) for token in tokens))
        found["JWT-shaped string", where] += count(len(JWT_SHAPE.findall(text)))
    return +found  # the non-zero counts


def test_at_debug_both_handlers_log_no_secret_and_no_jwt(
    secrets_in_secrets_manager, debug_logs: Everything, upstream: Upstream, aws_resources, capsys
):
    secrets, tokens = secrets_in_secrets_manager
    dispatcher, worker = load_handler("dispatcher"), load_handler("worker")
    customer = due_enterprise(upstream)
    sqs = boto3.client("sqs")
    with powertools_to_captured_stdout():
        # The dispatcher discovers the enterprises: an OAuth token (its secret from Secrets Manager) to read
        # license-manager's feed.
        event = {"job": "license_expiration_reminders", "enterprise_customer_uuids": None, "as_of": NOW.isoformat()}
        result = dispatcher.lambda_handler(event, LocalContext("dispatcher"))
        fresh_container()  # the worker runs in a container of its own: it reads both secrets and gets a token
        report = LocalEventSourceMapping(sqs, aws_resources.work_queue_url, worker.lambda_handler).drain()
    out, err = capsys.readouterr()
    captured = Captured(debug_logs, {"stdout": out, "stderr": err})

    # Not vacuous: everything happened, and the capture saw DEBUG records of botocore and urllib3.
    assert result["enterprise_customer_uuids"] == [customer.uuid]
    assert (report.processed, report.failed_deliveries) == (1, 0)
    assert len(upstream.braze.sent_to(REMINDER_CAMPAIGN)) == 3
    assert len(tokens) == 2  # one per container
    assert any("GetSecretValue" in text for text in debug_logs.texts)
    assert any(name == "botocore.parsers" for name in debug_logs.names)  # the reply bodies
    assert any(name.startswith("urllib3") for name in debug_logs.names)
    assert any(name.startswith("license_notifications") for name in debug_logs.names)
    assert '"level":"INFO"' in out.replace(" ", "")  # Powertools' JSON lines were captured too

    assert leaks(captured, secrets, tokens) == Counter()


def test_at_debug_the_cli_logs_no_secret_and_no_jwt(
    secrets_in_secrets_manager, debug_logs: Everything, upstream: Upstream, capsys
):
    secrets, tokens = secrets_in_secrets_manager
    customer = due_enterprise(upstream, licenses=2)
    with powertools_to_captured_stdout():  # the package's loggers use it once the handlers were imported
        code, summary = run(["expiration-reminders", "--as-of", NOW.isoformat()])  # discovers, then sends
    out, err = capsys.readouterr()
    captured = Captured(debug_logs, {"stdout": out, "stderr": err})

    assert (code, summary.sent) == (EXIT_OK, 2)
    assert [o.enterprise_customer_uuid for o in summary.outcomes] == [customer.uuid]
    assert tokens
    assert any("GetSecretValue" in text for text in debug_logs.texts)
    assert any(name.startswith("botocore.parsers") for name in debug_logs.names)

    assert leaks(captured, secrets, tokens) == Counter()
