"""Post-expiration emails (license-manager's ``send_subscription_plan_expiration_emails``, contract 2.5):
one email per activated license after its subscription plan expired.

The ledger identity of the email lives here, so that the job and the cutover (``import-sent``) name the
same record: one ``plan_expiration_email#<license uuid>`` record per license, kept until the plan expired
``RECORD_RETENTION`` ago.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

LEDGER_KIND = "plan_expiration_email"
RECORD_RETENTION = timedelta(days=90)  # ledger records live until the plan expired this long ago


def ledger_key(license_uuid: UUID | str) -> str:
    return f"{LEDGER_KIND}#{license_uuid}"
