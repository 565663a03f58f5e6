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
    """``jane.doe@example.com`` -> ``j***@example.com``: enough to correlate, not enough to identify."""
    if not email:
        return "<no email>"
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_emails(text: str) -> str:
    """Every email address in ``text`` masked (for upstream error bodies that end up in logs and alerts)."""
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


class EmailRenderer:
    """Renders learner emails for logs: masked unless the LOG_FULL_EMAILS setting asks for them in full."""

    def __init__(self, full: bool = False):
        self.full = full

    def __call__(self, email: str | None) -> str:
        return (email or "<no email>") if self.full else mask_email(email)
