"""In-memory fakes of the adapters the jobs use: the ledger, Braze, license-manager and the LMS.

They implement the interfaces the jobs and ``jobs/pipeline.py`` call (same method names, arguments and
return types), keep everything in memory and open no socket, so a job or a batch runs in microseconds and
a unit test can arrange any reply. ``tests/integration/test_fake_ledger_parity.py`` runs one script of ledger
steps on ``InMemoryLedger`` and on the real ledger in moto and requires the same answers and records,
so a drift between the two fails a test.

Tests import them as ``from fakes import ...`` (``tests/`` is on ``sys.path`` through the root conftest);
``perf/benchmark.py`` as ``from tests.fakes import InMemoryLedger`` (run from the repository root).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from license_notifications.adapters._parsing import parse_as
from license_notifications.adapters.braze import (
    MAX_ALIASES_PER_REQUEST,
    MAX_RECIPIENTS_PER_REQUEST,
    Recipient,
    SendResult,
    UserAlias,
)
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT, Claim
from license_notifications.adapters.license_manager import LICENSES_PAGE_SIZE, LicensePage
from license_notifications.errors import BadRequestError, MalformedResponseError, NotFoundError
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.expiration_reminders import ExpirationReminders
from license_notifications.jobs.plan_expiration_emails import PlanExpirationEmails
from license_notifications.jobs.utilization import UtilizationNotifications
from license_notifications.models import (
    ENTERPRISE_ADMIN_ROLE,
    CustomerAgreement,
    EnterpriseAdmin,
    EnterpriseCustomer,
    License,
    LicenseCounts,
    PriorRenewal,
    SubscriptionPlan,
)
from license_notifications.rules.utilization import NotificationType

OnMalformed = Callable[[Any, MalformedResponseError], None] | None

# =====================================================================================================
# The ledger
# =====================================================================================================


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger item, with the attributes of ``adapters.ledger.LedgerRecord`` (``pk`` is the key)."""

    pk: str
    kind: str
    state: str
    claim_token: str | None = None
    lease_until: int | None = None  # wall-clock epoch seconds
    claimed_by_run: str | None = None
    sent_at: datetime | None = None  # the sending run's as_of
    recorded_at: datetime | None = None  # wall clock of the mark
    run_id: str | None = None
    dispatch_id: str | None = None
    enterprise_customer_uuid: str | None = None
    subject_uuid: str | None = None
    note: str | None = None
    expires_at: datetime | None = None


class InMemoryLedger:
    """The ledger protocol of ``adapters.ledger.Ledger`` in a dict, every write conditional under one lock.

    - ``claim``: succeeds only if the key has no item, or holds a ``claimed`` or ``rejected`` item whose lease
      (wall clock) ran out, or, with ``resend_if_sent_before``, a ``sent`` item whose last send is older;
    - ``mark_sent``: only with the claim's token (else False: the claim was lost);
    - ``release``: deletes a first-time claim, or puts a recurring item back to ``sent`` with its previous
      ``sent_at``; ``hold``: state ``rejected`` with a lease of ``seconds`` (both only with the token);
    - ``sent()``: the last ``sent_at`` of each key that has one; ``states()``: each existing key's state.

    ``wall_clock`` (epoch seconds) is injectable, so a test can let a lease or a hold run out; ``fail_marks``
    (an exception) makes ``mark_sent_many`` raise it, as a ledger that cannot record a send would. It holds
    one small entry per key (in ``make benchmark``, the one part of the run whose memory grows with N).
    """

    def __init__(self, *, lease_seconds: int = 1200, wall_clock: Callable[[], float] = time.time) -> None:
        self.lease_seconds = lease_seconds
        self.wall_clock = wall_clock
        self.fail_marks: BaseException | None = None
        self._items: dict[str, LedgerEntry] = {}
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------------------------

    def sent(self, keys: Iterable[str]) -> dict[str, datetime]:
        unique = list(dict.fromkeys(keys))
        with self._lock:
            return {k: item.sent_at for k in unique if (item := self._items.get(k)) and item.sent_at is not None}

    def states(self, keys: Iterable[str]) -> dict[str, str]:
        unique = list(dict.fromkeys(keys))
        with self._lock:
            return {k: self._items[k].state for k in unique if k in self._items}

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            return self._items.get(key)

    def stored_keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    # -- the protocol ------------------------------------------------------------------------------------

    def claim(self, key: str, **request: Any) -> Claim | None:
        """``request``: kind, run_id, expires_at, and optionally enterprise_customer_uuid, subject_uuid,
        resend_if_sent_before (the real ledger's arguments; another name is a TypeError, as there)."""
        with self._lock:
            return self._claim(key, **request)

    def _claim(
        self,
        key: str,
        *,
        kind: str,
        run_id: str,
        expires_at: datetime,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        resend_if_sent_before: datetime | None = None,
    ) -> Claim | None:
        now = self.wall_clock()
        item = self._items.get(key)
        free = (
            item is None
            or (item.state in (CLAIMED, REJECTED) and item.lease_until is not None and item.lease_until < now)
            or (
                resend_if_sent_before is not None
                and item.state == SENT
                and item.sent_at is not None
                and item.sent_at < resend_if_sent_before
            )
        )
        if not free:
            return None
        token = f"{run_id}:{next(self._tokens)}"
        base = item or LedgerEntry(pk=key, kind=kind, state=CLAIMED)
        self._items[key] = replace(
            base,
            kind=kind,
            state=CLAIMED,
            claim_token=token,
            lease_until=int(now) + self.lease_seconds,
            claimed_by_run=run_id,
            expires_at=expires_at,
            note=None,
            enterprise_customer_uuid=enterprise_customer_uuid or base.enterprise_customer_uuid,
            subject_uuid=subject_uuid or base.subject_uuid,
        )
        return Claim(key, token)

    def mark_sent(self, claim: Claim, *, as_of: datetime, run_id: str, dispatch_id: str) -> bool:
        with self._lock:
            return self._mark(claim, as_of=as_of, run_id=run_id, dispatch_id=dispatch_id)

    def _mark(self, claim: Claim, *, as_of: datetime, run_id: str, dispatch_id: str) -> bool:
        item = self._items.get(claim.key)
        if item is None or item.claim_token != claim.token:
            return False
        self._items[claim.key] = replace(
            item,
            state=SENT,
            sent_at=as_of,
            recorded_at=datetime.fromtimestamp(self.wall_clock(), UTC),
            run_id=run_id,
            dispatch_id=dispatch_id,
            claim_token=None,
            lease_until=None,
            claimed_by_run=None,
        )
        return True

    def release(self, claim: Claim) -> None:
        with self._lock:
            self._release(claim)

    def _release(self, claim: Claim) -> None:
        item = self._items.get(claim.key)
        if item is None or item.claim_token != claim.token:
            return  # already gone: the real ledger logs a warning
        if item.sent_at is None:
            del self._items[claim.key]
            return
        self._items[claim.key] = replace(item, state=SENT, claim_token=None, lease_until=None, claimed_by_run=None)

    def hold(self, claim: Claim, *, seconds: int, reason: str) -> None:
        with self._lock:
            self._hold(claim, seconds=seconds, reason=reason)

    def _hold(self, claim: Claim, *, seconds: int, reason: str) -> None:
        item = self._items.get(claim.key)
        if item is None or item.claim_token != claim.token:
            return
        self._items[claim.key] = replace(
            item, state=REJECTED, lease_until=int(self.wall_clock()) + seconds, note=reason, claim_token=None
        )

    # -- batches (the methods the pipeline calls) --------------------------------------------------------

    def claim_many(self, requests: Sequence[Mapping[str, Any]]) -> list[Claim | None]:
        with self._lock:
            return [self._claim(**request) for request in requests]

    def mark_sent_many(self, claims: Sequence[Claim], *, as_of: datetime, run_id: str, dispatch_id: str) -> int:
        with self._lock:
            if self.fail_marks is not None:
                raise self.fail_marks
            return sum(self._mark(c, as_of=as_of, run_id=run_id, dispatch_id=dispatch_id) for c in claims)

    def release_many(self, claims: Sequence[Claim]) -> None:
        with self._lock:
            for claim in claims:
                self._release(claim)

    def hold_many(self, claims: Sequence[Claim], *, seconds: int, reason: str) -> None:
        with self._lock:
            for claim in claims:
                self._hold(claim, seconds=seconds, reason=reason)

    # -- the cutover ---------------------------------------------------------------------------------------

    def import_sent_many(self, records: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Each record becomes a ``sent`` item unless its key exists (in any state) or came earlier in
        ``records``; True where written (``Ledger.import_sent_many``)."""
        with self._lock:
            recorded_at = datetime.fromtimestamp(self.wall_clock(), UTC)
            return [self._import(recorded_at, **record) for record in records]

    def _import(
        self,
        recorded_at: datetime,
        *,
        key: str,
        kind: str,
        sent_at: datetime,
        run_id: str,
        dispatch_id: str,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        if key in self._items:
            return False
        self._items[key] = LedgerEntry(
            pk=key,
            kind=kind,
            state=SENT,
            sent_at=sent_at,
            recorded_at=recorded_at,
            run_id=run_id,
            dispatch_id=dispatch_id,
            enterprise_customer_uuid=enterprise_customer_uuid or None,
            subject_uuid=subject_uuid or None,
            expires_at=None if expires_at is None else expires_at.replace(microsecond=0),  # stored as epoch seconds
        )
        return True

    # -- arranging a test ----------------------------------------------------------------------------------

    def record_sent(self, key: str, *, kind: str, as_of: datetime, run_id: str = "earlier-run") -> None:
        """Arrange an earlier send of ``key`` through the protocol itself (claim, then mark)."""
        claim = self.claim(key, kind=kind, run_id=run_id, expires_at=as_of + timedelta(days=90))
        if claim is None or not self.mark_sent(claim, as_of=as_of, run_id=run_id, dispatch_id=f"dispatch-{run_id}"):
            raise AssertionError(f"could not arrange an earlier send of {key}")

    def lose_claim(self, key: str) -> None:
        """Another worker took ``key`` over (as after a lease ran out): this run's token no longer matches."""
        with self._lock:
            self._items[key] = replace(self._items[key], claim_token="someone-else")


# =====================================================================================================
# Braze
# =====================================================================================================

ALIASES = "alias"
TRIGGER = "trigger"


@dataclass(frozen=True)
class BrazeCall:
    """One request the fake received: ``endpoint`` is ``alias`` or ``trigger``; ``outcome`` ``accepted``,
    ``refused`` (400) or the name of the error raised."""

    endpoint: str
    identifiers: tuple[str, ...]
    outcome: str
    campaign_id: str | None = None
    recipients: tuple[Recipient, ...] = ()
    trigger_properties: Mapping[str, Any] | None = None
    dispatch_id: str | None = None


def identifier_of(recipient: Recipient) -> str:
    return recipient.user_alias.alias_name if recipient.user_alias is not None else str(recipient.external_user_id)


class FakeBraze:
    """``BrazeClient``'s interface, recording every request, accepting by default.

    - ``refuse(identifier, reason, alias=False)``: any request naming it is refused whole (400,
      ``BadRequestError``), as Braze refuses a request with one bad recipient;
    - ``minor_error(identifier, reason)``: a trigger naming it is accepted with a non-fatal ``errors`` entry
      ``recipients[<i>] (<identifier>): <reason>``; ``request_error(reason)``: every trigger is accepted with
      a non-fatal ``errors`` entry naming no recipient;
    - ``fail_next(error, times=1, endpoint=TRIGGER)``: the next ``times`` requests to that endpoint raise
      ``error`` (an exception instance or a factory), e.g. ``ServerError`` (a transient failure that outlived
      its retries), ``AmbiguousOutcomeError`` (no reply to a send that went out), ``BadRequestError``;
    - ``on_request``: called with each ``BrazeCall`` before it is answered (a test's hook, e.g. a clock).

    ``request_count`` counts one per request (the real client counts HTTP attempts, retries included).
    """

    def __init__(self) -> None:
        self.calls: list[BrazeCall] = []
        self.refused: dict[str, dict[str, str]] = {ALIASES: {}, TRIGGER: {}}
        self.minor_errors: dict[str, str] = {}
        self.request_errors: list[str] = []
        self.on_request: Callable[[BrazeCall], None] | None = None
        self._failures: dict[str, list[BaseException | Callable[[], BaseException]]] = {ALIASES: [], TRIGGER: []}
        self._dispatch_ids = itertools.count(1)

    # -- arranging ------------------------------------------------------------------------------------------

    def refuse(self, identifier: str, reason: str = "invalid email address", *, alias: bool = False) -> None:
        self.refused[ALIASES if alias else TRIGGER][identifier] = reason

    def minor_error(self, identifier: str, reason: str = "user is unsubscribed") -> None:
        self.minor_errors[identifier] = reason

    def request_error(self, reason: str) -> None:
        self.request_errors.append(reason)

    def fail_next(
        self, error: BaseException | Callable[[], BaseException], *, times: int = 1, endpoint: str = TRIGGER
    ) -> None:
        self._failures[endpoint].extend([error] * times)

    # -- the BrazeClient interface ----------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        return len(self.calls)

    def create_aliases(self, aliases: Sequence[UserAlias]) -> None:
        unique = list(dict.fromkeys(aliases))
        for start in range(0, len(unique), MAX_ALIASES_PER_REQUEST):
            chunk = unique[start : start + MAX_ALIASES_PER_REQUEST]
            self._answer(ALIASES, tuple(a.alias_name for a in chunk))

    def trigger_campaign(
        self,
        campaign_id: str,
        recipients: Sequence[Recipient],
        *,
        trigger_properties: Mapping[str, Any] | None = None,
    ) -> SendResult:
        if not campaign_id:
            raise ValueError("campaign_id is required")
        if not 1 <= len(recipients) <= MAX_RECIPIENTS_PER_REQUEST:
            raise ValueError(f"1 to {MAX_RECIPIENTS_PER_REQUEST} recipients per request, got {len(recipients)}")
        identifiers = tuple(identifier_of(r) for r in recipients)
        call = self._answer(
            TRIGGER,
            identifiers,
            campaign_id=campaign_id,
            recipients=tuple(recipients),
            trigger_properties=dict(trigger_properties) if trigger_properties else None,
        )
        errors = tuple(
            f"recipients[{i}] ({ident}): {self.minor_errors[ident]}"
            for i, ident in enumerate(identifiers)
            if ident in self.minor_errors
        ) + tuple(self.request_errors)
        return SendResult(call.dispatch_id or "", errors)

    def _answer(self, endpoint: str, identifiers: tuple[str, ...], **details: Any) -> BrazeCall:
        call = BrazeCall(endpoint, identifiers, "accepted", **details)
        if self.on_request is not None:
            self.on_request(call)
        error: BaseException | None = None
        if self._failures[endpoint]:
            pending = self._failures[endpoint].pop(0)
            error = pending if isinstance(pending, BaseException) else pending()
        else:
            refused = self.refused[endpoint]
            for index, ident in enumerate(identifiers):
                if ident in refused:
                    what = "user_aliases" if endpoint == ALIASES else "recipients"
                    error = BadRequestError("braze", f"{what}[{index}]: {refused[ident]} ({ident})", status=400)
                    break
        if error is not None:
            outcome = "refused" if isinstance(error, BadRequestError) else type(error).__name__
            self.calls.append(replace(call, outcome=outcome))
            raise error
        if endpoint == TRIGGER:
            call = replace(call, dispatch_id=f"dispatch-{next(self._dispatch_ids)}")
        self.calls.append(call)
        return call

    # -- reading what happened --------------------------------------------------------------------------------

    def requests(self, endpoint: str | None = None) -> list[BrazeCall]:
        return [c for c in self.calls if endpoint is None or c.endpoint == endpoint]

    def accepted_triggers(self, campaign_id: str | None = None) -> list[BrazeCall]:
        return [
            c
            for c in self.calls
            if c.endpoint == TRIGGER and c.outcome == "accepted" and campaign_id in (None, c.campaign_id)
        ]

    def sent_to(self, campaign_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every recipient an accepted trigger reached: (identifier, top-level properties + the recipient's)."""
        return [
            (identifier_of(r), {**(c.trigger_properties or {}), **r.trigger_properties})
            for c in self.accepted_triggers(campaign_id)
            for r in c.recipients
        ]


# =====================================================================================================
# license-manager
# =====================================================================================================

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # the same instant as conftest.NOW (fakes import nothing from pytest)


def _new_uuid() -> UUID:
    return uuid_lib.uuid4()


def _parse_each[M](model: type[M], items: Iterable[Any], what: str, on_malformed: OnMalformed) -> Iterator[M]:
    """Records as the real adapter hands them over: models pass, dicts are parsed (one that does not parse goes
    to ``on_malformed``, or raises ``MalformedResponseError`` without it)."""
    for item in items:
        if not isinstance(item, dict):
            yield item
            continue
        try:
            yield parse_as(model, item, service="license-manager", what=what)
        except MalformedResponseError as exc:
            if on_malformed is None:
                raise
            on_malformed(item, exc)


class FakeLicenseManager:
    """``LicenseManagerClient``'s interface over in-memory plans, agreements and licenses.

    Like the real API, ``license_pages`` filters by status (unless ``honour_status_filter`` is False: a
    license-manager that ignores the filter) and serves pages of ``page_size`` (500); ``enterprise_plans``
    and an agreement's ``subscriptions`` hold active plans only, ``all_plans`` every plan. A raw ``dict``
    added with ``add_raw_license`` is parsed as the adapter does (so a malformed one reaches ``on_malformed``).
    ``calls`` logs ``(method, argument)``, ``statuses_asked`` each ``license_pages`` call's ``(plan, statuses)``;
    ``fail`` maps a method name to an exception it raises (``fail_plans`` a plan uuid to one its pages raise)."""

    def __init__(self, *, page_size: int = LICENSES_PAGE_SIZE, honour_status_filter: bool = True) -> None:
        self.page_size = page_size
        self.honour_status_filter = honour_status_filter
        self.agreements: dict[str, CustomerAgreement] = {}
        self.plans: dict[str, SubscriptionPlan] = {}
        self.licenses: dict[str, list[License | dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []
        self.statuses_asked: list[tuple[str, tuple[str, ...]]] = []
        self.fail: dict[str, BaseException] = {}
        self.fail_plans: dict[str, BaseException] = {}

    # -- arranging ------------------------------------------------------------------------------------------

    def add_agreement(
        self, enterprise_uuid: UUID | str, *, disable_expiration_notifications: bool = False
    ) -> CustomerAgreement:
        agreement = CustomerAgreement(
            uuid=_new_uuid(),
            enterprise_customer_uuid=UUID(str(enterprise_uuid)),
            disable_expiration_notifications=disable_expiration_notifications,
        )
        self.agreements[str(enterprise_uuid)] = agreement
        return agreement

    def add_plan(
        self,
        enterprise_uuid: UUID | str,
        *,
        title: str = "Plan",
        expires_in: timedelta = timedelta(days=10),
        started: timedelta = timedelta(days=355),
        now: datetime = NOW,
        is_active: bool = True,
        should_auto_apply_licenses: bool = False,
        allocated: int = 0,
        total: int = 0,
    ) -> SubscriptionPlan:
        plan = SubscriptionPlan(
            uuid=_new_uuid(),
            title=title,
            start_date=now - started,
            expiration_date=now + expires_in,
            enterprise_customer_uuid=UUID(str(enterprise_uuid)),
            is_active=is_active,
            should_auto_apply_licenses=should_auto_apply_licenses,
            licenses=LicenseCounts(allocated=allocated, total=total),
        )
        self.plans[str(plan.uuid)] = plan
        self.licenses.setdefault(str(plan.uuid), [])
        return plan

    def add_renewal(self, prior: SubscriptionPlan, renewal: SubscriptionPlan) -> SubscriptionPlan:
        """``renewal`` renews ``prior``: its ``prior_renewals`` names ``prior`` (contract 2.1). Returns the renewal
        as now served."""
        current = self.plans[str(renewal.uuid)]
        entry = PriorRenewal(
            prior_subscription_plan_id=prior.uuid,
            prior_subscription_plan_start_date=prior.start_date,
            renewed_subscription_plan_id=renewal.uuid,
            renewed_subscription_plan_start_date=renewal.start_date,
        )
        updated = current.model_copy(update={"prior_renewals": [*current.prior_renewals, entry]})
        self.plans[str(renewal.uuid)] = updated
        return updated

    def add_licenses(
        self, plan: SubscriptionPlan, status: str, count: int, email: str = "learner{n:04d}@example.com"
    ) -> list[License]:
        existing = self.licenses.setdefault(str(plan.uuid), [])
        start = len(existing)
        added = [
            License(
                uuid=_new_uuid(),
                status=status,
                user_email=email.format(n=start + i) if status != "unassigned" else None,
                subscription_plan_uuid=plan.uuid,
            )
            for i in range(count)
        ]
        existing.extend(added)
        return added

    def add_raw_license(self, plan: SubscriptionPlan, record: dict[str, Any]) -> None:
        self.licenses.setdefault(str(plan.uuid), []).append(record)

    def _check(self, method: str, argument: object) -> None:
        self.calls.append((method, str(argument)))
        if method in self.fail:
            raise self.fail[method]

    # -- the LicenseManagerClient interface ---------------------------------------------------------------------

    def customer_agreement(
        self, enterprise_customer_uuid: UUID | str, *, on_malformed: OnMalformed = None
    ) -> CustomerAgreement | None:
        self._check("customer_agreement", enterprise_customer_uuid)
        agreement = self.agreements.get(str(enterprise_customer_uuid))
        if agreement is None:
            return None
        active = [
            p
            for p in self.plans.values()
            if p.is_active and str(p.enterprise_customer_uuid) == str(enterprise_customer_uuid)
        ]
        return agreement.model_copy(update={"subscriptions": active})

    def enterprise_plans(
        self, enterprise_customer_uuid: UUID | str, *, on_malformed: OnMalformed = None
    ) -> list[SubscriptionPlan]:
        self._check("enterprise_plans", enterprise_customer_uuid)
        return [
            p
            for p in self.plans.values()
            if p.is_active and str(p.enterprise_customer_uuid) == str(enterprise_customer_uuid)
        ]

    def all_plans(self, *, on_malformed: OnMalformed = None) -> Iterator[SubscriptionPlan]:
        self._check("all_plans", "")
        return iter(list(self.plans.values()))

    def license_pages(
        self,
        plan_uuid: UUID | str,
        *,
        statuses: tuple[str, ...] = ("activated",),
        on_malformed: OnMalformed = None,
        first_page: int = 1,
        last_page: int | None = None,
    ) -> Iterator[LicensePage]:
        self._check("license_pages", plan_uuid)
        self.statuses_asked.append((str(plan_uuid), tuple(statuses)))
        if str(plan_uuid) in self.fail_plans:
            raise self.fail_plans[str(plan_uuid)]
        records = [
            r
            for r in self.licenses.get(str(plan_uuid), [])
            if not self.honour_status_filter or isinstance(r, dict) or r.status in statuses
        ]
        num_pages = max(1, -(-len(records) // self.page_size))
        for number in range(first_page, (last_page or num_pages) + 1):
            if number > num_pages:
                return
            self.calls.append(("license_page", str(plan_uuid)))
            chunk = records[(number - 1) * self.page_size : number * self.page_size]
            yield LicensePage(list(_parse_each(License, chunk, "license", on_malformed)), number, num_pages)


# =====================================================================================================
# The LMS
# =====================================================================================================


def enterprise_learner_record(enterprise_uuid: str | None, **overrides: Any) -> dict[str, Any]:
    """One ``results`` item of ``enterprise-learner/`` as the LMS serves it (contract 3.2, heavy nested fields
    trimmed): test data for the LMS client and the admin model."""
    item: dict[str, Any] = {
        "id": 901,
        "enterprise_customer": {"uuid": enterprise_uuid, "name": "X", "slug": "x"} if enterprise_uuid else None,
        "active": True,
        "user_id": 7001,
        "user": {
            "id": 7001,
            "username": "ada",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "is_staff": False,
            "is_active": True,
            "date_joined": "2024-01-01T00:00:00Z",
        },
        "created": "2026-02-20T10:30:00Z",
        "role_assignments": ["enterprise_learner", "enterprise_admin"],
    }
    item.update(overrides)
    return item


class FakeLms:
    """``LmsClient``'s interface: enterprise customers and their admins (records of admins only, one per
    (user, enterprise), as the real client yields them). An unknown enterprise is ``NotFoundError``."""

    def __init__(self) -> None:
        self.customers: dict[str, EnterpriseCustomer] = {}
        self.admins: dict[str, list[EnterpriseAdmin]] = {}
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)

    def add_customer(self, name: str = "Acme", **fields: Any) -> EnterpriseCustomer:
        slug = fields.pop("slug", name.lower().replace(" ", "-"))
        fields.setdefault("contact_email", f"admin@{slug}.example.com")
        fields.setdefault("default_language", "en")
        customer = EnterpriseCustomer(uuid=fields.pop("uuid", _new_uuid()), name=name, slug=slug, **fields)
        self.customers[str(customer.uuid)] = customer
        self.admins.setdefault(str(customer.uuid), [])
        return customer

    def add_admin(
        self,
        enterprise_uuid: UUID | str,
        *,
        joined: timedelta = timedelta(days=30),
        now: datetime = NOW,
        email: str | None = None,
        user_is_active: bool = True,
        user_id: int | None = None,
        first_name: str = "Ada",
        last_name: str = "Admin",
    ) -> EnterpriseAdmin:
        admin_id = next(self._ids)
        admin = EnterpriseAdmin(
            id=admin_id,
            user_id=user_id if user_id is not None else 5000 + admin_id,
            username=f"admin{admin_id}",
            first_name=first_name,
            last_name=last_name,
            email=email if email is not None else f"admin{admin_id}@example.com",
            user_is_active=user_is_active,
            created=now - joined,
            role_assignments=[ENTERPRISE_ADMIN_ROLE],
            enterprise_customer_uuid=UUID(str(enterprise_uuid)),
        )
        self.admins.setdefault(str(enterprise_uuid), []).append(admin)
        return admin

    def enterprise_customer(self, enterprise_customer_uuid: UUID | str) -> EnterpriseCustomer:
        self.calls.append(("enterprise_customer", str(enterprise_customer_uuid)))
        customer = self.customers.get(str(enterprise_customer_uuid))
        if customer is None:
            raise NotFoundError("lms", "Not found.", status=404)
        return customer

    def enterprise_admins(
        self, enterprise_customer_uuid: UUID | str, *, on_malformed: OnMalformed = None
    ) -> Iterator[EnterpriseAdmin]:
        self.calls.append(("enterprise_admins", str(enterprise_customer_uuid)))
        yield from list(self.admins.get(str(enterprise_customer_uuid), []))


# =====================================================================================================
# Time
# =====================================================================================================


@dataclass(frozen=True, kw_only=True)
class CountdownRun(JobRun):
    """A run whose time runs out after ``checks`` deadline checks: a short simulated timeout, hit at a chosen
    point whatever the machine's speed."""

    checks: list[int] = field(default_factory=lambda: [0])

    def out_of_time(self) -> bool:
        self.checks[0] -= 1
        return self.checks[0] < 0


# =====================================================================================================
# Everything together
# =====================================================================================================


@dataclass
class FakeWorld:
    """The four fakes, and the jobs wired to them (what ``Services`` does with the real adapters)."""

    ledger: InMemoryLedger = field(default_factory=InMemoryLedger)
    braze: FakeBraze = field(default_factory=FakeBraze)
    license_manager: FakeLicenseManager = field(default_factory=FakeLicenseManager)
    lms: FakeLms = field(default_factory=FakeLms)

    def adapters(self) -> dict[str, Any]:
        return {"license_manager": self.license_manager, "lms": self.lms, "braze": self.braze, "ledger": self.ledger}

    def expiration_reminders(self, campaign_id: str = "campaign-expiration-reminder") -> ExpirationReminders:
        return ExpirationReminders(campaign_id=campaign_id, **self.adapters())

    def plan_expiration_emails(self, campaign_id: str = "campaign-plan-expiration") -> PlanExpirationEmails:
        return PlanExpirationEmails(campaign_id=campaign_id, **self.adapters())

    def utilization(
        self, campaigns: Mapping[NotificationType, str] | None = None, portal: str = "https://portal.example.com"
    ) -> UtilizationNotifications:
        campaigns = campaigns or {kind: f"campaign-{kind.value}" for kind in NotificationType}
        return UtilizationNotifications(campaigns=dict(campaigns), admin_portal_base_url=portal, **self.adapters())
