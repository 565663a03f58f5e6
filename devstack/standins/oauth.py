"""LMS OAuth2 client-credentials flow and JWT authentication (contract section 1).

``TokenRegistry`` holds the tokens the LMS stand-in issued; the license-manager stand-in is built with the
same registry, so a token from the LMS works at both (as a real LMS-signed JWT does) and
``revoke_all_tokens()`` invalidates it at both (to test refresh-once-on-401).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from .base import FORM_CONTENT_TYPE, HttpError, Reply, Request

JWT = "jwt"
BEARER = "bearer"  # what the LMS issues when token_type=jwt is missing: an opaque DOT access token

# DRF / edx-drf-extensions messages (JwtAuthentication), as the real license-manager answered (contract 2.4);
# WWW-Authenticate comes from authenticate_header().
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid token."
EXPIRED_TOKEN = "Token has expired."
WWW_AUTHENTICATE = {"WWW-Authenticate": 'JWT realm="api"'}


@dataclass(frozen=True)
class OAuthClient:
    """One OAuth2 client of the LMS and what its service user may do (contract sections 1 and 2.4).

    ``staff``: the user is LMS staff (edx-enterprise applies the ``enterprise-learner`` filters, and lists
    every enterprise, for staff only; license-manager answers a non-staff caller's lists with 403).
    ``operator``: the JWT carries the ``enterprise_openedx_operator:*`` role (license-manager answers a staff
    caller without it with empty 200s)."""

    secret: str
    staff: bool = True
    operator: bool = True


@dataclass
class IssuedToken:
    token: str
    kind: str  # JWT or BEARER
    client_id: str
    expires_at: float  # time.time() based
    revoked: bool = False
    staff: bool = True
    operator: bool = True


class TokenRegistry:
    """Thread-safe registry of issued access tokens with expiry on the real clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}

    def issue(
        self, client_id: str, expires_in: float, kind: str = JWT, *, staff: bool = True, operator: bool = True
    ) -> IssuedToken:
        """Create an opaque random token valid for ``expires_in`` seconds, for a caller with these rights."""
        issued = IssuedToken(
            secrets.token_urlsafe(32), kind, client_id, time.time() + expires_in, staff=staff, operator=operator
        )
        with self._lock:
            self._tokens[issued.token] = issued
        return issued

    def check(self, token: str, kind: str = JWT) -> IssuedToken | str:
        """The live token of ``kind``; otherwise the DRF error message."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.revoked or issued.kind != kind:
            return INVALID_TOKEN
        if time.time() >= issued.expires_at:
            return EXPIRED_TOKEN
        return issued

    def revoke_all(self) -> int:
        """Invalidate every token issued so far; returns how many were live."""
        with self._lock:
            live = [issued for issued in self._tokens.values() if not issued.revoked]
            for issued in live:
                issued.revoked = True
        return len(live)

    def expire_all(self) -> None:
        """Make every token look expired (as if its expires_in had run out)."""
        with self._lock:
            for issued in self._tokens.values():
                issued.expires_at = min(issued.expires_at, time.time() - 1)


def require_jwt(request: Request, registry: TokenRegistry) -> IssuedToken:
    """``Authorization: JWT <token>`` with a live token, else 401 ``{"detail": ...}`` (contract section 1).
    Returns the caller's token (its rights: ``staff``, ``operator``), also kept as ``request.caller``.

    As edx-drf-extensions' JwtAuthentication: another scheme (e.g. ``Bearer``) or no header at all means
    "not provided"; a bad or expired token is "failed".
    """
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "jwt" or not token.strip():
        raise HttpError(Reply(401, {"detail": NOT_PROVIDED}, dict(WWW_AUTHENTICATE)))
    checked = registry.check(token.strip(), JWT)
    if isinstance(checked, str):
        raise HttpError(Reply(401, {"detail": checked}, dict(WWW_AUTHENTICATE)))
    request.caller = checked
    return checked


def caller_has(request: Request, right: str) -> bool:
    """Whether the request's caller has ``right`` ("staff" or "operator"). A request that did not go through
    :func:`require_jwt` (a fault handler calling a handler directly) is taken as the service's own client."""
    return request.caller is None or bool(getattr(request.caller, right))


def _oauth_error(status: int, error: str, description: str | None = None) -> HttpError:
    body = {"error": error}
    if description:
        body["error_description"] = description
    # RFC 6749 section 5.2: no caching of token errors.
    return HttpError(Reply(status, body, {"Cache-Control": "no-store", "Pragma": "no-cache"}))


def issue_token_reply(
    request: Request, registry: TokenRegistry, clients: dict[str, OAuthClient], expires_in: int
) -> Reply:
    """``POST /oauth2/access_token`` (contract section 1), as django-oauth-toolkit + edx-platform answer it.

    Checks in oauthlib's order: form body, grant type, then client credentials.
    """
    if request.mimetype != FORM_CONTENT_TYPE:
        # contract silent: the token endpoint only reads form bodies, so JSON reaches it as "no grant_type".
        raise _oauth_error(400, "unsupported_grant_type")
    form = request.form_or_none() or {}

    def field(name: str) -> str:
        return form.get(name, [""])[-1]

    if field("grant_type") != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type")
    client_id, client_secret = field("client_id"), field("client_secret")  # in the form, as the client sends them
    client = clients.get(client_id) if client_id else None
    if client is None or not secrets.compare_digest(client.secret, client_secret):
        raise _oauth_error(401, "invalid_client")
    # edx-platform issues a JWT only when asked (token_type=jwt, case-insensitive); otherwise an opaque
    # DOT token that the APIs' JwtAuthentication rejects: the stand-in keeps that trap.
    wants_jwt = field("token_type").lower() == JWT
    kind = JWT if wants_jwt else BEARER
    issued = registry.issue(client_id, expires_in, kind, staff=client.staff, operator=client.operator)
    return Reply(
        200,
        {
            "access_token": issued.token,
            "expires_in": expires_in,
            "token_type": "JWT" if wants_jwt else "Bearer",
            "scope": "read write",
        },
        {"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
