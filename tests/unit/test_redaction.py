"""Secrets out of the logs (observability.redact and the record factory install_log_redaction puts in place).

End to end, with botocore, urllib3 and both handlers at DEBUG: tests/integration/test_secrets_in_logs.py.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest

from license_notifications.observability import REDACTED, install_log_redaction, redact, register_secret

JWT = "eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJzZXJ2aWNlIiwianRpIjoiMSJ9.c2lnbmF0dXJlLWJ5dGVz_-x"


def secret() -> str:
    return f"s3cr3t+/={uuid.uuid4().hex}"


def test_a_secrets_manager_reply_body_as_botocore_logs_it_loses_the_secret_string_before_it_is_known():
    tail = uuid.uuid4().hex
    value = f'pa"ss\\word-{tail}'  # JSON-escaped in the body, the escapes doubled again in the bytes repr
    body = json.dumps({"ARN": "arn:aws:secretsmanager:x", "SecretString": value, "VersionId": "v-1"})
    for line in (f"Response body:\n{body.encode()!r}", repr(json.loads(body)), body):
        clean = redact(line)
        assert "pa" not in clean
        assert tail not in clean
        assert "arn:aws:secretsmanager:x" in clean
        assert "v-1" in clean  # only the secret's value goes


@pytest.mark.parametrize(
    "line",
    [
        f"Authorization: JWT {JWT}",
        f"headers={{'Authorization': 'JWT {JWT}', 'Accept': 'application/json'}}",
        "headers={'Authorization': 'Bearer braze-key-123456', 'Accept': 'application/json'}",
        "grant_type=client_credentials&client_id=abc&client_secret=hunter2-hunter2&token_type=jwt",
        '{"access_token": "opaque-token-value", "expires_in": 3600}',
        f"token {JWT} in the middle",
    ],
)
def test_credential_fields_and_jwts_are_redacted(line):
    clean = redact(line)
    for leaked in (JWT, "braze-key-123456", "hunter2-hunter2", "opaque-token-value"):
        assert leaked not in clean
    assert REDACTED in clean


@pytest.mark.parametrize(
    "line",
    [
        "OAUTH_CLIENT_SECRET_ARN: cannot read secret 'arn:aws:secretsmanager:us-east-1:1:secret:x'",
        "invalid configuration: settings: Value error, OAUTH_CLIENT_SECRET or OAUTH_CLIENT_SECRET_ARN must be set",
        "token reply lacks access_token or expires_in",
        "Successfully sent license expiration reminder to j***@example.com for license 5f0c...",
    ],
)
def test_ordinary_lines_are_left_alone(line):
    assert redact(line) == line


def test_a_registered_secret_is_redacted_in_every_form_a_log_line_may_carry():
    value = secret()
    assert redact(value) == value  # unknown until read
    register_secret(value)
    from urllib.parse import quote, quote_plus

    for form in (value, quote(value, safe=""), quote_plus(value), json.dumps(value)):
        assert redact(f"before {form} after") in (f"before {REDACTED} after", f'before "{REDACTED}" after')


def test_a_too_short_value_is_not_registered():
    register_secret("abc")
    assert redact("abc abcdef") == "abc abcdef"


@pytest.mark.parametrize(
    "text",
    ['"SecretString": "' + "\\" * 20_000, "eyJ" * 20_000, "eyJ." * 20_000, 'client_secret="' * 10_000, "x" * 100_000],
)
def test_redaction_takes_linear_time_on_hostile_text(text):
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 0.5


@pytest.fixture
def redacting() -> Iterator[logging.Logger]:
    """The record factory installed (restored afterwards), and a logger at DEBUG."""
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper
    logger = logging.getLogger("tests.redaction")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield logger
    finally:
        logger.setLevel(level)
        logging.setLogRecordFactory(factory)


def test_every_record_is_redacted_whichever_logger_and_handler(redacting, caplog):
    value = secret()
    register_secret(value)
    caplog.set_level(logging.DEBUG)
    body = json.dumps({"SecretString": "from-secrets-manager-xyz"}).encode()
    logging.getLogger("botocore.parsers").debug("Response body:\n%r", body)
    redacting.info("token %s and key %s", JWT, value)
    logging.getLogger("urllib3.connectionpool").debug("headers %s", {"Authorization": f"Bearer {value}"})

    text = caplog.text + repr([vars(r) for r in caplog.records])  # the formatted lines and the raw records
    for leaked in ("from-secrets-manager-xyz", JWT, value):
        assert leaked not in text
    assert len(caplog.records) == 3
    assert all(REDACTED in r.getMessage() for r in caplog.records)


def test_a_record_without_secrets_is_left_as_it_was(redacting, caplog):
    caplog.set_level(logging.DEBUG)
    event = {"job": "license_expiration_reminders", "enterprise_customer_uuids": None}
    redacting.info(event)  # Powertools logs the event as a dict: it must stay one
    redacting.info("sent %d of %d", 3, 4)
    first, second = caplog.records
    assert first.msg is event
    assert (second.msg, second.args) == ("sent %d of %d", (3, 4))


def test_a_malformed_log_call_is_left_to_the_handler_to_report_not_raised_by_the_factory(redacting):
    make = logging.getLogRecordFactory()
    record = make("tests.redaction", logging.INFO, __file__, 1, "%d items", ("not a number",), None)
    assert (record.msg, record.args) == ("%d items", ("not a number",))
