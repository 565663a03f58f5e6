"""Plain data read from the upstream services (shapes from ../shared/contracts/upstream-apis.md).

Parsing ignores fields we do not use, so an upstream that adds fields keeps working; a reply missing a
field we need is a :class:`~license_notifications.errors.MalformedResponseError` at the adapter.
"""

from __future__ import annotations

from typing import Any, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_SENDER_ALIAS = "edX Support Team"
ENTERPRISE_ADMIN_ROLE = "enterprise_admin"


class _Upstream(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LicenseCounts(_Upstream):
    """A plan's ``licenses`` object (contract 2.1): ``total`` excludes revoked, ``allocated`` = assigned+activated."""

    activated: int = 0
    assigned: int = 0
    unassigned: int = 0
    revoked: int = 0
    total: int = 0
    allocated: int = 0


class PriorRenewal(_Upstream):
    """One entry of a plan's ``prior_renewals`` (contract 2.1): listed on the renewal plan,
    ``prior_subscription_plan_id`` is the plan it renews, ``renewed_subscription_plan_id`` the renewal itself."""

    prior_subscription_plan_id: UUID
    renewed_subscription_plan_id: UUID
    prior_subscription_plan_start_date: AwareDatetime | None = None
    renewed_subscription_plan_start_date: AwareDatetime | None = None


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
    prior_renewals: list[PriorRenewal] = Field(default_factory=list)  # the renewals that led to this plan

    @field_validator("should_auto_apply_licenses", mode="before")
    @classmethod
    def _null_means_false(cls, value: object) -> object:
        return False if value is None else value

    @field_validator("prior_renewals", mode="before")
    @classmethod
    def _null_means_none(cls, value: object) -> object:
        return [] if value is None else value


class CustomerAgreement(_Upstream):
    """license-manager customer agreement (contract 2.2); ``subscriptions`` holds its active plans."""

    uuid: UUID
    enterprise_customer_uuid: UUID
    enterprise_customer_slug: str | None = None
    disable_expiration_notifications: bool = False
    subscription_for_auto_applied_licenses: UUID | None = None
    subscriptions: list[SubscriptionPlan] = Field(default_factory=list)


class License(_Upstream):
    """license-manager license (contract 2.3). ``status`` is kept as sent: a value this code does not know
    (a newer license-manager's) is simply not ``activated``, so never due, and never an error."""

    uuid: UUID
    status: str
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


# The nested ``user`` object's keys (contract 3.2) and the flat field each one becomes.
_LIFTED_USER_FIELDS = {
    "id": "user_id",
    "username": "username",
    "first_name": "first_name",
    "last_name": "last_name",
    "email": "email",
    "is_active": "user_is_active",
}


class EnterpriseAdmin(_Upstream):
    """An enterprise-learner record (contract 3.2) flattened for the utilization emails.

    One per (LMS user, enterprise): ``id`` is the EnterpriseCustomerUser id, the per-enterprise admin key;
    ``user_id`` is the LMS user id (``user.id``), the Braze ``external_user_id``; ``created`` is when the
    user joined this enterprise (the start of the weekly-digest rule). Parsing the LMS JSON lifts the nested
    ``user`` object (and ``enterprise_customer.uuid`` when present); the flat fields can also be given
    directly.
    """

    id: int
    active: bool = True
    user_id: int
    username: str
    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    user_is_active: bool
    created: AwareDatetime
    role_assignments: list[str]
    enterprise_customer_uuid: UUID | None = None  # from the nested enterprise_customer object, when present

    @model_validator(mode="before")
    @classmethod
    def _lift_nested_user(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "user" not in data:
            return data
        user = data["user"]
        if not isinstance(user, dict):
            raise ValueError("user must be an object")
        flat = {key: value for key, value in data.items() if key not in ("user", "enterprise_customer")}
        for source, target in _LIFTED_USER_FIELDS.items():  # user.id wins over the top-level user_id
            if source in user:
                flat[target] = user[source]
        customer = data.get("enterprise_customer")
        if isinstance(customer, dict) and customer.get("uuid") is not None:
            flat["enterprise_customer_uuid"] = customer["uuid"]
        return flat

    @field_validator("first_name", "last_name", mode="before")
    @classmethod
    def _null_name_is_blank(cls, value: object) -> object:
        return "" if value is None else value

    @classmethod
    def from_enterprise_learner(cls, data: dict[str, Any]) -> Self:
        """Parse one ``results`` item of ``enterprise-learner/`` (raises pydantic's ValidationError)."""
        return cls.model_validate(data)

    @property
    def is_admin(self) -> bool:
        return ENTERPRISE_ADMIN_ROLE in self.role_assignments

    @property
    def display_name(self) -> str:
        """The Braze ``user_name``: first and last name, else the username, else the email (else "")."""
        full_name = " ".join(part.strip() for part in (self.first_name, self.last_name) if part.strip())
        return full_name or self.username.strip() or (self.email or "").strip()
