"""license-manager REST API (contract section 2): plans, customer agreements, licenses."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

from license_notifications.adapters._parsing import parse_as
from license_notifications.adapters.http import HttpClient
from license_notifications.models import CustomerAgreement, License, SubscriptionPlan

SERVICE = "license-manager"
LICENSES_PAGE_SIZE = 500  # the API's maximum (contract 2.3)


class LicenseManagerClient:
    def __init__(self, http: HttpClient, base_url: str):
        self._http = http
        self._api = f"{base_url.rstrip('/')}/api/v1"

    def customer_agreement(self, enterprise_customer_uuid: UUID | str) -> CustomerAgreement | None:
        """The enterprise's customer agreement (with its active plans), or None if it has none (2.2)."""
        url = f"{self._api}/customer-agreement/"
        for page in self._http.paginate(url, params={"enterprise_customer_uuid": str(enterprise_customer_uuid)}):
            for item in page["results"]:
                agreement = parse_as(CustomerAgreement, item, service=SERVICE, what="customer agreement")
                if str(agreement.enterprise_customer_uuid) == str(enterprise_customer_uuid):
                    return agreement
        return None

    def enterprise_plans(self, enterprise_customer_uuid: UUID | str) -> list[SubscriptionPlan]:
        """Active plans of one enterprise (2.1)."""
        return list(self._plans({"enterprise_customer_uuid": str(enterprise_customer_uuid)}))

    def all_plans(self) -> Iterator[SubscriptionPlan]:
        """Every plan of every enterprise, active and inactive, streamed page by page (operator role, 2.1)."""
        return self._plans(None)

    def license_pages(
        self, plan_uuid: UUID | str, *, statuses: tuple[str, ...] = ("activated",)
    ) -> Iterator[list[License]]:
        """A plan's licenses with the given statuses, one page (<= 500) at a time; never all in memory (2.3)."""
        url = f"{self._api}/subscriptions/{plan_uuid}/licenses/"
        params = {"status": ",".join(statuses), "page_size": LICENSES_PAGE_SIZE}
        for page in self._http.paginate(url, params=params):
            yield [parse_as(License, item, service=SERVICE, what="license") for item in page["results"]]

    def _plans(self, params: dict[str, str] | None) -> Iterator[SubscriptionPlan]:
        for page in self._http.paginate(f"{self._api}/subscriptions/", params=params):
            for item in page["results"]:
                yield parse_as(SubscriptionPlan, item, service=SERVICE, what="subscription plan")
