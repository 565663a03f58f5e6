"""license-manager REST API (contract section 2): plans, customer agreements, licenses.

One record that does not parse (a missing ``uuid``, a non-string email, a plan without dates) costs only
itself: with ``on_malformed`` it is handed to the caller, which reports it, and the rest of the page goes on;
without it, it raises MalformedResponseError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from license_notifications.adapters._parsing import parse_as
from license_notifications.adapters.http import HttpClient
from license_notifications.errors import (
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
)
from license_notifications.models import CustomerAgreement, License, SubscriptionPlan

logger = logging.getLogger(__name__)

SERVICE = "license-manager"
LICENSES_PAGE_SIZE = 500  # the API's maximum (contract 2.3)
INVALID_PAGE = "Invalid page."  # DRF's 404 detail for a page past the list's end (contract 2.4)

OnMalformed = Callable[[Any, MalformedResponseError], None]
NOT_PERMITTED_HINT = (
    "license-manager refuses this service account's lists: it must be an LMS staff user (license-manager "
    "answers a non-staff caller's lists with 403) with the JWT role enterprise_openedx_operator:*"
)


class LicensePage(list[License]):
    """One page of a plan's licenses, with its page number and the list's ``num_pages`` (as the reply says)."""

    def __init__(self, licenses: list[License], number: int, num_pages: int | None):
        super().__init__(licenses)
        self.number = number
        self.num_pages = num_pages


class LicenseManagerClient:
    def __init__(self, http: HttpClient, base_url: str):
        self._http = http
        self._api = f"{base_url.rstrip('/')}/api/v1"

    def customer_agreement(
        self, enterprise_customer_uuid: UUID | str, *, on_malformed: OnMalformed | None = None
    ) -> CustomerAgreement | None:
        """The enterprise's customer agreement (with its active plans), or None if it has none (2.2).
        ``on_malformed`` receives each plan of ``subscriptions`` that does not parse (the others are kept)."""
        url = f"{self._api}/customer-agreement/"
        for page in self._pages(url, {"enterprise_customer_uuid": str(enterprise_customer_uuid)}):
            for item in page["results"]:
                raw_plans = item.get("subscriptions") if isinstance(item, dict) else None
                if raw_plans is not None and not isinstance(raw_plans, list):
                    raise MalformedResponseError(SERVICE, "unexpected customer agreement: subscriptions: not a list")
                shell = {**item, "subscriptions": []} if isinstance(item, dict) else item
                agreement = parse_as(CustomerAgreement, shell, service=SERVICE, what="customer agreement")
                if str(agreement.enterprise_customer_uuid) != str(enterprise_customer_uuid):
                    continue
                plans = list(_parse_each(SubscriptionPlan, raw_plans or [], "subscription plan", on_malformed))
                return agreement.model_copy(update={"subscriptions": plans})
        return None

    def enterprise_plans(
        self, enterprise_customer_uuid: UUID | str, *, on_malformed: OnMalformed | None = None
    ) -> list[SubscriptionPlan]:
        """Active plans of one enterprise (2.1)."""
        return list(self._plans({"enterprise_customer_uuid": str(enterprise_customer_uuid)}, on_malformed))

    def all_plans(self, *, on_malformed: OnMalformed | None = None) -> Iterator[SubscriptionPlan]:
        """Every plan of every enterprise, active and inactive, streamed page by page (operator role, 2.1)."""
        return self._plans(None, on_malformed)

    def license_pages(
        self,
        plan_uuid: UUID | str,
        *,
        statuses: tuple[str, ...] = ("activated",),
        on_malformed: OnMalformed | None = None,
        first_page: int = 1,
        last_page: int | None = None,
    ) -> Iterator[LicensePage]:
        """A plan's licenses with the given statuses, one page (<= 500) at a time; never all in memory (2.3).
        ``first_page`` / ``last_page`` (inclusive) read a range of the list's pages.

        The list is live: licenses revoked or expired while it is read (or between a message and its
        continuation) shorten it, and license-manager answers a page past the new end with 404 "Invalid page."
        (2.4). That ends the range with the pages it had (logged): the licenses the shortening moved onto
        earlier pages hold no record, so the next scheduled run finds them due."""
        url = f"{self._api}/subscriptions/{plan_uuid}/licenses/"
        params: dict[str, Any] = {"status": ",".join(statuses), "page_size": LICENSES_PAGE_SIZE}
        if first_page > 1:
            params["page"] = first_page
        pages, number = self._pages(url, params), first_page
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except NotFoundError as exc:
                if number == 1 or INVALID_PAGE not in str(exc):
                    raise
                logger.warning(
                    "license-manager has no page %d of plan %s's licenses any more (the list shrank while it was "
                    "read): the range ends there; licenses moved onto earlier pages are due at the next run",
                    number,
                    plan_uuid,
                    extra={"subscription_plan_uuid": str(plan_uuid), "page": number},
                )
                return
            num_pages = page.get("num_pages") if isinstance(page.get("num_pages"), int) else None
            yield LicensePage(list(_parse_each(License, page["results"], "license", on_malformed)), number, num_pages)
            if last_page is not None and number >= last_page:
                return
            number += 1

    def _plans(self, params: dict[str, str] | None, on_malformed: OnMalformed | None) -> Iterator[SubscriptionPlan]:
        for page in self._pages(f"{self._api}/subscriptions/", params):
            yield from _parse_each(SubscriptionPlan, page["results"], "subscription plan", on_malformed)

    def _pages(self, url: str, params: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        """The list's pages. A 403 on a list is the account's, not one enterprise's (contract 2.4: only
        non-staff tokens get one), so it is a configuration error that stops the run, naming what to fix."""
        try:
            yield from self._http.paginate(url, params=params)
        except PermissionDeniedError as exc:
            raise ConfigurationError(f"{NOT_PERMITTED_HINT} ({exc})") from exc


def _parse_each[M](model: type[M], items: list[Any], what: str, on_malformed: OnMalformed | None) -> Iterator[M]:
    for item in items:
        try:
            yield parse_as(model, item, service=SERVICE, what=what)
        except MalformedResponseError as exc:
            if on_malformed is None:
                raise
            on_malformed(item, exc)
