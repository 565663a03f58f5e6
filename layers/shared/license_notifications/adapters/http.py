"""The one HTTP layer every adapter uses: JSON calls, typed errors, bounded retries (tenacity).

Retried: 429 (waiting until ``X-RateLimit-Reset`` or ``Retry-After`` when the reply gives one), 5xx,
timeouts and connection errors, with exponential backoff and jitter, at most ``max_attempts`` tries and
never a single wait above ``max_wait``. Never retried: other 4xx and malformed replies.
An optional ``auth`` hook supplies the Authorization header; on a 401 it is asked for a fresh one and the
call is retried once (the LMS OAuth2 JWT flow, contract section 1).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from license_notifications.errors import (
    AmbiguousOutcomeError,
    AuthenticationError,
    MalformedResponseError,
    RateLimitedError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
    error_for_status,
)
from license_notifications.observability import mask_emails

logger = logging.getLogger(__name__)


class AuthHook(Protocol):
    def __call__(self, *, force_refresh: bool = False) -> str:
        """Return the Authorization header value."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_wait: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 20.0


class HttpClient:
    """A JSON-over-HTTP client for one service (named in errors and logs)."""

    def __init__(
        self,
        service: str,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        auth: AuthHook | None = None,
        default_headers: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.service = service
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.auth = auth
        self.default_headers = dict(default_headers or {})
        self.session = session or _new_session()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.request_count = 0  # HTTP requests actually sent (retries included)
        self._backoff = wait_exponential_jitter(multiplier=self.retry.initial_backoff, max=self.retry.max_backoff)

    # -- public ------------------------------------------------------------------------------------------

    def get(self, url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", url, params=params)

    def post(
        self, url: str, *, json: Any = None, data: Mapping[str, str] | None = None, idempotent: bool = True
    ) -> Any:
        return self.request("POST", url, json=json, data=data, idempotent=idempotent)

    def request(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """Send with retries; on a 401 with an auth hook, refresh the credential once and try again.

        ``idempotent=False`` (a send that must not happen twice): a read timeout or a connection dropped
        after the request went out raises AmbiguousOutcomeError instead of being retried; failures that
        prove the request was not processed (connect errors, 429, 5xx) are still retried.
        """
        try:
            return self._with_retries(method, url, force_refresh=False, idempotent=idempotent, **kwargs)
        except AuthenticationError:
            if self.auth is None:
                raise
            logger.info("%s answered 401; refreshing the credential and retrying once", self.service)
            return self._with_retries(method, url, force_refresh=True, idempotent=idempotent, **kwargs)

    def paginate(self, url: str, *, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Yield each page of a DRF page-number list, following ``next`` (an absolute URL) until null.

        ``next`` is followed on the configured host only (its path and query, our scheme and host): DRF
        behind a TLS-terminating proxy often writes ``http://`` links, and the JWT must not go elsewhere."""
        base = urlsplit(url)
        seen: set[str] = set()
        page = self.get(url, params=params)
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise MalformedResponseError(self.service, "paginated reply without a results list", url=url)
            yield page
            if not page.get("next"):
                return
            nxt = urlsplit(str(page["next"]))
            url = urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))
            if url in seen:
                raise MalformedResponseError(self.service, "pagination loops back to a page already read", url=url)
            seen.add(url)
            page = self.get(url)

    # -- internals ---------------------------------------------------------------------------------------

    def _with_retries(self, method: str, url: str, *, force_refresh: bool, **kwargs: Any) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamError) and exc.retryable),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        refresh = force_refresh
        for attempt in retrying:
            with attempt:
                result = self._send(method, url, force_refresh=refresh, **kwargs)
                refresh = False
        return result

    def _send(self, method: str, url: str, *, force_refresh: bool, idempotent: bool, **kwargs: Any) -> Any:
        headers = {"Accept": "application/json", **self.default_headers, **kwargs.pop("headers", {})}
        if self.auth is not None:
            headers["Authorization"] = self.auth(force_refresh=force_refresh)
        with self._lock:
            self.request_count += 1
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout as exc:  # never connected: nothing was sent
            raise UpstreamConnectionError(self.service, f"connect timeout: {exc}", url=url) from exc
        except requests.Timeout as exc:
            if not idempotent:
                raise AmbiguousOutcomeError(self.service, f"no reply within {self.timeout}s", url=url) from exc
            raise UpstreamTimeout(self.service, f"no reply within {self.timeout}s", url=url) from exc
        except requests.ConnectionError as exc:
            if not idempotent and not _never_connected(exc):
                raise AmbiguousOutcomeError(self.service, f"connection lost: {exc}", url=url) from exc
            raise UpstreamConnectionError(self.service, f"connection failed: {exc}", url=url) from exc
        return self._parse(response, url)

    def _parse(self, response: requests.Response, url: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise MalformedResponseError(self.service, "reply is not JSON", status=status, url=url) from exc
        detail = mask_emails(response.text[:300].strip())  # error bodies can echo recipients' emails
        if status == 429:
            raise RateLimitedError(
                self.service, detail or "rate limited", status=status, url=url, reset_at=self._reset_at(response)
            )
        raise error_for_status(status)(self.service, detail or response.reason or "error", status=status, url=url)

    def _reset_at(self, response: requests.Response) -> float | None:
        reset = response.headers.get("X-RateLimit-Reset")  # requests' headers are case-insensitive
        if reset:
            try:
                return float(reset)
            except ValueError:
                pass
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            try:
                return self._clock() + float(retry_after)
            except ValueError:
                pass
        return None

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.reset_at is not None:
            wanted = max(0.0, exc.reset_at - self._clock())
            return min(self.retry.max_wait, math.ceil(wanted * 10) / 10 + 0.1)
        return min(self.retry.max_wait, self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        logger.warning(
            "%s call failed (%s); retry %d/%d in %.1fs",
            self.service,
            exc,
            state.attempt_number,
            self.retry.max_attempts - 1,
            wait,
            extra={"service_called": self.service, "attempt": state.attempt_number, "wait_seconds": wait},
        )


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the error proves the request never reached the server (refused, DNS, connect timeout)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError | ConnectTimeoutError)


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
