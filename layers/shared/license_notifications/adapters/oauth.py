"""LMS OAuth2 client-credentials tokens (JWT), contract section 1.

``POST {base}/oauth2/access_token`` form-encoded (grant_type=client_credentials, client_id, client_secret,
token_type=jwt) -> ``{"access_token", "expires_in"}``. Tokens are cached per (base URL, client id), in the
process (so a warm Lambda reuses them), until ``refresh_margin`` seconds before they run out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from license_notifications.adapters.http import HttpClient
from license_notifications.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    MalformedResponseError,
)


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


_CACHE: dict[tuple[str, str], _Token] = {}
_CACHE_LOCK = threading.Lock()


class OAuthTokenProvider:
    """Supplies ``Authorization: JWT <token>``; usable as an :class:`HttpClient` auth hook."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        client_id: str,
        client_secret: Callable[..., str],
        *,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        self._http = http
        self._url = f"{base_url.rstrip('/')}/oauth2/access_token"
        self._key = (base_url.rstrip("/"), client_id)
        self._client_id = client_id
        self._client_secret = client_secret  # called with force_fetch=...: a rotated secret is read afresh
        self._margin = refresh_margin
        self._clock = clock

    def __call__(self, *, force_refresh: bool = False) -> str:
        return f"JWT {self.token(force_refresh=force_refresh)}"

    def token(self, *, force_refresh: bool = False) -> str:
        with _CACHE_LOCK:
            cached = _CACHE.get(self._key)
            if cached and not force_refresh and self._clock() < cached.expires_at - self._margin:
                return cached.value
            fresh = self._fetch()
            _CACHE[self._key] = fresh
            return fresh.value

    def _request_token(self, *, force_fetch: bool) -> object:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret(force_fetch=force_fetch),
            "token_type": "jwt",
        }
        return self._http.post(self._url, data=form)

    def _fetch(self) -> _Token:
        try:
            reply = self._request_token(force_fetch=False)
        except (AuthenticationError, BadRequestError):
            try:  # the secret may have been rotated since it was cached: read it afresh, once
                reply = self._request_token(force_fetch=True)
            except (AuthenticationError, BadRequestError) as exc:
                # Wrong client id/secret is systemic: every call of the run would fail the same way.
                raise ConfigurationError(f"OAuth token request rejected (check OAUTH_CLIENT_ID/SECRET): {exc}") from exc
        token = reply.get("access_token") if isinstance(reply, dict) else None
        expires_in = reply.get("expires_in") if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise MalformedResponseError("lms-oauth", "token reply lacks access_token or expires_in", url=self._url)
        return _Token(token, self._clock() + float(expires_in))


def clear_token_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
