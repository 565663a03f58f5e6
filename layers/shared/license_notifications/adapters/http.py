"""The one HTTP layer every adapter uses: JSON calls, typed errors, bounded retries (tenacity).

Retried: 429 (waiting until ``X-RateLimit-Reset`` or ``Retry-After`` when the reply gives one), 5xx,
timeouts and connection errors, with exponential backoff and jitter, at most ``max_attempts`` tries and
never a single wait above ``max_wait``. Never retried: other 4xx, malformed replies and refused redirects.
An optional ``auth`` hook supplies the Authorization header; on a 401 it is asked for a fresh one and the
call is retried once (the LMS OAuth2 JWT flow, contract section 1).

No request leaves the origin (scheme, host, port) of the URL it was made for. Redirects are not left to
``requests``: a 3xx to the same origin is followed (at most ``MAX_REDIRECTS`` hops; a POST only on 307/308,
which keep its method and body), any other 3xx raises ``RedirectRefusedError`` before anything is sent to
the location it names (a JWT, or a Braze body full of learner emails, never goes to a foreign host).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from license_notifications.errors import (
    AmbiguousOutcomeError,
    AuthenticationError,
    MalformedResponseError,
    RateLimitedError,
    RedirectRefusedError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
    error_for_status,
)
from license_notifications.observability import mask_emails

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
METHOD_KEEPING_REDIRECTS = frozenset({307, 308})  # the only ones a POST may follow (RFC 9110 15.4)
MAX_REDIRECTS = 5  # same-origin hops followed per attempt
DEFAULT_MAX_PAGES = 10_000  # hard cap on pages per paginate() call (5 million licenses at 500 a page)
PAGINATION_SLACK_PAGES = 2  # how much a live list may grow while it is read (see HttpClient.paginate)
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
    """A JSON-over-HTTP client for one service (named in errors and logs). ``max_pages`` is ``paginate``'s
    hard cap."""

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
        max_pages: int = DEFAULT_MAX_PAGES,
    ):
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.service = service
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.auth = auth
        self.default_headers = dict(default_headers or {})
        self.session = session or _new_session()
        self.max_pages = max_pages
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.request_count = 0  # HTTP requests actually sent (retries and redirect hops included)
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
        prove the request was not processed (connect errors, 429, 5xx) are still retried, and a refused
        redirect (the service answered with a 3xx, nothing went to the other host) is a plain
        RedirectRefusedError.
        """
        try:
            return self._with_retries(method, url, force_refresh=False, idempotent=idempotent, **kwargs)
        except AuthenticationError:
            if self.auth is None:
                raise
            logger.info("%s answered 401; refreshing the credential and retrying once", self.service)
            return self._with_retries(method, url, force_refresh=True, idempotent=idempotent, **kwargs)

    def paginate(
        self, url: str, *, params: Mapping[str, Any] | None = None, max_pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield each page of a DRF page-number list, following ``next`` (an absolute URL) until null.

        ``next`` is followed on the configured host only (its path and query, our scheme and host): DRF
        behind a TLS-terminating proxy often writes ``http://`` links, and the JWT must not go elsewhere.

        A server that keeps handing out pages is stopped with MalformedResponseError, judged by the first
        page's own numbers (``count``, and ``num_pages`` where the list has it):
        - a page whose items bring the total past ``count`` + slack is not yielded;
        - no page is requested past ``num_pages`` + slack, nor past ``ceil(count / first page's length)``
          + slack;
        - no page is requested past ``max_pages`` (default: the client's, 10,000), whatever the numbers say;
        - a ``next`` naming a page already read is a loop.
        The slack (``PAGINATION_SLACK_PAGES``, 2 pages, and 2 pages' worth of items) is for a live list:
        records added while we read move later records onto further pages and raise ``count`` on later
        replies. A list that grows by more than two pages while one client reads it is taken for a server
        that does not end. Without a usable ``count`` (absent, not a non-negative integer) only the cap and
        the loop check apply; an empty first page with ``next: null`` is simply the end.
        """
        limit = self.max_pages if max_pages is None else max_pages
        if limit < 1:
            raise ValueError("max_pages must be at least 1")
        base = urlsplit(url)
        seen: set[str] = set()
        page = self.get(url, params=params)
        bounds: _PageBounds | None = None
        pages = items = 0
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise MalformedResponseError(self.service, "paginated reply without a results list", url=url)
            pages += 1
            items += len(page["results"])
            if bounds is None:
                bounds = _PageBounds.of(page)
            if (problem := bounds.too_many_items(items)) is not None:
                raise MalformedResponseError(self.service, f"pagination does not end: {problem}", url=url)
            yield page
            if not page.get("next"):
                return
            nxt = urlsplit(str(page["next"]))
            url = urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))
            if url in seen:
                raise MalformedResponseError(self.service, "pagination loops back to a page already read", url=url)
            if (problem := bounds.too_many_pages(pages + 1, limit)) is not None:
                raise MalformedResponseError(self.service, f"pagination does not end: {problem}", url=url)
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
        """One attempt: the request and any same-origin redirect hops."""
        headers = {"Accept": "application/json", **self.default_headers, **kwargs.pop("headers", {})}
        if self.auth is not None:
            headers["Authorization"] = self.auth(force_refresh=force_refresh)
        params = kwargs.pop("params", None)
        target = url
        for hop in range(MAX_REDIRECTS + 1):
            with self._lock:
                self.request_count += 1
            try:
                response = self.session.request(
                    method,
                    target,
                    headers=headers,
                    params=params if hop == 0 else None,  # a Location carries its own query
                    timeout=self.timeout,
                    allow_redirects=False,
                    **kwargs,
                )
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
            if not 300 <= response.status_code < 400:
                return self._parse(response, url)
            target = self._redirect_target(method, response, hop, url)
        raise AssertionError("unreachable: the last hop's redirect is refused")  # pragma: no cover

    def _redirect_target(self, method: str, response: requests.Response, hop: int, url: str) -> str:
        """The URL a 3xx reply may be followed to, or RedirectRefusedError (naming the location's origin only:
        its path and query are left out of errors and logs)."""
        status = response.status_code
        location = response.headers.get("Location")
        if not location:
            raise RedirectRefusedError(self.service, "redirect without a Location refused", status=status, url=url)
        here = urlsplit(response.url)
        there = urlsplit(urljoin(response.url, location))
        where = _origin_text(there)
        if status not in REDIRECT_STATUSES:
            raise RedirectRefusedError(
                self.service, f"HTTP {status} reply (to {where}) refused", status=status, url=url
            )
        if _origin(there) is None or _origin(there) != _origin(here):
            raise RedirectRefusedError(
                self.service,
                f"redirect to another origin ({where}) refused: nothing is sent outside {_origin_text(here)}",
                status=status,
                url=url,
            )
        if method.upper() not in ("GET", "HEAD") and status not in METHOD_KEEPING_REDIRECTS:
            raise RedirectRefusedError(
                self.service,
                f"HTTP {status} redirect of a {method.upper()} refused: it would turn into a GET (only 307/308 keep "
                "the method and body)",
                status=status,
                url=url,
            )
        if hop >= MAX_REDIRECTS:
            raise RedirectRefusedError(
                self.service, f"more than {MAX_REDIRECTS} redirects (last to {where})", status=status, url=url
            )
        logger.info("%s redirected (HTTP %d) within %s; following", self.service, status, where)
        return urlunsplit(there._replace(fragment=""))

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


def _origin(parts: SplitResult) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for what is never followed (no
    host, another scheme, credentials in the URL, a port that is not a number)."""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname, port


def _origin_text(parts: SplitResult) -> str:
    """scheme://host[:port] of a URL, for messages: never its credentials, path or query."""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ":?"
    return f"{parts.scheme or '?'}://{parts.hostname or '?'}{port}"[:120]


@dataclass(frozen=True)
class _PageBounds:
    """What a paginated list's first page says about its length (see HttpClient.paginate)."""

    count: int | None
    num_pages: int | None
    page_length: int

    @classmethod
    def of(cls, first: Mapping[str, Any]) -> _PageBounds:
        return cls(_count(first.get("count")), _count(first.get("num_pages")), len(first["results"]))

    def too_many_items(self, items: int) -> str | None:
        if self.count is None:
            return None
        allowed = self.count + PAGINATION_SLACK_PAGES * max(self.page_length, 1)
        if items <= allowed:
            return None
        return f"{items} items received, more than the first page's count of {self.count} allows ({allowed})"

    def too_many_pages(self, page: int, cap: int) -> str | None:
        """Why ``page`` (1-based) must not be requested, or None."""
        if page > cap:
            return f"page {page} would pass the cap of {cap} pages"
        expected = []
        if self.num_pages is not None:
            expected.append(self.num_pages)
        if self.count == 0:
            expected.append(1)
        elif self.count is not None and self.page_length > 0:
            expected.append(math.ceil(self.count / self.page_length))
        if expected and page > min(expected) + PAGINATION_SLACK_PAGES:
            return (
                f"page {page} would pass the {min(expected)} pages the first page announced (count={self.count}, "
                f"num_pages={self.num_pages}, {self.page_length} results) by more than {PAGINATION_SLACK_PAGES}"
            )
        return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
