"""LMS / edx-enterprise REST API (contract section 3)."""

from __future__ import annotations

from uuid import UUID

from license_notifications.adapters._parsing import parse_as
from license_notifications.adapters.http import HttpClient
from license_notifications.models import EnterpriseCustomer

SERVICE = "lms"


class LmsClient:
    def __init__(self, http: HttpClient, base_url: str):
        self._http = http
        self._api = f"{base_url.rstrip('/')}/enterprise/api/v1"

    def enterprise_customer(self, enterprise_customer_uuid: UUID | str) -> EnterpriseCustomer:
        """An active enterprise customer (3.1). An inactive or unknown one raises NotFoundError."""
        data = self._http.get(f"{self._api}/enterprise-customer/{enterprise_customer_uuid}/")
        return parse_as(EnterpriseCustomer, data, service=SERVICE, what="enterprise customer")
