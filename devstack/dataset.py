"""Sample data behind the local stand-ins (license-manager, LMS) used by the demo and the tests.

``build_sample_dataset(now)`` is deterministic: identifiers are uuid5 of stable names, integer ids come from
fixed counters and every date is relative to ``now`` (timezone-aware UTC). The same ``Dataset`` object is
shared with the running stand-ins, so tests can add or change customers, plans, licenses and admins at run
time (``add_*`` methods, or plain attribute assignment on the records) and the next request sees it.

Field names follow /work/shared/contracts/upstream-apis.md (sections 2.1-2.3, 3.1, 3.2); the JSON rendering
lives in the stand-ins. Only what the client reads, or a test or the demo sets, is modelled.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LICENSE_STATUSES = ("activated", "assigned", "unassigned", "revoked")
ENTERPRISE_ADMIN = "enterprise_admin"
ENTERPRISE_LEARNER = "enterprise_learner"
# contract silent on the exact list: edx-enterprise gives every linked user the learner role and admins
# additionally enterprise_admin, so admin records carry both (clients must test membership, not equality).
ADMIN_ROLES = (ENTERPRISE_LEARNER, ENTERPRISE_ADMIN)

_NAMESPACE = uuidlib.UUID("0b4f7a52-5c1e-4f0e-9d7b-3c2a1e6f8d90")


def stable_uuid(*parts: object) -> str:
    """Deterministic UUID (uuid5) for a stable name made of ``parts``."""
    return str(uuidlib.uuid5(_NAMESPACE, "/".join(str(part) for part in parts)))


def canonical_uuid(value: str) -> str | None:
    """Lower-case hyphenated form of ``value``, or None if it is not a UUID."""
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        return None


def iso_z(value: datetime | None) -> str | None:
    """DRF's rendering of an aware datetime: ISO-8601 in UTC, "+00:00" written as "Z" (contract section 2)."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _canonical(value: str) -> str:
    if (canonical := canonical_uuid(value)) is None:
        raise ValueError(f"not a UUID: {value!r}")
    return canonical


# ----------------------------------------------------------------------------------------------- records
@dataclass
class Customer:
    """An LMS EnterpriseCustomer (contract 3.1). ``admin_users`` is derived from the admin records."""

    uuid: str
    name: str
    slug: str
    active: bool = True
    sender_alias: str = ""
    contact_email: str | None = None
    reply_to: str | None = None
    default_language: str | None = None
    # admin_users entries with no admin record (a removed admin's role assignment, contract 3.3)
    stale_admin_users: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Agreement:
    """A license-manager CustomerAgreement (contract 2.2); computed fields come from the plans."""

    uuid: str
    enterprise_customer_uuid: str
    enterprise_customer_slug: str | None
    default_enterprise_catalog_uuid: str
    disable_expiration_notifications: bool = False


@dataclass
class Plan:
    """A license-manager SubscriptionPlan (contract 2.1); counts and renewal fields come from the Dataset."""

    uuid: str
    title: str
    enterprise_customer_uuid: str
    start_date: datetime
    expiration_date: datetime
    enterprise_catalog_uuid: str
    is_active: bool = True
    should_auto_apply_licenses: bool | None = False
    created: datetime | None = None
    plan_type: str = "Standard Paid"


@dataclass
class License:
    """A license-manager License: the contract 2.3 fields."""

    uuid: str
    subscription_plan_uuid: str
    status: str
    user_email: str | None = None
    activation_date: datetime | None = None
    last_remind_date: datetime | None = None
    revoked_date: datetime | None = None
    activation_key: str | None = None


@dataclass
class LmsUser:
    """An LMS auth user (the ``user`` object of contract 3.2). ``id`` is the Braze external_user_id."""

    id: int
    username: str
    first_name: str
    last_name: str
    email: str
    is_staff: bool = False
    is_active: bool = True
    date_joined: datetime | None = None


@dataclass
class EnterpriseLearner:
    """An EnterpriseCustomerUser (contract 3.2): one per (user, enterprise); ``id`` is the admin key."""

    id: int
    enterprise_customer_uuid: str
    user: LmsUser
    active: bool = True  # the user's one *current* enterprise (contract 3.3), not "still a member"
    created: datetime | None = None
    roles: list[str] = field(default_factory=lambda: list(ADMIN_ROLES))
    modified: int = 0  # a sequence number standing in for ``modified``: the LMS orders by -active, -modified

    @property
    def is_admin(self) -> bool:
        return ENTERPRISE_ADMIN in self.roles


# ----------------------------------------------------------------------------------------------- dataset
@dataclass
class Dataset:
    """Everything the LMS and license-manager stand-ins serve. Mutate it freely; reads take ``lock``."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    customers: dict[str, Customer] = field(default_factory=dict)
    agreements: dict[str, Agreement] = field(default_factory=dict)  # keyed by enterprise_customer_uuid
    plans: dict[str, Plan] = field(default_factory=dict)
    licenses: dict[str, list[License]] = field(default_factory=dict)  # keyed by plan uuid, insertion order
    learners: list[EnterpriseLearner] = field(default_factory=list)
    users: dict[int, LmsUser] = field(default_factory=dict)
    renewals: dict[str, str] = field(default_factory=dict)  # plan uuid -> the plan that renews it
    # Fault injection: license records served verbatim (malformed on purpose) by the license-manager stand-in
    # after a plan's real licenses, whatever the query's filters; keyed by plan uuid. See add_raw_license().
    extra_raw_licenses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _next_ids: Counter[str] = field(default_factory=lambda: Counter(learner=101, user=3001), repr=False)

    def __post_init__(self) -> None:
        self.now = _aware(self.now, "now")

    # ------------------------------------------------------------------------------------- adding data
    def add_customer(
        self,
        name: str,
        *,
        slug: str | None = None,
        uuid: str | None = None,
        active: bool = True,
        sender_alias: str = "",
        contact_email: str | None = "",
        reply_to: str | None = None,
        default_language: str | None = "en",
        create_agreement: bool = True,
        disable_expiration_notifications: bool = False,
    ) -> Customer:
        """Add an LMS enterprise customer and (by default) its license-manager customer agreement."""
        slug = slug or name.lower().replace(" ", "-")
        contact_email = f"admin@{slug}.example.com" if contact_email == "" else contact_email  # None stays null
        uuid = _canonical(uuid) if uuid else stable_uuid("customer", slug)
        customer = Customer(uuid, name, slug, active, sender_alias, contact_email, reply_to, default_language)
        with self.lock:
            self.customers[uuid] = customer
            if create_agreement:
                catalog = stable_uuid("catalog", uuid, "default")
                agreement = Agreement(
                    stable_uuid("agreement", uuid), uuid, slug, catalog, disable_expiration_notifications
                )
                self.agreements[uuid] = agreement
        return customer

    def add_plan(
        self,
        enterprise_customer_uuid: str,
        *,
        title: str,
        expiration_date: datetime | None = None,
        start_date: datetime | None = None,
        expires_in_days: float | None = None,
        uuid: str | None = None,
        is_active: bool = True,
        should_auto_apply_licenses: bool | None = False,
        created: datetime | None = None,
        plan_type: str = "Standard Paid",
    ) -> Plan:
        """Add a subscription plan. Give ``expiration_date`` or ``expires_in_days`` (relative to ``now``);
        ``start_date`` defaults to one year before expiration."""
        enterprise = _canonical(enterprise_customer_uuid)
        if expiration_date is None:
            expiration_date = self.now + timedelta(days=365 if expires_in_days is None else expires_in_days)
        expiration_date = _aware(expiration_date, "expiration_date")
        start_date = _aware(start_date or expiration_date - timedelta(days=365), "start_date")
        plan = Plan(
            uuid=_canonical(uuid) if uuid else stable_uuid("plan", enterprise, title),
            title=title,
            enterprise_customer_uuid=enterprise,
            start_date=start_date,
            expiration_date=expiration_date,
            enterprise_catalog_uuid=stable_uuid("catalog", enterprise, "default"),
            is_active=is_active,
            should_auto_apply_licenses=should_auto_apply_licenses,
            created=created or start_date - timedelta(days=7),
            plan_type=plan_type,
        )
        with self.lock:
            self.plans[plan.uuid] = plan
            self.licenses.setdefault(plan.uuid, [])
        return plan

    def add_licenses(
        self,
        plan_uuid: str,
        status: str,
        count: int,
        email_pattern: str = "learner{n:03d}@{slug}.example.com",
        *,
        first: int | None = None,
        activation_date: datetime | None = None,
        last_remind_date: datetime | None = None,
        revoked_date: datetime | None = None,
    ) -> list[License]:
        """Add ``count`` licenses with ``status`` to a plan.

        ``email_pattern`` is formatted with ``n`` (learner number) and ``slug`` (the enterprise's slug);
        numbering starts at ``first`` or continues after the plan's licenses that carry an email.
        Unassigned licenses have no email and no activation key. Dates default relative to ``now``.
        """
        if status not in LICENSE_STATUSES:
            raise ValueError(f"status must be one of {LICENSE_STATUSES}")
        plan_uuid = _canonical(plan_uuid)
        with self.lock:
            plan = self.plans[plan_uuid]
            customer = self.customers.get(plan.enterprise_customer_uuid)
            slug = customer.slug if customer else "enterprise"
            existing = self.licenses.setdefault(plan_uuid, [])
            number = first if first is not None else 1 + sum(1 for lic in existing if lic.user_email)
            added = []
            for _ in range(count):
                record = License(stable_uuid("license", plan_uuid, len(existing)), plan_uuid, status)
                if status != "unassigned":
                    record.user_email = email_pattern.format(n=number, slug=slug)
                    record.activation_key = stable_uuid("activation-key", record.uuid)
                    record.last_remind_date = last_remind_date
                    number += 1
                if status in ("activated", "revoked"):
                    default_activation = max(plan.start_date, self.now - timedelta(days=1 + len(existing) % 60))
                    record.activation_date = activation_date or default_activation
                if status == "revoked":
                    record.revoked_date = revoked_date or self.now - timedelta(days=2)
                existing.append(record)
                added.append(record)
        return added

    def add_raw_license(self, plan_uuid: str, record: dict[str, Any]) -> dict[str, Any]:
        """Serve ``record`` as it is (a JSON object, e.g. with an unknown ``status``, no ``uuid`` or a
        non-string ``user_email``) in every licenses list of the plan, after its real licenses and whatever
        the filters: a malformed upstream record, for fault tests. It counts in ``count`` and pagination."""
        plan_uuid = _canonical(plan_uuid)
        with self.lock:
            if plan_uuid not in self.plans:
                raise KeyError(plan_uuid)
            self.extra_raw_licenses.setdefault(plan_uuid, []).append(record)
        return record

    def add_learner(
        self,
        enterprise_customer_uuid: str,
        *,
        roles: tuple[str, ...] | list[str] = (ENTERPRISE_LEARNER,),
        lms_user_id: int | None = None,
        email: str | None = None,
        username: str | None = None,
        first_name: str = "Learner",
        last_name: str | None = None,
        is_active: bool = True,
        created: datetime | None = None,
        active: bool = True,
    ) -> EnterpriseLearner:
        """Link an LMS user to an enterprise (an enterprise-learner record). Reuses the LMS user when
        ``lms_user_id`` is already known, so one person can belong to several enterprises."""
        enterprise = _canonical(enterprise_customer_uuid)
        with self.lock:
            user = self.users.get(lms_user_id) if lms_user_id is not None else None
            if user is None:
                user_id = lms_user_id if lms_user_id is not None else self._take_id("user", self.users)
                customer = self.customers.get(enterprise)
                email = email or f"user{user_id}@{customer.slug if customer else 'enterprise'}.example.com"
                username = username or email.split("@", 1)[0].replace(".", "_")
                last_name = last_name if last_name is not None else f"User{user_id}"
                joined = self.now - timedelta(days=400)
                user = self.users[user_id] = LmsUser(
                    user_id, username, first_name, last_name, email, False, is_active, joined
                )
            if active:
                # edx-enterprise's link_user: linking a user to an enterprise makes it their current one and
                # marks their links to every other enterprise ``active: false`` (contract 3.3).
                for other in self.learners:
                    if other.user.id == user.id and other.active:
                        other.active = False
                        self.touch(other)
            learner_id = self._take_id("learner", {learner.id for learner in self.learners})
            created = created or self.now - timedelta(days=60)
            learner = EnterpriseLearner(learner_id, enterprise, user, active, created, list(roles))
            self.touch(learner)
            self.learners.append(learner)
        return learner

    def touch(self, learner: EnterpriseLearner) -> None:
        """Mark ``learner`` as just modified (it moves to the top of its ``active`` group in LMS listings)."""
        with self.lock:
            self._next_ids["modified"] += 1
            learner.modified = self._next_ids["modified"]

    def add_admin(self, enterprise_customer_uuid: str, **kwargs: Any) -> EnterpriseLearner:
        """Add an enterprise admin (roles enterprise_learner + enterprise_admin); same keywords as
        ``add_learner`` (lms_user_id, email, username, first_name, last_name, created, active, ...)."""
        kwargs.setdefault("roles", ADMIN_ROLES)
        kwargs.setdefault("first_name", "Admin")
        return self.add_learner(enterprise_customer_uuid, **kwargs)

    def add_renewal(self, prior_plan_uuid: str, renewed_plan_uuid: str) -> None:
        """Record that ``prior_plan_uuid`` is renewed into ``renewed_plan_uuid``."""
        with self.lock:
            self.renewals[_canonical(prior_plan_uuid)] = _canonical(renewed_plan_uuid)

    def _take_id(self, kind: str, used: Any) -> int:
        while self._next_ids[kind] in used:
            self._next_ids[kind] += 1
        self._next_ids[kind] += 1
        return self._next_ids[kind] - 1

    # ------------------------------------------------------------------------------------------ lookups
    def customer_by_slug(self, slug: str) -> Customer:
        with self.lock:
            return next(customer for customer in self.customers.values() if customer.slug == slug)

    def plan_by_title(self, title: str) -> Plan:
        with self.lock:
            return next(plan for plan in self.plans.values() if plan.title == title)

    def plans_of(self, enterprise_customer_uuid: str) -> list[Plan]:
        with self.lock:
            return [plan for plan in self.plans.values() if plan.enterprise_customer_uuid == enterprise_customer_uuid]

    def licenses_of(self, plan_uuid: str) -> list[License]:
        with self.lock:
            return list(self.licenses.get(plan_uuid, []))

    def admins_of(self, enterprise_customer_uuid: str) -> list[EnterpriseLearner]:
        with self.lock:
            return [
                lrn
                for lrn in self.learners
                if lrn.enterprise_customer_uuid == enterprise_customer_uuid and lrn.is_admin
            ]

    # ------------------------------------------------------------------------------------- computations
    def license_counts(self, plan_uuid: str) -> dict[str, int]:
        """Contract 2.1 ``licenses``: per status, ``total`` (excludes revoked), ``allocated`` (assigned +
        activated)."""
        tally = Counter(lic.status for lic in self.licenses_of(plan_uuid))
        counts = {status: tally[status] for status in LICENSE_STATUSES}
        counts["total"] = sum(n for status, n in counts.items() if status != "revoked")
        counts["allocated"] = counts["assigned"] + counts["activated"]
        return counts

    def renewed_from(self, plan_uuid: str) -> list[Plan]:
        """The plans renewed into this one."""
        with self.lock:
            return [self.plans[prior] for prior, renewed in self.renewals.items() if renewed == plan_uuid]

    def renewed_expiration_date(self, plan_uuid: str) -> datetime:
        """When the plan, followed by the plans that renew it, expires."""
        with self.lock:
            plan = self.plans[plan_uuid]
            while plan.uuid in self.renewals:
                plan = self.plans[self.renewals[plan.uuid]]
            return plan.expiration_date

    # ------------------------------------------------------------------------------------------ describe
    def describe(self) -> list[str]:
        """Human-readable summary for the demo: one block per enterprise."""
        lines = [f"Sample dataset (now = {iso_z(self.now)}):"]
        with self.lock:
            for customer in self.customers.values():
                agreement = self.agreements.get(customer.uuid)
                flags = [
                    text
                    for text, applies in (
                        ("INACTIVE in LMS", not customer.active),
                        ("opted out of expiration emails", agreement and agreement.disable_expiration_notifications),
                        ('empty sender_alias -> "edX Support Team"', not customer.sender_alias),
                    )
                    if applies
                ]
                lines.append(
                    f"- {customer.name} [{customer.slug}] {customer.uuid} lang={customer.default_language} "
                    f"admins={len(self.admins_of(customer.uuid))}" + (f" ({'; '.join(flags)})" if flags else "")
                )
                lines += [
                    "    " + self._describe_plan(plan)
                    for plan in sorted(self.plans_of(customer.uuid), key=lambda p: p.expiration_date)
                ]
        return lines

    def _describe_plan(self, plan: Plan) -> str:
        counts = self.license_counts(plan.uuid)
        days = (plan.expiration_date - self.now).days
        ago = self.now - plan.expiration_date
        when = f"expires in {days}d" if days >= 0 else f"expired {-days}d ago"
        if timedelta(0) <= ago < timedelta(days=1):
            when = f"expired {ago.seconds // 3600}h ago"
        if plan.start_date > self.now:
            when += f", starts in {(plan.start_date - self.now).days}d"
        auto = plan.should_auto_apply_licenses
        notes = [
            text
            for text, applies in (
                ("is_active=false", not plan.is_active),
                (f"auto_apply={auto}", auto is not False),
                (f"allocated {counts['allocated']}/{counts['total']}", auto and counts["total"]),
                ("renewed", plan.uuid in self.renewals),
                ("renewal of an earlier plan", self.renewed_from(plan.uuid)),
            )
            if applies
        ]
        tally = " ".join(f"{status}={counts[status]}" for status in LICENSE_STATUSES if counts[status])
        extra = f" [{', '.join(notes)}]" if notes else ""
        return f'plan "{plan.title}" {when}: {tally or "no licenses"}{extra}'


# ------------------------------------------------------------------------------------------- the sample
# Slugs of the sample enterprises, so the demo and tests can look them up (Dataset.customer_by_slug).
ACME = "acme-analytics"  # 10-day plan with 120 activated + every status; inactive plan in window
GLOBEX = "globex-university"  # empty sender_alias; 35-day plan; plans expired 5 (and 30) days ago; language "es"
INITECH = "initech"  # opted out of expiration notifications; 12-day plan; plan expired 3 days ago
UMBRELLA = "umbrella-health"  # 20-day plan renewed into a future plan; default_language null
STARK = "stark-learning"  # auto-apply 60 %, expires in ~200 days, 55 admins
WAYNE = "wayne-enterprises"  # auto-apply 80 %; shares an admin with Cyberdyne
CYBERDYNE = "cyberdyne-systems"  # auto-apply 100 %; admins joined 3 and 10 days ago
SOYLENT = "soylent-foods"  # should_auto_apply_licenses null
HOOLI = "hooli"  # auto-apply plan with zero licenses
VANDELAY = "vandelay-industries"  # inactive in the LMS (404), only an old expired plan
TYRELL = "tyrell-corporation"  # plan expired 2 days ago, renewed (15 of its 20 learners moved); plan expired 1 h ago

SHARED_ADMIN_LMS_USER_ID = 7001


def build_sample_dataset(now: datetime) -> Dataset:
    """The demo's data: every expiration-reminder and utilization case (see the module constants)."""
    now = _aware(now, "now").replace(microsecond=0)
    ds = Dataset(now=now)

    def customer(name: str, slug: str, sender_alias: str, contact_email: str | None, **kwargs: Any) -> str:
        return ds.add_customer(name, slug=slug, sender_alias=sender_alias, contact_email=contact_email, **kwargs).uuid

    def plan(enterprise: str, title: str, days: int, licenses: str = "", **kwargs: Any) -> Plan:
        """``licenses``: "activated=120 assigned=6 ...", added in that order. The plan expires one hour past the
        whole day: license-manager floors (expiration - now).days, so a demo running on the real clock a few
        seconds after building the data still reads "10 days", not 9."""
        kwargs.setdefault("expiration_date", now + timedelta(days=days, hours=1))
        added = ds.add_plan(enterprise, title=title, **kwargs)
        for status, count in (item.split("=") for item in licenses.split()):
            ds.add_licenses(added.uuid, status, int(count))
        return added

    def admin(enterprise: str, name: str = "", email: str | None = None, days_ago: int = 60, **kwargs: Any) -> None:
        first, _, last = name.partition(" ")
        names = {"first_name": first, "last_name": last} if name else {}
        ds.add_admin(enterprise, email=email, created=now - timedelta(days=days_ago), **names, **kwargs)

    # --- expiration reminders ------------------------------------------------------------------------
    acme = customer(
        "Acme Analytics", ACME, "Acme Learning Team", "learning@acme-analytics.example.com",
        reply_to="learning-help@acme-analytics.example.com",
    )  # fmt: skip
    main = plan(acme, "Acme Analytics 2025 Enterprise", 10, "activated=120")  # > 50: batching shows
    ds.add_licenses(main.uuid, "assigned", 6, last_remind_date=now - timedelta(days=5))
    ds.add_licenses(main.uuid, "revoked", 4)
    ds.add_licenses(main.uuid, "unassigned", 5)
    pilot = plan(acme, "Acme Analytics Pilot", 15, is_active=False, plan_type="Trial")
    ds.add_licenses(pilot.uuid, "activated", 8, "pilot{n:03d}@{slug}.example.com")
    admin(acme, "Dana Whitfield", "dana.whitfield@acme-analytics.example.com")
    admin(acme, "Omar Haddad", "omar.haddad@acme-analytics.example.com")
    for n in range(1, 4):
        ds.add_learner(acme, email=f"learner{n:03d}@{ACME}.example.com")

    # empty sender_alias: clients fall back to "edX Support Team"
    # contact_email null, as the real LMS allows (contract 3.3)
    globex = customer("Globex University", GLOBEX, "", None, default_language="es")
    plan(globex, "Globex University Campus", 35, "activated=12 assigned=3 revoked=1 unassigned=2")
    plan(globex, "Globex University 2024", -5, "activated=10")
    admin(globex, "Lucía Ramírez", "lucia.ramirez@globex-university.example.com")

    initech = customer(
        "Initech", INITECH, "Initech Learning", "training@initech.example.com", disable_expiration_notifications=True
    )
    plan(initech, "Initech Professional Development", 12, "activated=15 assigned=2")
    admin(initech, "Bill Lumbergh", "bill.lumbergh@initech.example.com")

    umbrella = customer(
        "Umbrella Health", UMBRELLA, "Umbrella Health Academy", "academy@umbrella-health.example.com",
        reply_to="academy@umbrella-health.example.com", default_language=None,
    )  # fmt: skip
    old = plan(umbrella, "Umbrella Health 2025", 20, "activated=25 assigned=2 revoked=1 unassigned=3")
    renewed = plan(
        umbrella, "Umbrella Health 2025 - Renewal", 0, start_date=old.expiration_date,
        expiration_date=old.expiration_date + timedelta(days=365), created=now - timedelta(days=3),
    )  # fmt: skip
    # Same learners (learner001..025) with new license uuids, as license-manager's renewal copies them.
    copies = ds.add_licenses(renewed.uuid, "activated", 25, first=1)
    for copy, original in zip(copies, ds.licenses_of(old.uuid)[:25], strict=True):
        copy.activation_date = original.activation_date
    ds.add_licenses(renewed.uuid, "unassigned", 5)
    ds.add_renewal(old.uuid, renewed.uuid)
    admin(umbrella, "Alice Abernathy", "alice.abernathy@umbrella-health.example.com")
    # a removed admin still listed in admin_users (contract 3.3: admin_users is not the admin list)
    ds.customers[umbrella].stale_admin_users.append(
        {"email": "former.admin@umbrella-health.example.com", "lms_user_id": 9001}
    )

    # --- post-expiration emails (window: the last 7 days) ---------------------------------------------------
    # Globex's "2024" plan above expired 5 days ago (inside); its 2023 plan 30 days ago (outside); its summer
    # school expired 2 days ago but is inactive (not listed, never emailed).
    plan(globex, "Globex University 2023", -30, "activated=4")
    plan(globex, "Globex University Summer School", -2, "activated=3", is_active=False)
    # Initech opted out: its plan that expired 3 days ago is skipped whole.
    plan(initech, "Initech 2025 Onboarding", -3, "activated=5")
    tyrell = customer(
        "Tyrell Corporation", TYRELL, "Tyrell Academy", "academy@tyrell-corporation.example.com",
        default_language="de",
    )  # fmt: skip
    plan(tyrell, "Tyrell Replicant Training", 0, "activated=6 revoked=1", expiration_date=now - timedelta(hours=1))
    expired = plan(tyrell, "Tyrell 2025", -2, "activated=20 assigned=2 revoked=1")
    renewal = plan(
        tyrell, "Tyrell 2026 - Renewal", 0, start_date=expired.expiration_date,
        expiration_date=expired.expiration_date + timedelta(days=365), created=now - timedelta(days=10),
    )  # fmt: skip
    # learner001..012 moved to the renewal (activated), 013..015 are assigned there; 016..020 were not renewed.
    ds.add_licenses(renewal.uuid, "activated", 12, first=1)
    ds.add_licenses(renewal.uuid, "assigned", 3, first=13)
    ds.add_licenses(renewal.uuid, "unassigned", 5)
    ds.add_renewal(expired.uuid, renewal.uuid)
    admin(tyrell, "Eldon Tyrell", "eldon.tyrell@tyrell-corporation.example.com")

    # --- utilization -------------------------------------------------------------------------------------
    stark = customer("Stark Learning", STARK, "Stark Learning", "learning@stark-learning.example.com")
    # allocated 12 of 20 non-revoked = 60 %
    plan(
        stark,
        "Stark Learning Auto-Apply",
        200,
        "activated=8 assigned=4 revoked=2 unassigned=8",
        should_auto_apply_licenses=True,
    )
    for n in range(1, 56):  # 55 admins: more than one Braze batch of 50
        admin(
            stark,
            f"Admin Number{n:03d}",
            f"admin{n:03d}@{STARK}.example.com",
            3 if n == 1 else 10 if n == 2 else 14 + n,
        )
    for n in range(1, 4):
        ds.add_learner(stark, email=f"learner{n:03d}@{STARK}.example.com")

    wayne = customer("Wayne Enterprises", WAYNE, "Wayne Enterprises L&D", "ld@wayne-enterprises.example.com")
    # allocated 8 of 10 = 80 %
    plan(
        wayne,
        "Wayne Enterprises Auto-Apply",
        300,
        "activated=6 assigned=2 revoked=1 unassigned=2",
        should_auto_apply_licenses=True,
    )
    admin(wayne, "Pat Morgan", "pat.morgan@consulting.example.com", 45, lms_user_id=SHARED_ADMIN_LMS_USER_ID)
    admin(wayne, "Lucius Fox", "lucius.fox@wayne-enterprises.example.com")

    cyberdyne = customer("Cyberdyne Systems", CYBERDYNE, "Cyberdyne Academy", "academy@cyberdyne-systems.example.com")
    # allocated 10 of 10 = 100 %
    plan(
        cyberdyne,
        "Cyberdyne Systems Auto-Apply",
        150,
        "activated=5 assigned=5 revoked=1",
        should_auto_apply_licenses=True,
    )
    admin(cyberdyne, "Miles Dyson", "miles.dyson@cyberdyne-systems.example.com", 3)
    admin(cyberdyne, "Sarah Connor", "sarah.connor@cyberdyne-systems.example.com", 10)
    admin(cyberdyne, days_ago=20, lms_user_id=SHARED_ADMIN_LMS_USER_ID)  # same person as Wayne's

    soylent = customer(
        "Soylent Foods", SOYLENT, "Soylent Foods Training", "training@soylent-foods.example.com", default_language="es"
    )
    plan(soylent, "Soylent Foods Team", 90, "activated=9 unassigned=1", should_auto_apply_licenses=None)
    admin(soylent, "Robert Thorn", "thorn@soylent-foods.example.com")

    hooli = customer("Hooli", HOOLI, "Hooli University", "hooli-u@hooli.example.com")
    plan(hooli, "Hooli Auto-Apply (not provisioned)", 240, should_auto_apply_licenses=True)
    admin(hooli, "Gavin Belson", "gavin.belson@hooli.example.com", 30)

    vandelay = customer(
        "Vandelay Industries", VANDELAY, "Vandelay", "art@vandelay-industries.example.com", active=False
    )
    plan(vandelay, "Vandelay Industries Import/Export", -90, "activated=3")
    admin(vandelay, "Art Vandelay", "art.vandelay@vandelay-industries.example.com")
    return ds
