"""The one HTTP layer every adapter uses: JSON calls, typed errors, bounded retries (tenacity).

Retried: 429 (waiting until ``X-RateLimit-Reset`` or ``Retry-After`` when the reply gives one), 5xx,
timeouts and connection errors, with exponential backoff and jitter, at most ``max_attempts`` tries and
never a single wait above ``max_wait``. Never retried: other 4xx, malformed replies and refused redirects.
An optional ``auth`` hook supplies the Authorization header; on a 401 it is asked for a fresh one and the
call is retried once (the LMS OAuth2 JWT flow, contract section 1).

Hosts and time are bounded:

- No request leaves the origin (scheme, host, port) of the URL it was made for. Redirects are not left to
  ``requests``: a 3xx to the same origin is followed (at most ``MAX_REDIRECTS`` hops; a POST only on 307/308,
  which keep its method and body), any other 3xx raises ``RedirectRefusedError`` before anything is sent to
  the location it names (a JWT, or a Braze body full of learner emails, never goes to a foreign host).
- ``timeout`` bounds the total time of each attempt (connect, send, headers, body, and any same-origin
  redirect hops), not each socket read: see ``_Deadline``.
- ``paginate`` stops when the reply's own numbers say the list should have ended, and at a hard page cap.
- Inside ``with call_deadline(d)`` (``d`` in monotonic seconds: the worker's "no new request after"), no
  retry starts after ``d``: a call gives up with its last error rather than wait past the invocation's time.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
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
_CHUNK_SIZE = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


_CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("http_call_deadline", default=None)


@contextlib.contextmanager
def call_deadline(deadline: float | None) -> Iterator[None]:
    """No retry of any call made inside starts after ``deadline`` (monotonic seconds; None: no limit)."""
    token = _CALL_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _CALL_DEADLINE.reset(token)


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
    """A JSON-over-HTTP client for one service (named in errors and logs).

    ``timeout`` is the most one attempt may take in total: connecting, sending, the reply's headers and its
    whole body (and any same-origin redirect hops), not a per-read socket timeout, so a reply trickled a
    byte at a time cannot hold an attempt past it. A deadline passed before the reply is complete is an
    ``UpstreamTimeout`` (retried), or for ``idempotent=False`` once the request may have gone out, an
    ``AmbiguousOutcomeError``. How the bound is enforced: see ``_Deadline``. ``monotonic`` is the clock the
    deadline is checked against between body chunks and before each redirect hop (tests may inject one;
    the watchdog itself runs on real time). ``max_pages`` is ``paginate``'s hard cap.
    """

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
        monotonic: Callable[[], float] = time.monotonic,
        max_pages: int = DEFAULT_MAX_PAGES,
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.service = service
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.auth = auth
        self.default_headers = dict(default_headers or {})
        # A session of the caller's own is used as it is: the watchdog (see _Deadline) needs the adapter
        # _new_session mounts; without it only the between-chunk checks and per-read timeouts bound an attempt.
        self.session = session or _new_session()
        self.max_pages = max_pages
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
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

        ``idempotent=False`` (a send that must not happen twice): a timeout or a connection dropped after the
        request went out raises AmbiguousOutcomeError instead of being retried; failures that prove the
        request was not processed (connect errors, 429, 5xx) are still retried, and a refused redirect (the
        service answered with a 3xx, nothing went to the other host) is a plain RedirectRefusedError.
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
            url = self._next_page_url(page["next"], base, seen, bounds.too_many_pages(pages + 1, limit))
            page = self.get(url)

    def _next_page_url(self, link: Any, base: SplitResult, seen: set[str], too_many: str | None) -> str:
        """``next`` on the configured host (its path and query, our scheme and host), unless it loops back or
        passes what the first page announced."""
        nxt = urlsplit(str(link))
        url = urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))
        if url in seen:
            raise MalformedResponseError(self.service, "pagination loops back to a page already read", url=url)
        if too_many is not None:
            raise MalformedResponseError(self.service, f"pagination does not end: {too_many}", url=url)
        seen.add(url)
        return url

    # -- internals ---------------------------------------------------------------------------------------

    def _with_retries(self, method: str, url: str, *, force_refresh: bool, **kwargs: Any) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, UpstreamError) and exc.retryable),
            stop=stop_any(stop_after_attempt(self.retry.max_attempts), self._past_call_deadline),
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
        """One attempt: the request and any same-origin redirect hops, all within one ``_Deadline``."""
        headers = {"Accept": "application/json", **self.default_headers, **kwargs.pop("headers", {})}
        if self.auth is not None:  # before the deadline starts: a token fetch is a call of its own
            headers["Authorization"] = self.auth(force_refresh=force_refresh)
        params = kwargs.pop("params", None)
        deadline = _Deadline(self.timeout, self._monotonic)
        outer = getattr(_watching, "deadline", None)
        _watching.deadline = deadline
        try:
            target = url
            for hop in range(MAX_REDIRECTS + 1):
                left = deadline.start_hop()
                if left <= 0:  # nothing of this hop went out, and the last one was answered with a 3xx
                    raise UpstreamTimeout(
                        self.service, f"no complete reply within {self.timeout}s (redirect hop {hop} not sent)", url=url
                    )
                with self._lock:
                    self.request_count += 1
                response = self.session.request(
                    method,
                    target,
                    headers=headers,
                    params=params if hop == 0 else None,  # a Location carries its own query
                    timeout=left,
                    stream=True,
                    allow_redirects=False,
                    **kwargs,
                )
                try:
                    body = _read_body(response, deadline)
                finally:
                    response.close()  # after a complete body the connection is back in the pool already
                if not 300 <= response.status_code < 400:
                    return self._parse(response, body, url)
                target = self._redirect_target(method, response, hop, url)
            raise AssertionError("unreachable: the last hop's redirect is refused")  # pragma: no cover
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc, deadline, url, idempotent=idempotent) from exc
        except OSError as exc:  # anything else the watchdog's shutdown may surface as
            if not deadline.expired:
                raise
            raise self._timeout_error(url, idempotent=idempotent) from exc
        finally:
            _watching.deadline = outer
            deadline.finish()

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

    def _transport_error(self, exc: Exception, deadline: _Deadline, url: str, *, idempotent: bool) -> UpstreamError:
        if isinstance(exc, requests.ConnectTimeout):  # never connected: nothing was sent
            return UpstreamConnectionError(self.service, f"connect timeout: {exc}", url=url)
        if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
            return UpstreamConnectionError(self.service, f"connection failed: {exc}", url=url)
        if deadline.expired or isinstance(exc, requests.Timeout | _DeadlinePassed):
            if deadline.sent is False:  # e.g. cut during a TLS handshake: the request never went out
                return UpstreamTimeout(self.service, f"not connected within {self.timeout}s", url=url)
            return self._timeout_error(url, idempotent=idempotent)
        if not idempotent:
            return AmbiguousOutcomeError(self.service, f"connection lost: {exc}", url=url)
        return UpstreamConnectionError(self.service, f"connection failed: {exc}", url=url)

    def _timeout_error(self, url: str, *, idempotent: bool) -> UpstreamError:
        message = f"no complete reply within {self.timeout}s"
        if not idempotent:
            return AmbiguousOutcomeError(self.service, message, url=url)
        return UpstreamTimeout(self.service, message, url=url)

    def _parse(self, response: requests.Response, body: bytes, url: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if status == 204 or not body:
                return None
            try:
                return json.loads(body)  # bytes: UTF-8/16/32 detected as RFC 8259 allows
            except ValueError as exc:
                raise MalformedResponseError(self.service, "reply is not JSON", status=status, url=url) from exc
        detail = mask_emails(_text(body, response.encoding)[:300].strip())  # error bodies can echo emails
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

    def _past_call_deadline(self, state: RetryCallState) -> bool:
        """The next attempt would start after the ``call_deadline`` in force (the wait is computed first)."""
        deadline = _CALL_DEADLINE.get()
        return deadline is not None and self._monotonic() + state.upcoming_sleep > deadline

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


def _text(body: bytes, encoding: str | None) -> str:
    try:
        return body.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


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


# -- the time bound ----------------------------------------------------------------------------------------
#
# requests' ``timeout`` bounds each socket operation, not an exchange: a server that sends a byte every
# second keeps every read alive forever. And urllib3 reads a body in blocking ``read(n)`` calls that only
# return once n bytes (or the end) arrived, so checking a clock between chunks alone cannot interrupt a
# trickle either. So each attempt gets a _Deadline, and when it passes one watchdog thread (_Watchdog, shared
# by all clients) shuts down (``shutdown(SHUT_RDWR)``) every socket the attempt uses. That wakes whatever the
# calling thread is blocked in (sending, waiting for headers, reading the body, a TLS handshake) at once; the
# failure it sees is then reported as a timeout. The sockets are found through urllib3 subclasses mounted
# by _new_session: a connection attaches its socket when it connects (the raw TCP socket, then the TLS one)
# and a pooled connection when the pool hands it out to the attempt (the current deadline is a thread-local:
# requests/urllib3 do all of an attempt's work in the calling thread). A connection is detached when it goes
# back to the pool, under the deadline's lock, so the watchdog never shuts a connection another request has
# taken from the pool; a connection the deadline interrupted is closed by urllib3 and never reused.
# Per-read socket timeouts are set to the time left as well, and the connect timeout too (a connect in
# progress has no socket to shut yet). Not covered: name resolution (getaddrinfo cannot be interrupted; the
# resolver's own timeouts apply) and a session without our adapter (e.g. one passed in, or a proxy's pools).


class _DeadlinePassed(Exception):
    """The attempt's deadline passed while a reply was arriving (the between-chunk check)."""


_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    _DeadlinePassed,
)

_watching = threading.local()  # .deadline: the _Deadline of the attempt running in this thread, if any
_OWNER = "_license_notifications_deadline"


class _Deadline:
    """One attempt's time budget, enforced by the watchdog, which shuts down the attempt's sockets."""

    def __init__(self, seconds: float, monotonic: Callable[[], float]):
        self._monotonic = monotonic
        self._at = monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: dict[Any, list[socket.socket]] = {}
        self.done = False
        self.expired = False
        # Whether the current hop's request has started going out: None = unknown (counts as sent), False =
        # a watched connection is being set up and nothing was sent yet, True = urllib3 began sending it.
        self.sent: bool | None = None
        _WATCHDOG.watch(time.monotonic() + seconds, self)

    def remaining(self) -> float:
        return self._at - self._monotonic()

    def passed(self) -> bool:
        return self.expired or self.remaining() <= 0

    def start_hop(self) -> float:
        """Start a request (first or redirect hop): the time left (<= 0 when none is), for socket timeouts."""
        self.sent = None
        return -1.0 if self.expired else self.remaining()

    def attach(self, conn: Any, sock: socket.socket) -> None:
        with self._lock:
            if self.done:
                return
            setattr(conn, _OWNER, self)
            if self.sent is None:
                self.sent = False
            socks = self._sockets.setdefault(conn, [])
            if not any(s is sock for s in socks):
                socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def detach(self, conn: Any) -> None:
        with self._lock:
            self._sockets.pop(conn, None)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            for socks in self._sockets.values():
                for sock in socks:
                    _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._sockets.clear()


class _Watchdog:
    """One daemon thread for every _Deadline in the process: expires each at its time unless it is done by
    then. Done deadlines are dropped lazily (when they reach the front of the heap), so watching costs a heap
    push per attempt and no thread switch: cheaper than a ``threading.Timer`` (a thread start) per attempt."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._wakes_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, at: float, deadline: _Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadline-watchdog", daemon=True)
                self._thread.start()
            elif at < self._wakes_at:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            due: list[_Deadline] = []
            with self._cond:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    deadline = heapq.heappop(self._heap)[2]
                    if not deadline.done:
                        due.append(deadline)
                if not due:
                    self._wakes_at = self._heap[0][0] if self._heap else math.inf
                    self._cond.wait(None if not self._heap else self._wakes_at - now)
                    self._wakes_at = -math.inf  # awake: no need to be notified
            for deadline in due:  # outside the heap's lock: expire() takes the deadline's own
                deadline.expire()


_WATCHDOG = _Watchdog()


def _shutdown(sock: socket.socket) -> None:
    # The plain socket call, also for an SSLSocket (whose own shutdown() would drop its SSL state under a
    # thread still reading it): it wakes a blocked recv/send; closing stays with the socket's owner. OSError:
    # already closed, or never connected.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _read_body(response: requests.Response, deadline: _Deadline) -> bytes:
    chunks = []
    for chunk in response.iter_content(chunk_size=_CHUNK_SIZE):
        if deadline.passed():
            deadline.expire()
            raise _DeadlinePassed
        chunks.append(chunk)
    return b"".join(chunks)


def _attach_current(conn: Any, sock: socket.socket | None) -> None:
    deadline = getattr(_watching, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.attach(conn, sock)


class _WatchedConnectionMixin:
    def _new_conn(self) -> socket.socket:  # the TCP connect, before any TLS handshake
        sock = super()._new_conn()  # type: ignore[misc]
        _attach_current(self, sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach_current(self, self.sock)  # type: ignore[attr-defined]  # the TLS socket, for HTTPS

    def request(self, *args: Any, **kwargs: Any) -> None:  # urllib3 sends the request line, headers and body
        deadline = getattr(_watching, "deadline", None)
        if deadline is not None:
            deadline.sent = True
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedPoolMixin:
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _attach_current(conn, conn.sock)  # a pooled connection, already connected
        return conn

    def _put_conn(self, conn: Any) -> None:
        owner = getattr(conn, _OWNER, None) if conn is not None else None
        if owner is not None:
            owner.detach(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPConnectionPool(_WatchedPoolMixin, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(_WatchedPoolMixin, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _BoundedAdapter(HTTPAdapter):
    """requests' adapter with connection pools whose sockets an attempt's _Deadline can shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = _BoundedAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
