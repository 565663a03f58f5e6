"""Shared machinery for the local HTTP stand-ins (license-manager, LMS + OAuth2, Braze), on werkzeug.

A ``StandIn`` serves its ``routes()`` (a werkzeug ``routing.Map``; trailing slashes optional, as contract section
2 says) from ``werkzeug.serving.make_server(threaded=True)`` on 127.0.0.1, an ephemeral port, in a daemon
thread. Handlers take a ``Request`` and return a ``Reply``; they reject bad input by raising ``HttpError``.

Every request is recorded (``StandIn.requests``) with the status it got, and tests can inject faults that
take precedence over the normal handlers: ``fail_next`` (any status/body/headers), ``delay_next`` (sleep
before answering, to provoke client timeouts), ``malformed_next`` (200 whose body is not JSON),
``redirect_next`` (a redirect to another server) and ``respond_next`` (any reply). A fault given a ``label``
is counted in ``fired_faults`` when it answers a request (the soak reports what fired, not only what was
armed). ``latency`` (seconds, 0 by default) is slept before answering every request.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlencode

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response

from devstack.loopback import LoopbackServer

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


class Request(WerkzeugRequest):
    """werkzeug's request, with the route's ``match`` (its URL variables) and a few helpers."""

    match: dict[str, str]
    caller: Any = None  # the authenticated caller (``oauth.IssuedToken``: its rights), set by ``require_jwt``

    @property
    def body(self) -> bytes:
        return self.get_data(cache=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        """Last value of a query parameter (Django's QueryDict.get semantics)."""
        values = self.args.getlist(name)
        return values[-1] if values else default

    def json_or_none(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def form_or_none(self) -> dict[str, list[str]] | None:
        """The body parsed as a form when the content type says so."""
        if self.mimetype != FORM_CONTENT_TYPE:
            return None
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def record(self, status: int, at: float) -> RecordedRequest:
        return RecordedRequest(
            self.method,
            self.path,
            self.args.to_dict(flat=False),
            {key.lower(): value for key, value in self.headers.items()},
            self.json_or_none(),
            self.form_or_none(),
            self.body,
            status,
            at,
        )


@dataclass
class Reply:
    """A response: ``body`` is JSON-encoded unless it is bytes or str."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_CONTENT_TYPE

    def response(self) -> Response:
        body = self.body
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return Response(body or b"", self.status, self.headers, content_type=self.content_type)


class HttpError(Exception):
    """Raised by handlers to answer with an error reply."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"HTTP {reply.status}")
        self.reply = reply


# Django's production 500 page (DEBUG off): what a crash in the real services' views answers (contract 2.4/3.3
# record the status; the page itself is Django's default ``500.html``).
SERVER_ERROR_PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n'
    "  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)


def server_error() -> HttpError:
    """The real service's answer where its view crashes on the input (e.g. a malformed uuid it passes to the ORM)."""
    return HttpError(Reply(500, SERVER_ERROR_PAGE, content_type="text/html; charset=utf-8"))


def route(method: str, path: str, handler: Callable[[Request], Reply], *, auth: bool = True) -> Rule:
    """A rule for ``path`` (werkzeug syntax, no trailing slash); ``auth``: the stand-in's authenticate() applies."""
    return Rule(path, methods=[method], endpoint=(handler, auth))


@dataclass
class _Fault:
    path_prefix: str
    remaining: int
    respond: Callable[[Request], Reply] | None = None  # None for a pure delay
    delay: float = 0.0
    label: str | None = None  # counted in StandIn.fired_faults when it answers a request


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, keeping the connection open (HTTP/1.1 keep-alive, as the real services behind their
    load balancers; werkzeug's own closes every connection) and with Nagle off (headers and body are separate
    writes: no 40 ms delayed-ACK stall). The request body is read in full before any answer."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: BaseWSGIServer

    def run_wsgi(self) -> None:
        response = self.server.app.respond(Request(self.make_environ()))  # type: ignore[attr-defined]
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.get_data())

    def log(self, *args: Any) -> None:
        """Quiet: the request log lives in StandIn.requests, handler errors in StandIn.errors."""


class StandIn:
    """Base class: an HTTP server on 127.0.0.1:<ephemeral> with a request log and fault injection.

    Subclasses implement ``routes()`` and may override ``authenticate()``, ``decorate()`` and
    ``error_body()``. Usage::

        with BrazeStandIn(api_key="k") as braze:
            requests.post(braze.url + "/users/alias/new", ...)
    """

    name: ClassVar[str] = "stand-in"
    latency: float = 0.0  # seconds slept before answering each request

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._fired: Counter[str] = Counter()
        self._errors: list[BaseException] = []
        self._server = LoopbackServer(
            self, name=f"{type(self).__name__}-server", request_handler=_Handler, poll_interval=0.05, join_timeout=5
        )
        self._stopping = threading.Event()
        self._map = Map(self.routes(), strict_slashes=False, merge_slashes=False)

    # ---------------------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Bind 127.0.0.1:0 and serve from a daemon thread. Returns self."""
        if not self._server.running:
            self._stopping.clear()
            self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (wakes any delayed request)."""
        if self._server.running:
            self._stopping.set()
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321" (no trailing slash)."""
        return self._server.url

    # ----------------------------------------------------------------------------------------- the log
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Forget the requests received so far (a long benchmark run would otherwise keep every body)."""
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

    def record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

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
        fixed = dict(headers or {})
        self.respond_next(path_prefix, lambda _: Reply(status, reply_body, dict(fixed)), times=times, label=label)

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

        def respond(request: Request) -> Reply:
            query = request.query_string.decode()
            target = location.rstrip("/") + request.path + (f"?{query}" if query else "")
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
            fault = next(
                (f for f in self._faults if (f.respond is None) == delay and path.startswith(f.path_prefix)), None
            )
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if fault is not None:
            self.count_fired(fault.label)
        return fault

    # ------------------------------------------------------------------------------------------- dispatch
    def routes(self) -> list[Rule]:
        """The endpoints this stand-in serves."""
        return []

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

    def respond(self, request: Request) -> Response:
        """Latency and faults first, then routing, authentication and the handler. Records the request.

        Injected faults answer before routing and authentication, like a load balancer or a crashed
        worker would (stand-in behaviour, not a contract fact).
        """
        arrived, _ = time.time(), request.body  # the whole body is read before anything answers (keep-alive)
        delay = self._take_fault(request.path, delay=True)
        self._stopping.wait(self.latency + (delay.delay if delay is not None else 0.0))
        fault = self._take_fault(request.path, delay=False)
        reply = fault.respond(request) if fault is not None and fault.respond is not None else self._dispatch(request)
        try:
            self.decorate(request, reply)
        except Exception as exc:  # a bug in the stand-in itself
            self.record_error(exc)
        with self._lock:
            self._log.append(request.record(reply.status, arrived))
        return reply.response()

    def _dispatch(self, request: Request) -> Reply:
        try:
            (handler, auth), request.match = self._map.bind("stand-in").match(
                request.path.rstrip("/") or "/", request.method
            )
            if auth:
                self.authenticate(request)
            return handler(request)
        except MethodNotAllowed as exc:
            allowed = ", ".join(exc.valid_methods or ())
            return self.error(405, f'Method "{request.method}" not allowed.', {"Allow": allowed}).reply
        except NotFound:
            return self.error(404, "Not found.").reply
        except HttpError as exc:
            return exc.reply
        except Exception as exc:  # a bug in the stand-in: answer 500, keep it for the tests
            self.record_error(exc)
            return Reply(500, self.error_body(500, f"{self.name} crashed: {exc!r}"))

    # ----------------------------------------------------------------------------------------- pagination
    def paginate(
        self, request: Request, items: list[Any], *, size: int, max_size: int | None = None, fields: tuple[str, ...]
    ) -> dict[str, Any]:
        """One page of ``items`` as Django's Paginator and DRF's PageNumberPagination serve it, with ``fields``
        of ``count``, ``next``, ``previous``, ``num_pages``, ``current_page``, ``start`` and ``results``.

        ``page_size`` is honoured only with ``max_size``, capped there silently (an invalid one means ``size``).
        ``page`` must be a number within range or "last", else 404 "Invalid page."; an empty list has page 1.
        ``next`` and ``previous`` are absolute, with the query's parameters sorted (DRF's replace_query_param).
        """
        if max_size is not None:
            raw_size = request.param("page_size") or ""
            size = min(int(raw_size), max_size) if raw_size.isdigit() and int(raw_size) > 0 else size
        num_pages = max(1, math.ceil(len(items) / size))
        raw_page = request.param("page") or "1"
        number = num_pages if raw_page == "last" else int(raw_page) if raw_page.isdigit() else 0
        if not 1 <= number <= num_pages:
            raise self.error(404, "Invalid page.")
        page = {
            "count": len(items),
            "next": self._page_url(request, number + 1) if number < num_pages else None,
            "previous": self._page_url(request, number - 1) if number > 1 else None,
            "num_pages": num_pages,
            "current_page": number,
            "start": (number - 1) * size,
            "results": items[(number - 1) * size : number * size],
        }
        return {name: page[name] for name in fields}

    def _page_url(self, request: Request, number: int) -> str:
        params = {**request.args.to_dict(flat=False), "page": [str(number)]}
        if number == 1:  # DRF's previous link of page 2 drops ``page``
            del params["page"]
        query = urlencode(sorted(params.items()), doseq=True)
        return f"{self.url}{request.path}" + (f"?{query}" if query else "")
