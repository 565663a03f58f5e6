"""license-manager stand-in: the plans feed, customer agreements and licenses the client reads (contract sections
2, 2.1-2.4). Not served, as the client never calls them: plan detail, ``licenses/overview``, the licenses
list's filters other than ``status``; the renewal lock and revocation cap are rendered as off."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.dataset import Agreement, Dataset, License, Plan, canonical_uuid, iso_z

from .base import Reply, Request, StandIn, route, server_error
from .oauth import TokenRegistry, caller_has, require_jwt

PLAN_PAGE_SIZE = 100  # DRF PAGE_SIZE (contract section 2)
LICENSE_PAGE_SIZE = 100
LICENSE_MAX_PAGE_SIZE = 500  # LicensePagination.max_page_size (contract 2.3)
# What a staff caller without the enterprise_openedx_operator role gets from every list (contract 2.4).
NO_PERMISSION_PAGE = {"count": 0, "next": None, "previous": None, "results": []}
LIST_FIELDS = ("count", "next", "previous", "results")  # no num_pages but on licenses (contract 2.4)


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
    def set_now(self, now: datetime | None) -> None:
        """Freeze the stand-in's clock at ``now`` (aware UTC); None returns to the real clock."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))  # type: ignore[assignment,return-value]

    def throttle(self, limit_per_second: float | None) -> None:
        """Answer 429 + ``Retry-After`` past ``limit_per_second`` requests in any one second (None: off).

        Contract section 2 names 18/s burst and 360/min sustained; only the per-second limit is modelled.
        """
        with self._throttle_lock:
            self._throttle_limit = limit_per_second
            self._recent.clear()

    def routes(self) -> list[Any]:
        return [
            route("GET", "/api/v1/subscriptions", self.list_subscriptions),
            route("GET", "/api/v1/subscriptions/<plan>/licenses", self.list_licenses),
            route("GET", "/api/v1/customer-agreement", self.list_customer_agreements),
        ]

    def authenticate(self, request: Request) -> None:
        """JwtAuthentication (contract section 1), DRF's permission check (a non-staff caller gets 403 on the
        list endpoints, contract 2.4), then its throttle check (contract 2.4's 429)."""
        caller = require_jwt(request, self.registry)
        if not caller.staff:
            raise self.error(403, "You do not have permission to perform this action.")
        with self._throttle_lock:
            if self._throttle_limit is None:
                return
            current = time.monotonic()
            while self._recent and current - self._recent[0] >= 1.0:
                self._recent.popleft()
            if len(self._recent) >= self._throttle_limit:
                wait = max(1, math.ceil(1.0 - (current - self._recent[0])))
                message = f"Request was throttled. Expected available in {wait} second{'s' if wait > 1 else ''}."
                raise self.error(429, message, {"Retry-After": str(wait)})
            self._recent.append(current)

    # ------------------------------------------------------------------------------------------ handlers
    def list_subscriptions(self, request: Request) -> Reply:
        """Contract 2.1: with ``enterprise_customer_uuid`` that enterprise's active plans; without it every
        plan of every enterprise (operator role). Both ordered by ``-start_date`` (uuid breaks ties, contract
        silent). ``page_size`` is ignored (contract 2.4)."""
        if not caller_has(request, "operator"):
            return Reply(200, dict(NO_PERMISSION_PAGE))
        enterprise_uuid, now = self._enterprise_param(request), self.clock()
        with self.dataset.lock:
            plans = sorted(self.dataset.plans.values(), key=lambda p: p.uuid)
            if enterprise_uuid is not None:
                plans = [p for p in plans if p.enterprise_customer_uuid == enterprise_uuid and p.is_active]
            plans.sort(key=lambda p: p.start_date, reverse=True)
            page = self.paginate(request, plans, size=self.plan_page_size, fields=LIST_FIELDS)
            page["results"] = [self._plan_json(plan, now) for plan in page["results"]]
        return Reply(200, page)

    def list_licenses(self, request: Request) -> Reply:
        """Contract 2.3: ``GET /api/v1/subscriptions/<plan_uuid>/licenses/?status=a,b&page_size=500``.

        ``page_size`` default 100, capped at 500; an unknown plan has none. Order ``status, user_email`` (license-manager's
        LicenseViewSet), null emails first as in MySQL, uuid as tie-breaker (contract silent). Unknown statuses
        match nothing. Fault injection: the plan's ``Dataset.extra_raw_licenses`` follow, verbatim, unfiltered.
        """
        if not caller_has(request, "operator"):
            return Reply(200, dict(NO_PERMISSION_PAGE))
        key = canonical_uuid(request.match["plan"])
        if key is None:  # contract 2.4: a malformed plan uuid in the path is a 500
            raise server_error()
        wanted = set((request.param("status") or "").split(",")) - {""}
        with self.dataset.lock:
            # contract 2.4: an unknown plan's licenses are a 200 with no results (its page 2 a 404 "Invalid page.")
            licenses: list[Any] = self._plan_licenses(key, frozenset(wanted))
            licenses += [dict(raw) for raw in self.dataset.extra_raw_licenses.get(key, ())]
            page = self.paginate(
                request,
                licenses,
                size=LICENSE_PAGE_SIZE,
                max_size=LICENSE_MAX_PAGE_SIZE,
                fields=("count", "next", "previous", "num_pages", "results"),
            )
            page["results"] = [self._license_json(lic) if isinstance(lic, License) else lic for lic in page["results"]]
        return Reply(200, page)

    def _plan_licenses(self, plan_uuid: str, statuses: frozenset[str]) -> list[Any]:
        """The plan's licenses of ``statuses`` (all when empty) in the list's order; a new list each call. The
        benchmark memoises this (its dataset does not change while it pages)."""
        return sorted(
            (lic for lic in self.dataset.licenses_of(plan_uuid) if not statuses or lic.status in statuses),
            key=lambda lic: (lic.status, lic.user_email is not None, lic.user_email or "", lic.uuid),
        )

    def list_customer_agreements(self, request: Request) -> Reply:
        """Contract 2.2: ``GET /api/v1/customer-agreement/?enterprise_customer_uuid=<uuid>``, paginated; an
        unknown enterprise has none (count 0). ``subscriptions`` holds the active plans, every plan with
        ``active_plans_only=false``. contract silent: without ``enterprise_customer_uuid`` every agreement
        (operator role), ordered by uuid as license-manager does."""
        if not caller_has(request, "operator"):
            return Reply(200, dict(NO_PERMISSION_PAGE))
        enterprise_uuid, now = self._enterprise_param(request), self.clock()
        with self.dataset.lock:
            agreements = sorted(self.dataset.agreements.values(), key=lambda a: a.uuid)
            if enterprise_uuid is not None:
                agreements = [a for a in agreements if a.enterprise_customer_uuid == enterprise_uuid]
            page = self.paginate(request, agreements, size=self.plan_page_size, fields=LIST_FIELDS)
            active_only = (request.param("active_plans_only") or "true").lower() != "false"
            page["results"] = [self._agreement_json(agreement, now, active_only) for agreement in page["results"]]
        return Reply(200, page)

    # ------------------------------------------------------------------------------------------- helpers
    def _enterprise_param(self, request: Request) -> str | None:
        raw = request.param("enterprise_customer_uuid")
        canonical = canonical_uuid(raw) if raw else None
        if raw and canonical is None:
            raise self.error(400, f"Invalid enterprise_customer_uuid: {raw}")  # contract 2.4: a 400
        return canonical

    def _plan_json(self, plan: Plan, now: datetime) -> dict[str, Any]:
        """Every field of contract 2.1; counts and day fields computed now."""
        renewed_until = self.dataset.renewed_expiration_date(plan.uuid)
        return {
            "title": plan.title,
            "uuid": plan.uuid,
            "start_date": iso_z(plan.start_date),
            "expiration_date": iso_z(plan.expiration_date),
            "enterprise_customer_uuid": plan.enterprise_customer_uuid,
            "enterprise_catalog_uuid": plan.enterprise_catalog_uuid,
            "is_active": plan.is_active,
            "is_current": plan.start_date <= now <= plan.expiration_date,
            "is_revocation_cap_enabled": False,
            # license-manager's days_until(): (date - now).days, i.e. whole days, rounded down.
            "days_until_expiration": (plan.expiration_date - now).days,
            "days_until_expiration_including_renewals": (renewed_until - now).days,
            "is_locked_for_renewal_processing": False,
            "should_auto_apply_licenses": plan.should_auto_apply_licenses,
            "created": iso_z(plan.created),
            "plan_type": plan.plan_type,
            "salesforce_opportunity_line_item": None,
            "licenses": self.dataset.license_counts(plan.uuid),
            "revocations": None,
            # license-manager's SubscriptionPlan.prior_renewals: the renewal that LED TO this plan.
            "prior_renewals": [
                {
                    "prior_subscription_plan_id": prior.uuid,
                    "prior_subscription_plan_start_date": iso_z(prior.start_date),
                    "renewed_subscription_plan_id": plan.uuid,
                    "renewed_subscription_plan_start_date": iso_z(plan.start_date),
                }
                for prior in self.dataset.renewed_from(plan.uuid)
            ],
        }

    def _agreement_json(self, agreement: Agreement, now: datetime, active_only: bool = True) -> dict[str, Any]:
        """Contract 2.2 fields (no enterprise name), and some of the others the real one carries (2.4)."""
        plans = sorted(self.dataset.plans_of(agreement.enterprise_customer_uuid), key=lambda p: p.uuid)
        current = [p for p in plans if p.is_active and p.start_date <= now <= p.expiration_date]
        auto = next((p.uuid for p in current if p.should_auto_apply_licenses), None)
        rendered = [self._plan_json(plan, now) for plan in plans if plan.is_active or not active_only]
        return {
            "uuid": agreement.uuid,
            "enterprise_customer_uuid": agreement.enterprise_customer_uuid,
            "enterprise_customer_slug": agreement.enterprise_customer_slug,
            "default_enterprise_catalog_uuid": agreement.default_enterprise_catalog_uuid,
            "disable_expiration_notifications": agreement.disable_expiration_notifications,
            "net_days_until_expiration": max([0, *(p["days_until_expiration_including_renewals"] for p in rendered)]),
            "subscription_for_auto_applied_licenses": auto,
            "available_subscription_catalogs": sorted({p.enterprise_catalog_uuid for p in current}),
            "subscriptions": rendered,
            # Fields the client does not read (contract 2.4 names these kinds); present so it must ignore them.
            "enable_auto_applied_subscriptions_with_universal_link": False,
            "expired_subscription_modal_messaging_v2": None,
            "modal_header_text_v2": None,
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
