"""Plain data read from the upstream services (shapes from ../shared/contracts/upstream-apis.md).

Parsing ignores fields we do not use, so an upstream that adds fields keeps working; a reply missing a
field we need is a :class:`~license_notifications.errors.MalformedResponseError` at the adapter.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

DEFAULT_SENDER_ALIAS = "edX Support Team"


class _Upstream(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LicenseStatus(StrEnum):
    UNASSIGNED = "unassigned"
    ASSIGNED = "assigned"
    ACTIVATED = "activated"
    REVOKED = "revoked"


class LicenseCounts(_Upstream):
    """A plan's ``licenses`` object (contract 2.1): ``total`` excludes revoked, ``allocated`` = assigned+activated."""

    activated: int = 0
    assigned: int = 0
    unassigned: int = 0
    revoked: int = 0
    total: int = 0
    allocated: int = 0


class SubscriptionPlan(_Upstream):
    """license-manager plan object (contract 2.1)."""

    uuid: UUID
    title: str
    start_date: AwareDatetime
    expiration_date: AwareDatetime
    enterprise_customer_uuid: UUID
    is_active: bool
    should_auto_apply_licenses: bool = False
    licenses: LicenseCounts = Field(default_factory=LicenseCounts)

    @field_validator("should_auto_apply_licenses", mode="before")
    @classmethod
    def _null_means_false(cls, value: object) -> object:
        return False if value is None else value


class CustomerAgreement(_Upstream):
    """license-manager customer agreement (contract 2.2); ``subscriptions`` holds its active plans."""

    uuid: UUID
    enterprise_customer_uuid: UUID
    enterprise_customer_slug: str | None = None
    disable_expiration_notifications: bool = False
    subscription_for_auto_applied_licenses: UUID | None = None
    subscriptions: list[SubscriptionPlan] = Field(default_factory=list)


class License(_Upstream):
    """license-manager license (contract 2.3)."""

    uuid: UUID
    status: LicenseStatus
    user_email: str | None = None
    subscription_plan_uuid: UUID | None = None


class EnterpriseCustomer(_Upstream):
    """edx-enterprise customer (contract 3.1)."""

    uuid: UUID
    name: str
    slug: str
    active: bool = True
    sender_alias: str | None = None
    contact_email: str | None = None
    reply_to: str | None = None
    default_language: str | None = None

    @property
    def sender_alias_or_default(self) -> str:
        return (self.sender_alias or "").strip() or DEFAULT_SENDER_ALIAS
