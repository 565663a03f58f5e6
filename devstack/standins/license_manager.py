"""license-manager stand-in: subscriptions, customer agreements and licenses (contract sections 2, 2.1-2.3)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.dataset import Agreement, Dataset, License, Plan, canonical_uuid, iso_z

from .base import HttpError, Reply, Request, Route, StandIn, paginate
from .oauth import TokenRegistry, require_jwt

PLAN_PAGE_SIZE = 100  # DRF PAGE_SIZE (contract section 2)
LICENSE_PAGE_SIZE = 100
LICENSE_MAX_PAGE_SIZE = 500  # LicensePagination.max_page_size (contract 2.3)
# contract silent: settings.SUBSCRIPTION_PLAN_RENEWAL_LOCK_PERIOD_HOURS; 12 hours here.
RENEWAL_LOCK_PERIOD_HOURS = 12
LICENSE_ORDERING_FIELDS = ("user_email", "status", "activation_date", "last_remind_date")


class LicenseManagerStandIn(StandIn):
    """license-manager's ``/api/v1`` read API behind LMS-issued JWTs.

    Args:
        dataset: plans, agreements and licenses to serve (an empty ``Dataset`` if omitted).
        registry: the LMS stand-in's ``TokenRegistry`` (``lms.registry``): tokens are checked there.
        clock: "now" for ``is_current`` / ``days_until_expiration`` (default: the real UTC clock);
            ``set_now()`` freezes it.
        plan_page_size: server-side page size of the subscription and customer-agreement lists.
    """

    name = "license-manager stand-in"

    def __init__(
        self,
        dataset: Dataset | None = None,
        registry: TokenRegistry | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        plan_page_size: int = PLAN_PAGE_SIZE,
    ) -> None:
        self.dataset = dataset if dataset is not None else Dataset()
        self.registry = registry if registry is not None else TokenRegistry()
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.plan_page_size = plan_page_size
        self._throttle_lock = threading.Lock()
        self._throttle_limit: float | None = None
        self._recent: deque[float] = deque()
        super().__init__()

    # ------------------------------------------------------------------------------------------ controls
    def now(self) -> datetime:
        return self.clock()

    def set_now(self, now: datetime | None) -> None:
        """Freeze the stand-in's clock at ``now`` (aware UTC); None returns to the real clock."""
        if now is None:
            self.clock = lambda: datetime.now(UTC)
            return
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.clock = lambda: now

    def throttle(self, limit_per_second: float | None) -> None:
        """Answer 429 + ``Retry-After`` past ``limit_per_second`` requests in any one second (None: off).

        Contract section 2 names 18/s burst and 360/min sustained; only the per-second limit is modelled.
        """
        with self._throttle_lock:
            self._throttle_limit = limit_per_second
            self._recent.clear()

    def routes(self) -> list[Route]:
        plan = r"/api/v1/subscriptions/(?P<plan>[^/]+)"
        return [
            Route("GET", r"/api/v1/subscriptions", self.list_subscriptions),
            Route("GET", plan, self.get_subscription),
            Route("GET", plan + r"/licenses", self.list_licenses),
            Route("GET", plan + r"/licenses/overview", self.licenses_overview),
            Route("GET", r"/api/v1/customer-agreement", self.list_customer_agreements),
        ]

    def authenticate(self, request: Request) -> None:
        """JwtAuthentication (contract section 1), then DRF's throttle check (contract section 2)."""
        require_jwt(request, self.registry)
        self._check_throttle()

    def _check_throttle(self) -> None:
        with self._throttle_lock:
            if self._throttle_limit is None:
                return
            current = time.monotonic()
            while self._recent and current - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= self._throttle_limit:
                wait = max(1, math.ceil(1.0 - (current - self._recent[0])))
                unit = "second" if wait == 1 else "seconds"
                raise self.error(
                    429, f"Request was throttled. Expected available in {wait} {unit}.", {"Retry-After": str(wait)}
                )
            self._recent.append(current)

    # ------------------------------------------------------------------------------------------ handlers
    def list_subscriptions(self, request: Request) -> Reply:
        """Contract 2.1: with ``enterprise_customer_uuid`` that enterprise's active plans; without it every
        plan of every enterprise (operator role). Both ordered by ``-start_date``.

        contract silent: ``page_size`` is not honoured here (the contract says only the licenses list
        accepts it; DRF's default paginator ignores it); the page size is the server's (``plan_page_size``).
        """
        enterprise_uuid = self._enterprise_param(request)
        now = self.now()
        with self.dataset.lock:
            plans = list(self.dataset.plans.values())
            if enterprise_uuid is not None:
                plans = [p for p in plans if p.enterprise_customer_uuid == enterprise_uuid and p.is_active]
            plans.sort(key=lambda p: p.uuid)
            plans.sort(key=lambda p: p.start_date, reverse=True)  # stable: uuid breaks ties (contract silent)
            page = self._paginate(request, plans, self.plan_page_size, None, page_size_param=False)
            results = [self._plan_json(plan, now) for plan in page.items]
        return Reply(
            200, {"count": page.count, "next": page.next_url, "previous": page.previous_url, "results": results}
        )

    def get_subscription(self, request: Request) -> Reply:
        """Contract 2.1: ``GET /api/v1/subscriptions/<plan_uuid>/``; 404 when unknown."""
        with self.dataset.lock:
            plan = self._plan_or_404(request)
            return Reply(200, self._plan_json(plan, self.now()))

    def list_licenses(self, request: Request) -> Reply:
        """Contract 2.3: ``GET /api/v1/subscriptions/<plan_uuid>/licenses/?status=a,b&page_size=500``.

        ``page_size`` default 100, clamped at 500. Default order ``status, user_email`` (license-manager's
        LicenseViewSet), null emails first as in MySQL, uuid as tie-breaker (contract silent).
        Fault injection: the plan's ``Dataset.extra_raw_licenses`` follow, verbatim and unfiltered.
        """
        with self.dataset.lock:
            plan = self._plan_or_404(request)
            licenses: list[Any] = self._filtered_licenses(request, self.dataset.licenses_of(plan.uuid))
            licenses += [dict(raw) for raw in self.dataset.extra_raw_licenses.get(plan.uuid, ())]
            page = self._paginate(request, licenses, LICENSE_PAGE_SIZE, LICENSE_MAX_PAGE_SIZE, page_size_param=True)
            results = [self._license_json(record) if isinstance(record, License) else record for record in page.items]
        return Reply(
            200,
            {
                "count": page.count,
                "next": page.next_url,
                "previous": page.previous_url,
                "num_pages": page.num_pages,
                "results": results,
            },
        )

    def licenses_overview(self, request: Request) -> Reply:
        """Contract 2.3: bare list ``[{"status", "count"}]``; statuses with no license are absent.
        Ordered by count, highest first (contract silent; license-manager orders by ``-count``)."""
        with self.dataset.lock:
            plan = self._plan_or_404(request)
            licenses = self._filtered_licenses(request, self.dataset.licenses_of(plan.uuid))
        tally = Counter(record.status for record in licenses)
        ordered = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
        return Reply(200, [{"status": status, "count": count} for status, count in ordered])

    def list_customer_agreements(self, request: Request) -> Reply:
        """Contract 2.2: ``GET /api/v1/customer-agreement/?enterprise_customer_uuid=<uuid>``, paginated.

        Unknown enterprise: count 0. ``subscriptions`` holds active plans unless ``active_plans_only=false``.
        contract silent: without ``enterprise_customer_uuid`` every agreement (operator role), ordered by
        uuid, as license-manager's CustomerAgreementViewSet does.
        """
        enterprise_uuid = self._enterprise_param(request)
        active_only = (request.param("active_plans_only", "true") or "true").lower() == "true"
        now = self.now()
        with self.dataset.lock:
            agreements = sorted(self.dataset.agreements.values(), key=lambda a: a.uuid)
            if enterprise_uuid is not None:
                agreements = [a for a in agreements if a.enterprise_customer_uuid == enterprise_uuid]
            page = self._paginate(request, agreements, self.plan_page_size, None, page_size_param=False)
            results = [self._agreement_json(agreement, now, active_only) for agreement in page.items]
        return Reply(
            200, {"count": page.count, "next": page.next_url, "previous": page.previous_url, "results": results}
        )

    # ------------------------------------------------------------------------------------------- helpers
    def _paginate(self, request: Request, items: list[Any], size: int, max_size: int | None, *, page_size_param: bool):
        return paginate(
            request,
            items,
            base_url=self.url,
            default_size=size,
            max_size=max_size,
            page_size_param=page_size_param,
            not_found=lambda message: self.error(404, message),
        )

    def _enterprise_param(self, request: Request) -> str | None:
        raw = request.param("enterprise_customer_uuid")
        if not raw:
            return None
        canonical = canonical_uuid(raw)
        if canonical is None:
            # contract silent: a malformed enterprise uuid is a 400.
            raise self.error(400, f"Invalid enterprise_customer_uuid: {raw}")
        return canonical

    def _plan_or_404(self, request: Request) -> Plan:
        assert request.match is not None
        key = canonical_uuid(request.match["plan"])
        plan = self.dataset.plans.get(key) if key else None
        if plan is None:
            raise HttpError(Reply(404, {"detail": "Not found."}))
        return plan

    def _filtered_licenses(self, request: Request, licenses: list[License]) -> list[License]:
        """``status`` (comma list), ``active_only``, ``ignore_null_emails``, ``search``, ``ordering``."""
        raw_status = request.param("status")
        if raw_status:
            wanted = set(raw_status.strip().split(","))  # unknown values simply match nothing, as upstream
            licenses = [record for record in licenses if record.status in wanted]
        if (request.param("active_only") or "").lower() in ("1", "true"):
            licenses = [record for record in licenses if record.status in ("activated", "assigned")]
        if (request.param("ignore_null_emails") or "").lower() in ("1", "true"):
            licenses = [record for record in licenses if record.user_email is not None]
        search = request.param("search")
        if search:
            licenses = [record for record in licenses if search.lower() in (record.user_email or "").lower()]
        ordering = [
            term
            for term in (request.param("ordering") or "").split(",")
            if term.strip().lstrip("-") in LICENSE_ORDERING_FIELDS
        ] or ["status", "user_email"]
        ordered = sorted(licenses, key=lambda record: record.uuid)
        for term in reversed(ordering):  # stable sorts, last key first
            name = term.strip().lstrip("-")
            ordered.sort(key=lambda record, name=name: _null_first(getattr(record, name)), reverse=term.startswith("-"))
        return ordered

    # ------------------------------------------------------------------------------------------ rendering
    def _plan_json(self, plan: Plan, now: datetime) -> dict[str, Any]:
        """Every field of contract 2.1; counts and day fields computed now."""
        dataset = self.dataset
        future = dataset.future_renewals(plan.uuid)
        expiration_including_renewals = max([r.renewed_expiration_date for r in future], default=plan.expiration_date)
        own_renewal = future[0] if future else None
        locked = False
        if own_renewal is not None:
            hours = (own_renewal.effective_date - now).total_seconds() / 3600
            locked = 0 <= hours < RENEWAL_LOCK_PERIOD_HOURS
        counts = dataset.license_counts(plan.uuid)
        revocations = None
        if plan.is_revocation_cap_enabled:
            allowed = math.ceil(counts["total"] * plan.revoke_max_percentage / 100)
            revocations = {"applied": plan.num_revocations_applied, "remaining": allowed - plan.num_revocations_applied}
        return {
            "title": plan.title,
            "uuid": plan.uuid,
            "start_date": iso_z(plan.start_date),
            "expiration_date": iso_z(plan.expiration_date),
            "enterprise_customer_uuid": plan.enterprise_customer_uuid,
            "enterprise_catalog_uuid": plan.enterprise_catalog_uuid,
            "is_active": plan.is_active,
            "is_current": plan.start_date <= now <= plan.expiration_date,
            "is_revocation_cap_enabled": plan.is_revocation_cap_enabled,
            # license-manager's days_until(): (date - now).days, i.e. whole days, rounded down.
            "days_until_expiration": (plan.expiration_date - now).days,
            "days_until_expiration_including_renewals": (expiration_including_renewals - now).days,
            "is_locked_for_renewal_processing": locked,
            "should_auto_apply_licenses": plan.should_auto_apply_licenses,
            "created": iso_z(plan.created),
            "plan_type": plan.plan_type,
            "salesforce_opportunity_line_item": plan.salesforce_opportunity_line_item,
            "licenses": counts,
            "revocations": revocations,
            # contract silent on which plan lists it: license-manager's SubscriptionPlan.prior_renewals holds
            # the renewals that LED TO a plan, so it is on the renewed plan and empty on the plan being renewed
            # (that one shows the renewal in days_until_expiration_including_renewals).
            "prior_renewals": [
                {
                    "prior_subscription_plan_id": renewal.prior_plan_uuid,
                    "prior_subscription_plan_start_date": iso_z(dataset.plans[renewal.prior_plan_uuid].start_date),
                    "renewed_subscription_plan_id": renewal.renewed_plan_uuid,
                    "renewed_subscription_plan_start_date": iso_z(dataset.plans[renewal.renewed_plan_uuid].start_date),
                }
                for renewal in dataset.prior_renewals(plan.uuid)
            ],
        }

    def _agreement_json(self, agreement: Agreement, now: datetime, active_plans_only: bool) -> dict[str, Any]:
        """Contract 2.2 fields (no enterprise name)."""
        plans = sorted(self.dataset.plans_of(agreement.enterprise_customer_uuid), key=lambda p: p.uuid)
        auto_plan = self.dataset.auto_applicable_plan(agreement.enterprise_customer_uuid, now)
        current_catalogs = sorted(
            {p.enterprise_catalog_uuid for p in plans if p.is_active and p.start_date <= now <= p.expiration_date}
        )
        rendered = [self._plan_json(plan, now) for plan in plans]
        net_days = max([0, *(plan["days_until_expiration_including_renewals"] for plan in rendered)])
        return {
            "uuid": agreement.uuid,
            "enterprise_customer_uuid": agreement.enterprise_customer_uuid,
            "enterprise_customer_slug": agreement.enterprise_customer_slug,
            "default_enterprise_catalog_uuid": agreement.default_enterprise_catalog_uuid,
            "disable_expiration_notifications": agreement.disable_expiration_notifications,
            "net_days_until_expiration": net_days,
            "subscription_for_auto_applied_licenses": auto_plan.uuid if auto_plan else None,
            "available_subscription_catalogs": current_catalogs,
            "subscriptions": [
                plan_json
                for plan, plan_json in zip(plans, rendered, strict=True)
                if plan.is_active or not active_plans_only
            ],
        }

    @staticmethod
    def _license_json(record: License) -> dict[str, Any]:
        """Exactly the contract 2.3 fields."""
        return {
            "uuid": record.uuid,
            "status": record.status,
            "user_email": record.user_email,
            "activation_date": iso_z(record.activation_date),
            "last_remind_date": iso_z(record.last_remind_date),
            "subscription_plan_uuid": record.subscription_plan_uuid,
            "revoked_date": iso_z(record.revoked_date),
            "activation_key": record.activation_key,
        }


def _null_first(value: Any) -> tuple[bool, Any]:
    # MySQL sorts NULL before any value in ascending order.
    return (value is not None, value if value is not None else "")
