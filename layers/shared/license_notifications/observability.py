"""Logging helpers shared by the jobs, the Lambda handlers and the CLI.

Library code logs through the standard ``logging`` module (logger names under ``license_notifications``)
with structured ``extra`` keys; the Lambda handlers route those loggers through Powertools' JSON Logger
(with the run id as correlation id), the CLI through a plain-text formatter.
"""

from __future__ import annotations

import re

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
