"""``license-notifications check``: a preflight after a deploy or a secret rotation. One line per check,
PASS / FAIL / WARN with the reason; it sends nothing and writes nothing (it asks for an OAuth token, reads
license-manager's feed, one LMS enterprise, the Braze campaigns' details and the ledger table's description).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

from license_notifications.config import Settings, load_settings
from license_notifications.errors import AuthenticationError, ConfigurationError, NotFoundError, PermissionDeniedError
from license_notifications.jobs.dispatch import EMPTY_FEED
from license_notifications.models import SubscriptionPlan
from license_notifications.services import Services

PASS, FAIL, WARN = "PASS", "FAIL", "WARN"

CAMPAIGN_SETTINGS = (
    "expiration_reminder_campaign",
    "limited_allocations_campaign",
    "no_allocations_campaign",
    "weekly_utilization_campaign",
    "plan_expiration_campaign",
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    reason: str

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.reason}"


def run_checks(environ: dict[str, str] | None = None, *, services: Services | None = None) -> list[Check]:
    """Every check, in order; a configuration that does not load stops the rest (they need it)."""
    try:
        svc = services or Services(load_settings(environ))
    except ConfigurationError as exc:
        return [Check("configuration", FAIL, str(exc))]
    return [Check("configuration", PASS, "every setting loads"), *_Preflight(svc).checks()]


Verdict = tuple[str, str]  # (PASS / FAIL / WARN, reason)


class _Preflight:
    def __init__(self, services: Services):
        self.svc = services
        self.settings: Settings = services.settings
        self.plan: SubscriptionPlan | None = None  # the first plan of the feed, for the LMS check

    def checks(self) -> Iterator[Check]:
        steps: list[tuple[str, Callable[[], Verdict]]] = [
            ("OAuth token", self.oauth),
            ("license-manager all-plans feed", self.license_manager),
            ("LMS enterprise-customer", self.lms),
        ]
        steps += [
            (f"Braze campaign {Settings.model_fields[setting].alias}", partial(self.campaign, setting))
            for setting in CAMPAIGN_SETTINGS
        ]
        steps.append(("ledger table", self.ledger))
        for name, step in steps:
            yield Check(name, *_guarded(step))

    def oauth(self) -> Verdict:
        self.svc.oauth.token(force_refresh=True)
        return PASS, f"issued for client {self.settings.oauth_client_id} by {self.settings.oauth_url}"

    def license_manager(self) -> Verdict:
        for plan in self.svc.license_manager.all_plans():
            self.plan = plan
            return PASS, "readable and not empty"
        return FAIL, EMPTY_FEED

    def lms(self) -> Verdict:
        if self.plan is None:
            return WARN, "not checked: no enterprise from license-manager's feed to ask about"
        uuid = self.plan.enterprise_customer_uuid
        try:
            customer = self.svc.lms.enterprise_customer(uuid)
        except NotFoundError:
            return WARN, (
                f"enterprise {uuid} (first in the feed) is unknown or inactive in the LMS, or the service user is "
                "not LMS staff (a non-staff user sees no enterprise it is not linked to)"
            )
        return PASS, f"answers for {customer.slug} ({uuid}); the service user must be LMS staff"

    def campaign(self, setting: str) -> Verdict:
        campaign_id = getattr(self.settings, setting)
        if not campaign_id:
            return WARN, "not set: the job that needs it cannot run"
        try:
            details = self.svc.braze.campaign_details(campaign_id)
        except (AuthenticationError, PermissionDeniedError):
            return WARN, f"{campaign_id}: the API key lacks the campaigns.details permission, so it cannot be checked"
        problems = [
            problem
            for problem, bad in (
                ("not enabled", details.get("enabled") is not True),
                ("archived", details.get("archived") is True),
                ("a draft", details.get("draft") is True),
            )
            if bad
        ]
        if problems:
            return FAIL, f"{campaign_id} ({details.get('name')!r}) is {', '.join(problems)}"
        return PASS, f"{campaign_id} ({details.get('name')!r}) exists, is enabled and not archived"

    def ledger(self) -> Verdict:
        import boto3

        table = self.settings.ledger_table_name
        if not table:
            return FAIL, "LEDGER_TABLE_NAME is not set"
        status = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["TableStatus"]
        return (PASS if status == "ACTIVE" else WARN), f"{table} is {status}"


def _guarded(step: Callable[[], Verdict]) -> Verdict:
    """A check that raises fails with the reason; it never stops the others."""
    try:
        return step()
    except Exception as exc:  # upstream errors, configuration errors, botocore's errors for the ledger table
        return FAIL, f"{type(exc).__name__}: {exc}"
