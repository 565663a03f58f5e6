"""LMS stand-in: the OAuth2 token endpoint and the edx-enterprise API (contract sections 1, 3.1, 3.2, 3.3)."""

from __future__ import annotations

from typing import Any

from devstack.dataset import Customer, Dataset, EnterpriseLearner, canonical_uuid, iso_z

from .base import Reply, Request, StandIn, route, server_error
from .oauth import OAuthClient, TokenRegistry, caller_has, issue_token_reply, require_jwt

DEFAULT_CLIENT_ID = "license-notifications"
DEFAULT_CLIENT_SECRET = "license-notifications-local-secret"
LEARNER_PAGE_SIZE = 10  # edx-drf-extensions DefaultPagination (contract 3.2)
LEARNER_MAX_PAGE_SIZE = 100
LEARNER_PAGE_FIELDS = ("next", "previous", "count", "num_pages", "current_page", "start", "results")


class LmsStandIn(StandIn):
    """The LMS: ``POST /oauth2/access_token`` plus ``/enterprise/api/v1/...`` behind JWT auth.

    Args:
        dataset: customers and enterprise-learner records to serve (an empty ``Dataset`` if omitted).
        registry: token registry; share ``lms.registry`` with ``LicenseManagerStandIn``.
        client_id / client_secret: the service's OAuth2 client (LMS staff, with the operator role);
            :meth:`add_client` adds others with fewer rights.
        expires_in: lifetime in seconds of issued tokens (``expires_in`` attribute, changeable later).
    """

    name = "LMS stand-in"

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        registry: TokenRegistry | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        expires_in: int = 3600,
    ) -> None:
        self.dataset = dataset if dataset is not None else Dataset()
        self.registry = registry if registry is not None else TokenRegistry()
        self.client_id, self.client_secret = client_id, client_secret
        self.clients = {client_id: OAuthClient(client_secret)}
        self.expires_in = expires_in
        super().__init__()

    def add_client(self, client_id: str, secret: str, *, staff: bool = True, operator: bool = True) -> None:
        """Another OAuth2 client: e.g. a service user that is not LMS staff, or lacks the operator role."""
        self.clients[client_id] = OAuthClient(secret, staff=staff, operator=operator)

    def revoke_all_tokens(self) -> int:
        """Invalidate every token issued so far (the next API call with one gets 401)."""
        return self.registry.revoke_all()

    def routes(self) -> list[Any]:
        return [
            route("POST", "/oauth2/access_token", self.access_token, auth=False),
            route("GET", "/enterprise/api/v1/enterprise-customer/<uuid>", self.enterprise_customer),
            route("GET", "/enterprise/api/v1/enterprise-learner", self.enterprise_learners),
        ]

    def authenticate(self, request: Request) -> None:
        require_jwt(request, self.registry)

    # ------------------------------------------------------------------------------------------ handlers
    def access_token(self, request: Request) -> Reply:
        """Contract section 1: client credentials grant, form-encoded; ``token_type=jwt`` for a JWT."""
        return issue_token_reply(request, self.registry, self.clients, self.expires_in)

    def enterprise_customer(self, request: Request) -> Reply:
        """Contract 3.1: ``GET /enterprise/api/v1/enterprise-customer/<uuid>/``; only active customers.

        contract silent: a non-staff caller gets 404, as edx-enterprise's UserFilterBackend limits a non-staff
        user to the enterprises it is linked to, and service users have no link."""
        key = canonical_uuid(request.match["uuid"])
        with self.dataset.lock:
            customer = self.dataset.customers.get(key) if key else None
            if customer is None or not customer.active or not caller_has(request, "staff"):
                raise self.error(404, "Not found.")
            # contract 3.3: built from role assignments, so it may name people who are not admins any more
            admins = [
                {"email": admin.user.email, "lms_user_id": admin.user.id} for admin in self.dataset.admins_of(key)
            ] + [dict(extra) for extra in customer.stale_admin_users]
            return Reply(200, {**_customer_json(customer), "admin_users": admins})

    def enterprise_learners(self, request: Request) -> Reply:
        """Contract 3.2: ``GET /enterprise/api/v1/enterprise-learner/?enterprise_customer_uuid=&role=``.

        The service account is staff, so the filters apply. Ordered by ``-active, -modified`` as the real
        service (contract 3.3), so a record modified while a client pages can move between pages. An unknown
        or inactive enterprise has no records (contract 3.3). A non-staff caller's filters are ignored and it
        sees only its own records (contract section 1): a service user has none, so ``count: 0``.
        """
        raw_uuid, role = request.param("enterprise_customer_uuid"), request.param("role")
        if role and not raw_uuid:  # contract: a 400; the body DRF-style here (contract silent)
            raise self.error(400, "enterprise_customer_uuid is required when filtering by role.")
        enterprise_uuid = canonical_uuid(raw_uuid) if raw_uuid else None
        if raw_uuid and enterprise_uuid is None:  # contract 3.3: a malformed uuid query value is a 500
            raise server_error()
        with self.dataset.lock:
            customer = self.dataset.customers.get(enterprise_uuid) if enterprise_uuid else None
            listed = caller_has(request, "staff") and (
                enterprise_uuid is None or (customer is not None and customer.active)
            )
            learners = [
                learner
                for learner in sorted(self.dataset.learners, key=lambda lrn: (not lrn.active, -lrn.modified))
                if listed
                and (enterprise_uuid is None or learner.enterprise_customer_uuid == enterprise_uuid)
                and (not role or role in learner.roles)
            ]
            page = self.paginate(
                request, learners, size=LEARNER_PAGE_SIZE, max_size=LEARNER_MAX_PAGE_SIZE, fields=LEARNER_PAGE_FIELDS
            )
            page["results"] = [self._learner_json(learner) for learner in page["results"]]
        # contract 3.3: pages carry this too (the flags are the caller's; their names and values contract silent)
        page["enterprise_features"] = {
            "top_down_assignment_real_time_lcm": False,
            "feature_prequery_search_suggestions": False,
        }
        return Reply(200, page)

    def _learner_json(self, learner: EnterpriseLearner) -> dict[str, Any]:
        user, customer = learner.user, self.dataset.customers.get(learner.enterprise_customer_uuid)
        return {
            "id": learner.id,
            "enterprise_customer": _customer_json(customer) if customer else None,
            "active": learner.active,
            "user_id": user.id,
            "user": {
                "id": user.id,
                "username": user.username,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "email": user.email,
                "is_staff": user.is_staff,
                "is_active": user.is_active,
                "date_joined": iso_z(user.date_joined),
            },
            "created": iso_z(learner.created),
            "role_assignments": list(learner.roles),
        }


def _customer_json(customer: Customer) -> dict[str, Any]:
    """The contract 3.1 fields the client reads (the detail adds ``admin_users``)."""
    return {
        "uuid": customer.uuid,
        "name": customer.name,
        "slug": customer.slug,
        "active": customer.active,
        "sender_alias": customer.sender_alias,
        "contact_email": customer.contact_email,
        "reply_to": customer.reply_to,
        "default_language": customer.default_language,
    }
