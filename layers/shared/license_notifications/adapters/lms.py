"""LMS / edx-enterprise REST API (contract section 3)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from license_notifications.adapters._parsing import parse_as
from license_notifications.adapters.http import HttpClient
from license_notifications.errors import MalformedResponseError
from license_notifications.models import ENTERPRISE_ADMIN_ROLE, EnterpriseAdmin, EnterpriseCustomer

SERVICE = "lms"
ENTERPRISE_LEARNER_PAGE_SIZE = 100  # the endpoint's maximum (contract 3.2; its default is 10)

logger = logging.getLogger(__name__)


class LmsClient:
    def __init__(self, http: HttpClient, base_url: str):
        self._http = http
        self._api = f"{base_url.rstrip('/')}/enterprise/api/v1"

    def enterprise_customer(self, enterprise_customer_uuid: UUID | str) -> EnterpriseCustomer:
        """An active enterprise customer (3.1). An inactive or unknown one raises NotFoundError."""
        data = self._http.get(f"{self._api}/enterprise-customer/{enterprise_customer_uuid}/")
        return parse_as(EnterpriseCustomer, data, service=SERVICE, what="enterprise customer")

    def enterprise_admins(
        self,
        enterprise_customer_uuid: UUID | str,
        *,
        on_malformed: Callable[[Any, MalformedResponseError], None] | None = None,
    ) -> Iterator[EnterpriseAdmin]:
        """The enterprise's admins (3.2), streamed page by page (100 a request, following ``next``).

        One record per (user, enterprise): an admin of several enterprises appears once in each, with a
        different ``id`` and the same ``user_id``. Only records whose ``role_assignments`` contain
        ``enterprise_admin`` are yielded, and a record naming another enterprise is skipped: the LMS applies
        the ``enterprise_customer_uuid`` / ``role`` filters only for staff callers, and a non-staff service
        account silently gets only its own record instead (contract section 1), which must never be taken
        for this enterprise's admin list. A record not matching the contract raises MalformedResponseError,
        or, with ``on_malformed``, is handed to it and skipped.
        Each record is yielded once, by ``id``: the LMS orders by ``-active, -modified``, so a record modified
        while we page can appear on two pages (contract 3.3). ``active: false`` records (the user's other
        enterprises, still admins here) and deactivated users are yielded; judging them is the caller's rule.
        """
        wanted = UUID(str(enterprise_customer_uuid))
        url = f"{self._api}/enterprise-learner/"
        params = {
            "enterprise_customer_uuid": str(wanted),
            "role": ENTERPRISE_ADMIN_ROLE,
            "page_size": ENTERPRISE_LEARNER_PAGE_SIZE,
        }
        seen: set[int] = set()
        for page in self._http.paginate(url, params=params):
            for item in page["results"]:
                try:
                    admin = parse_as(EnterpriseAdmin, item, service=SERVICE, what="enterprise admin")
                except MalformedResponseError as exc:
                    if on_malformed is None:
                        raise
                    on_malformed(item, exc)  # one bad record must not cost the other admins their email
                    continue
                if not admin.is_admin or admin.id in seen:
                    continue
                if admin.enterprise_customer_uuid is not None and admin.enterprise_customer_uuid != wanted:
                    logger.warning(
                        "enterprise-learner record %s belongs to enterprise %s, not %s: is the service account "
                        "LMS staff? (the filters apply to staff only)",
                        admin.id,
                        admin.enterprise_customer_uuid,
                        wanted,
                    )
                    continue
                seen.add(admin.id)
                yield admin
