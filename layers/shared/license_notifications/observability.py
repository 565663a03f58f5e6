"""Logging helpers shared by the jobs, the Lambda handlers and the CLI.

Library code logs through the standard ``logging`` module (logger names under ``license_notifications``)
with structured ``extra`` keys; the Lambda handlers route those loggers through Powertools' JSON Logger
(with the run id as correlation id), the CLI through a plain-text formatter.

Secrets never reach a log line, at any level: :func:`install_log_redaction` (called where the Lambdas and the
CLI set up logging) redacts every log record of the process as it is made (see :func:`redact`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

SERVICE_NAME = "license-notifications"
METRICS_NAMESPACE = "LicenseNotifications"


def mask_email(email: str | None) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to correlate, not enough to identify.

    Split at the last ``@``: a quoted local part may hold one (``"a@b"@example.com``), a domain cannot."""
    if not email:
        return "<no email>"
    local, sep, domain = email.rpartition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


# Email-like tokens, generously (masking a token that is not an address costs nothing, missing one leaks it):
# - local part: RFC 5322 atext and dots (and \w, for RFC 6531 non-ASCII letters), and quoted strings
#   (``"john doe"``), joined by dots (``john."doe"``, ``"a"."b"``; at most 8 quoted strings after the first
#   word, so a crafted chain of them costs a bounded scan per start, not one to the end of the text);
# - it starts where a run of atext starts, or at any quote (the lookbehind): a long run without "@" (a token,
#   a base64 blob) is scanned once, not once per character, while ``email="john doe"@example.com`` is found;
# - runs and quoted strings are delimited by characters the other cannot match: no exponential backtracking;
# - "@" or its URL encoding "%40" (``?email=jane%40example.com`` in a URL quoted by an error);
# - domain: dot-separated labels, a dot not required (``user@localhost``), or an address literal
#   (``user@[192.0.2.1]``, ``user@[IPv6:2001:db8::1]``); possessive, and not followed by more of a domain
#   and another "@" (in ``x@ab@example.com`` the address is ``ab@example.com``, not ``x@ab``).
_ATEXT = r"\w!#$%&'*+/=?^`{|}~.-"
_QUOTED = r'"(?:[^"\\\r\n]|\\.)*"'
_AT = r"(?:@|%40)"
_EMAIL = re.compile(
    rf"(?:(?<![{_ATEXT}])|(?=\"))"
    rf"(?P<local>(?:{_QUOTED}|[{_ATEXT}]+)(?:(?<=\.){_QUOTED}|(?<=\")\.[{_ATEXT}]*){{0,16}})"
    rf"(?P<at>{_AT})(?P<domain>\[[\w.:-]+\]|[\w-]++(?:\.[\w-]++)*+)(?![.\w-]*{_AT})"
)


def mask_emails(text: str) -> str:
    """Every email address in ``text`` masked (for upstream error bodies that end up in logs and alerts)."""
    return _EMAIL.sub(lambda m: f"{m['local'][:1]}***{m['at']}{m['domain']}", text)


class EmailRenderer:
    """Renders learner emails for logs: masked unless the LOG_FULL_EMAILS setting asks for them in full."""

    def __init__(self, full: bool = False):
        self.full = full

    def __call__(self, email: str | None) -> str:
        return (email or "<no email>") if self.full else mask_email(email)


# -- secrets out of the logs -----------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8  # a shorter "secret" would redact ordinary words from every line

# Fields whose value is a credential, in the shapes log lines carry them: JSON and Python reprs
# (``"SecretString": "..."``, ``'Authorization': 'Bearer ...'``; botocore logs Secrets Manager's reply body at
# DEBUG, before anyone knows the value it holds), headers (``Authorization: JWT ...``) and form bodies
# (``client_secret=...``). The name stands alone (``OAUTH_CLIENT_SECRET_ARN`` is not ``client_secret``).
_SECRET_FIELD = re.compile(
    r"""(?P<name>(?<![\w-])["']?(?:SecretString|SecretBinary|client_secret|access_token|refresh_token|id_token|"""
    r"""api_key|password|Authorization|X-Amz-Security-Token)["']?\s*[:=]\s*)"""
    # a quoted value; escapes may be doubled (a JSON body inside a bytes repr): a run of backslashes escapes
    # the next character, which at worst redacts up to a later quote (more, never less). Possessive: linear.
    r"""(?P<value>"(?:[^"\\]|\\++.)*+"|b?'(?:[^'\\]|\\++.)*+'|"""
    r"""(?:(?:Bearer|JWT|Basic|Token)\s+)?[^\s&,;'"}\])]++|"""
    r"""b?["'][^\n]*+)""",  # a quote never closed (a line cut short): to the end of the line
    re.IGNORECASE,
)
# A JWT (the OAuth token): base64url header and payload, both JSON objects ("eyJ" is '{"'), and a signature;
# it starts a base64url run (so a long run is scanned once, not once per "eyJ" in it).
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*+\.eyJ[A-Za-z0-9_-]*+\.[A-Za-z0-9_-]*+")


class _KnownSecrets:
    """The secret values this process has read (any thread may add one; the pattern is swapped atomically)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) < MIN_SECRET_LENGTH or value in self._values:  # read on every Braze request: mostly known
            return
        # As logged: plain, URL-encoded (a form body or a query) and escaped in a JSON or Python string.
        forms = {value, quote(value, safe=""), quote_plus(value), value.encode("unicode_escape").decode()}
        forms.add(value.replace("\\", "\\\\").replace('"', '\\"'))
        with self._lock:
            if forms <= self._values:
                return
            self._values = self._values | forms  # a new set: the unlocked membership test above never sees one change
            ordered = sorted(self._values, key=len, reverse=True)  # the longest form first
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_KNOWN = _KnownSecrets()


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log record made from now on (config calls this for each secret it reads)."""
    if value:
        _KNOWN.add(value)


def redact(text: str) -> str:
    """``text`` without the secrets this process knows, credential fields' values (Secrets Manager replies,
    tokens, Authorization headers, form-encoded client secrets) or anything shaped like a JWT."""
    known = _KNOWN.pattern
    if known is not None:
        text = known.sub(REDACTED, text)
    text = _SECRET_FIELD.sub(lambda m: m["name"] + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def _redacting(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: left for the handler to report, as logging does
            return record
        clean = redact(message)
        if clean != message:  # otherwise untouched (a dict message stays a dict for Powertools' JSON)
            record.msg, record.args = clean, ()
        return record

    make_record.redacts_secrets = True  # type: ignore[attr-defined]
    return make_record


def install_log_redaction() -> None:
    """Redact every log record the process makes, whichever logger makes it (ours, botocore, urllib3,
    Powertools) and whichever handler emits it (Powertools' stdout, the Lambda runtime's, the CLI's stderr, a
    test's): the record factory is the one step every record goes through, before any filter, handler or
    formatter sees it, and after the logger's level check (records not emitted cost nothing). Idempotent.

    The message (its format string with its arguments) is redacted; ``extra`` fields and tracebacks are not
    (ours carry no secret, and third-party libraries log their data in the message)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_secrets", False):
        logging.setLogRecordFactory(_redacting(factory))
