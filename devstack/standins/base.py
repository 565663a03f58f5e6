"""Shared machinery for the local HTTP stand-ins (license-manager, LMS + OAuth2, Braze).

A ``StandIn`` owns a ``ThreadingHTTPServer`` bound to 127.0.0.1 on an ephemeral port, served from a daemon
thread. Subclasses declare ``Route`` objects (method + regex on the path, trailing slash optional) and
return ``Reply`` objects; handlers reject bad input by raising ``HttpError``.

Every request is recorded (``StandIn.requests``) with the status it got, and tests can inject faults that
take precedence over the normal handlers: ``fail_next`` (any status/body/headers), ``delay_next`` (sleep
before answering, to provoke client timeouts), ``malformed_next`` (200 whose body is not JSON) and
``redirect_next`` (a redirect to another server). A fault given a ``label`` is counted in ``fired_faults``
when it answers a request (the soak reports what actually fired, not only what was armed).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# What malformed_next answers by default: a 200 that claims to be JSON but is cut off mid-document,
# as a proxy dropping the connection would leave it.
MALFORMED_BODY = b'{"count": 3, "next": null, "results": [{"uuid": '


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in saw it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case keys
    json_body: Any  # parsed JSON body, or None when absent / not JSON
    form: dict[str, list[str]] | None  # parsed form body (application/x-www-form-urlencoded), else None
    raw_body: bytes
    status: int
    at: float  # time.time() when the request arrived


@dataclass
class Request:
    """The parsed incoming request handed to route handlers."""

    method: str
    path: str  # as sent, without the query string
    query_string: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case keys
    body: bytes
    match: re.Match[str] | None = None

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower-case ("" when absent)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def param(self, name: str, default: str | None = None) -> str | None:
        """Last value of a query parameter (Django's QueryDict.get semantics)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def json_or_none(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def form_or_none(self) -> dict[str, list[str]] | None:
        """The body parsed as a form when the content type says so."""
        if self.content_type != FORM_CONTENT_TYPE:
            return None
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Reply:
    """A response: ``body`` is JSON-encoded unless it is bytes or str."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_CONTENT_TYPE

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


class HttpError(Exception):
    """Raised by handlers to answer with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


@dataclass(frozen=True)
class Route:
    """``pattern`` is matched (fullmatch) against the path with any trailing slash removed."""

    method: str
    pattern: str
    handler: Callable[[Request], Reply]
    auth: bool = True  # whether the stand-in's authenticate() hook applies

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


@dataclass
class _Fault:
    path_prefix: str
    remaining: int
    respond: Callable[[Request], Reply] | None = None  # None for a pure delay
    delay: float = 0.0
    label: str | None = None  # counted in StandIn.fired_faults when it answers a request


def normalise_path(path: str) -> str:
    """Drop trailing slashes: "Trailing slash on paths optional" (contract section 2)."""
    stripped = path.rstrip("/")
    return stripped or "/"


# ----------------------------------------------------------------------------------------------- pagination
@dataclass(frozen=True)
class Page:
    """One page of a Django/DRF page-number pagination."""

    items: list[Any]
    number: int
    size: int
    count: int
    num_pages: int
    next_url: str | None
    previous_url: str | None

    @property
    def start(self) -> int:
        """edx-drf-extensions' ``start``: (page - 1) * page_size."""
        return (self.number - 1) * self.size


def _replace_query_param(url: str, key: str, value: object) -> str:
    # Same algorithm as rest_framework.utils.urls.replace_query_param (sorted keys).
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params[key] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), fragment))


def _remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params.pop(key, None)
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), fragment))


def _positive_int(raw: str | None, default: int, cutoff: int | None) -> int:
    # DRF PageNumberPagination.get_page_size: strict positive int, clamped to max_page_size; else default.
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    if value <= 0:
        return default
    return min(value, cutoff) if cutoff else value


def paginate(
    request: Request,
    items: list[Any],
    *,
    base_url: str,
    default_size: int,
    max_size: int | None,
    page_size_param: bool,
    not_found: Callable[[str], HttpError],
) -> Page:
    """Django Paginator + DRF PageNumberPagination semantics.

    ``page`` must be a positive integer within range (or "last"); otherwise ``not_found("Invalid page.")``
    is raised. An empty list still has page 1 (Django's allow_empty_first_page). ``page_size`` is honoured
    only when ``page_size_param`` is true, clamped to ``max_size``. ``next``/``previous`` are absolute URLs
    built from the stand-in's own URL and the request's query string; ``previous`` of page 2 drops ``page``.
    """
    size = _positive_int(request.param("page_size"), default_size, max_size) if page_size_param else default_size
    count = len(items)
    num_pages = max(1, math.ceil(count / size))
    raw_page = request.param("page", "1") or "1"
    if raw_page == "last":
        number = num_pages
    else:
        try:
            number = int(raw_page)
        except ValueError:
            raise not_found("Invalid page.") from None
        if number < 1 or number > num_pages:
            raise not_found("Invalid page.")
    url = base_url + request.path + (f"?{request.query_string}" if request.query_string else "")
    next_url = _replace_query_param(url, "page", number + 1) if number < num_pages else None
    if number <= 1:
        previous_url = None
    elif number == 2:
        previous_url = _remove_query_param(url, "page")
    else:
        previous_url = _replace_query_param(url, "page", number - 1)
    window = items[(number - 1) * size : number * size]
    return Page(window, number, size, count, num_pages, next_url, previous_url)


# ----------------------------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    """Turns raw HTTP into ``Request`` and hands it to the owning stand-in."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real services behind their load balancers
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall
    standin: ClassVar[StandIn]
    server_version = "standin"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log lives in StandIn.requests."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query_string=parts.query,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        reply = self.standin.handle(request)
        payload = reply.encode()
        try:
            self.send_response(reply.status)
            if payload or reply.status not in (204, 304):
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout test): nothing to answer to.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level errors (client hung up mid-request) are expected in fault tests."""


class StandIn:
    """Base class: an HTTP server on 127.0.0.1:<ephemeral> with a request log and fault injection.

    Subclasses implement ``routes()`` and may override ``authenticate()``, ``decorate()`` and
    ``error_body()``. Usage::

        with BrazeStandIn(api_key="k") as braze:
            requests.post(braze.url + "/users/alias/new", ...)
    """

    name: ClassVar[str] = "stand-in"
    latency: float = 0.0  # seconds slept before answering each request (the benchmark's service time)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._fired: Counter[str] = Counter()
        self._errors: list[BaseException] = []
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._routes = [(route, route.regex) for route in self.routes()]

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Bind 127.0.0.1:0 and serve from a daemon thread. Returns self."""
        if self._server is not None:
            return self
        handler = type(f"{type(self).__name__}Handler", (_Handler,), {"standin": self})
        self._stopping.clear()
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (wakes any delayed request)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321" (no trailing slash)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ----------------------------------------------------------------------------------------- the log
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def request_count(self, path: str | None = None, *, method: str | None = None) -> int:
        """How many requests arrived (whose path starts with ``path`` / with ``method``, when given)."""
        return sum(
            1
            for recorded in self.requests
            if (path is None or recorded.path.startswith(path)) and (method is None or recorded.method == method)
        )

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside handlers (each answered 500): a stand-in bug, tests may assert empty."""
        with self._lock:
            return list(self._errors)

    # ------------------------------------------------------------------------------------- fault injection
    def fail_next(
        self,
        path_prefix: str,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        label: str | None = None,
    ) -> None:
        """The next ``times`` requests whose path starts with ``path_prefix`` get this reply instead."""
        reply_body = body if body is not None else self.error_body(status, f"Injected failure ({status})")
        fixed_headers = dict(headers or {})
        self.respond_next(
            path_prefix, lambda _: Reply(status, reply_body, dict(fixed_headers)), times=times, label=label
        )

    def delay_next(self, path_prefix: str, seconds: float, times: int = 1, *, label: str | None = None) -> None:
        """Sleep ``seconds`` before answering the next ``times`` matching requests (normally otherwise)."""
        self._add_fault(_Fault(path_prefix, times, None, seconds, label))

    def malformed_next(
        self, path_prefix: str, times: int = 1, *, body: bytes = MALFORMED_BODY, label: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests 200 with a Content-Type of JSON and a non-JSON body."""
        self.respond_next(path_prefix, lambda _: Reply(200, body), times=times, label=label)

    def redirect_next(
        self, path_prefix: str, location: str, *, status: int = 307, times: int = 1, label: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests ``status`` (301/302/303/307/308) with
        ``Location: <location><path>[?<query>]``: e.g. another stand-in's URL, to check that a client does not
        follow a redirect to another host (it would take the request's query or body there)."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError("status must be a redirect (301, 302, 303, 307 or 308)")
        base = location.rstrip("/")

        def respond(request: Request) -> Reply:
            target = base + request.path + (f"?{request.query_string}" if request.query_string else "")
            return Reply(status, self.error_body(status, f"Moved to {target}"), {"Location": target})

        self.respond_next(path_prefix, respond, times=times, label=label)

    def respond_next(
        self, path_prefix: str, respond: Callable[[Request], Reply], *, times: int = 1, label: str | None = None
    ) -> None:
        """General fault: the next ``times`` matching requests are answered by ``respond(request)``."""
        self._add_fault(_Fault(path_prefix, times, respond, label=label))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected answers are still armed (sum of the faults' remaining ``times``)."""
        with self._lock:
            return sum(fault.remaining for fault in self._faults)

    @property
    def fired_faults(self) -> Counter[str]:
        """How many requests each labelled fault answered (or delayed) so far."""
        with self._lock:
            return Counter(self._fired)

    def count_fired(self, label: str | None) -> None:
        """Count one firing of ``label`` (for subclasses' own faults; None is ignored)."""
        if label is not None:
            with self._lock:
                self._fired[label] += 1

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str, *, delay: bool) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (fault.respond is None) == delay and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    if fault.label is not None:
                        self._fired[fault.label] += 1
                    return fault
        return None

    # ------------------------------------------------------------------------------------------- dispatch
    def routes(self) -> Iterable[Route]:
        """The endpoints this stand-in serves."""
        return ()

    def authenticate(self, request: Request) -> None:
        """Raise HttpError when the request may not call a route with ``auth=True``."""

    def decorate(self, request: Request, reply: Reply) -> None:
        """Last look at every reply (including injected faults), e.g. to add headers."""

    def error_body(self, status: int, message: str) -> Any:
        """The JSON body of an error reply, in the service's own shape (DRF: {"detail": ...})."""
        return {"detail": message}

    def error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> HttpError:
        """Build (not raise) an HttpError with the service's error body."""
        return HttpError(Reply(status, self.error_body(status, message), dict(headers or {})))

    def handle(self, request: Request) -> Reply:
        """Faults first, then routing, authentication and the handler. Records the request.

        Injected faults answer before routing and authentication, like a load balancer or a crashed
        worker would (stand-in behaviour, not a contract fact).
        """
        arrived = time.time()
        if self.latency > 0:
            self._stopping.wait(self.latency)
        delay = self._take_fault(request.path, delay=True)
        if delay is not None:
            self._stopping.wait(delay.delay)
        fault = self._take_fault(request.path, delay=False)
        respond = fault.respond if fault is not None and fault.respond is not None else self._dispatch
        reply = respond(request)
        try:
            self.decorate(request, reply)
        except Exception as exc:  # a bug in the stand-in itself
            with self._lock:
                self._errors.append(exc)
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            json_body=request.json_or_none(),
            form=request.form_or_none(),
            raw_body=request.body,
            status=reply.status,
            at=arrived,
        )
        with self._lock:
            self._log.append(recorded)
        return reply

    def _dispatch(self, request: Request) -> Reply:
        path = normalise_path(request.path)
        allowed: list[str] = []
        try:
            for route, regex in self._routes:
                match = regex.fullmatch(path)
                if match is None:
                    continue
                if route.method != request.method:
                    allowed.append(route.method)
                    continue
                request.match = match
                if route.auth:
                    self.authenticate(request)
                return route.handler(request)
            if allowed:
                raise self.error(405, f'Method "{request.method}" not allowed.', {"Allow": ", ".join(allowed)})
            raise self.error(404, "Not found.")
        except HttpError as exc:
            return exc.reply
        except Exception as exc:  # a bug in the stand-in: answer 500, keep it for the tests
            with self._lock:
                self._errors.append(exc)
            return Reply(500, self.error_body(500, f"{self.name} crashed: {exc!r}"))
