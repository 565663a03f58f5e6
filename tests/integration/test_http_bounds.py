"""Hosts and time are bounded (issue 6): the HTTP layer against a small hostile server of its own.

The server (``Hostile``) is a ``ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral port, HTTP/1.1
keep-alive, served from a daemon thread; each test scripts its replies with a route function. A second
instance on another port is another origin ("a foreign host"): every redirect test checks it received
nothing. Trickling replies write one byte at a time, so they show how long an exchange may take, not a
read: the old client, whose timeout bounded each socket read, sat through the whole trickle.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from license_notifications.adapters.braze import BrazeClient, Recipient, UserAlias
from license_notifications.adapters.http import (
    MAX_REDIRECTS,
    PAGINATION_SLACK_PAGES,
    HttpClient,
    RetryPolicy,
    call_deadline,
)
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.errors import (
    AmbiguousOutcomeError,
    MalformedResponseError,
    RedirectRefusedError,
    ServerError,
    UpstreamTimeout,
)

TRICKLE_BYTES = 30
TRICKLE_INTERVAL = 0.2  # 30 bytes: 6 s for the whole reply, every read answered well within any timeout
TRICKLE_SECONDS = TRICKLE_BYTES * TRICKLE_INTERVAL


# -- the hostile server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with its query
    body: bytes
    headers: dict[str, str]  # lower-case keys
    client_port: int  # one per TCP connection: tells reused connections apart from new ones


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the stand-ins and the real services
    disable_nagle_algorithm = True  # each trickled byte leaves at once

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        hostile: Hostile = self.server.hostile  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        hostile.seen.append(Seen(self.command, self.path, body, headers, self.client_address[1]))
        try:
            hostile.route(self)
        except OSError:  # the client hung up mid-reply (broken pipe, reset)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # replies

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    @property
    def route_path(self) -> str:
        return urlsplit(self.path).path

    def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, status: int, location: str) -> None:
        self.reply(status, {"detail": "moved"}, headers={"Location": location})

    def trickle_body(self) -> None:
        """A 200 whose headers arrive at once and whose JSON body arrives one byte per TRICKLE_INTERVAL."""
        data = json.dumps({"x": "y" * (TRICKLE_BYTES - 9)}).encode()
        assert len(data) == TRICKLE_BYTES
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._trickle(data)

    def trickle_headers(self) -> None:
        """Even the status line and headers arrive one byte per TRICKLE_INTERVAL."""
        data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: 0123\r\nContent-Length: 2\r\n\r\n{}"
        assert len(data) > TRICKLE_BYTES
        self._trickle(data)

    def _trickle(self, data: bytes) -> None:
        hostile: Hostile = self.server.hostile  # type: ignore[attr-defined]
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            time.sleep(TRICKLE_INTERVAL)
        hostile.trickles_finished += 1


class Hostile:
    """One origin: http://127.0.0.1:<port>. ``route(handler)`` answers each request (default: 404)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.trickles_finished = 0
        self.route: Callable[[Handler], None] = lambda h: h.reply(404, {"detail": "Not found."})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.hostile = self  # type: ignore[attr-defined]
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def origin() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


@pytest.fixture
def foreign() -> Iterator[Hostile]:
    server = Hostile()
    server.route = lambda h: h.reply(200, {"count": 1, "next": None, "previous": None, "results": [{"foreign": 1}]})
    yield server
    server.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., HttpClient]]:
    clients: list[HttpClient] = []

    def make(service: str = "license-manager", *, timeout: float = 2.0, attempts: int = 1, **kwargs) -> HttpClient:
        client = HttpClient(
            service, timeout=timeout, retry=RetryPolicy(max_attempts=attempts), sleep=lambda _: None, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.session.close()


def page_reply(items: list[Any], *, count: int | None, next_url: str | None, **extra: Any) -> dict[str, Any]:
    return {"count": count, "next": next_url, "previous": None, "results": items, **extra}


def plan_page(*, next_url: str | None = None) -> dict[str, Any]:
    return page_reply([], count=0, next_url=next_url)


def alias_recipient(email: str) -> Recipient:
    return Recipient(user_alias=UserAlias(email), attributes={"email": email})


# -- redirects ------------------------------------------------------------------------------------------------


def test_a_302_from_license_manager_to_another_origin_is_refused(origin, foreign, make_client):
    origin.route = lambda h: h.redirect(302, f"{foreign.url}/api/v1/subscriptions/?secret=s3cr3t")
    client = make_client(attempts=3)
    lm = LicenseManagerClient(client, origin.url)
    with pytest.raises(RedirectRefusedError) as info:
        lm.enterprise_plans("00000000-0000-4000-8000-000000000000")
    assert foreign.seen == []
    assert len(origin.seen) == 1  # not retried: another try is only redirected again
    assert client.request_count == 1
    assert info.value.status == 302
    assert f"127.0.0.1:{foreign.port}" in str(info.value)
    assert "s3cr3t" not in str(info.value)  # the refused location's origin, never its query


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_redirect_status_leads_a_get_off_the_origin(origin, foreign, make_client, status):
    origin.route = lambda h: h.redirect(status, f"{foreign.url}/elsewhere")
    with pytest.raises(RedirectRefusedError, match=f"HTTP {status}"):
        make_client().get(f"{origin.url}/api/v1/subscriptions/")
    assert foreign.seen == []


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/same/server/other/host",  # the same server by another name is another origin
        "https://127.0.0.1:{port}/other/scheme",
        "http://user:pw@127.0.0.1:{port}/credentials",
        "ftp://127.0.0.1:{port}/odd/scheme",
    ],
)
def test_scheme_host_and_port_must_all_match(origin, make_client, location):
    origin.route = lambda h: h.redirect(302, location.format(port=origin.port))
    with pytest.raises(RedirectRefusedError, match="another origin") as info:
        make_client().get(f"{origin.url}/start")
    assert len(origin.seen) == 1
    assert "pw" not in str(info.value)


def test_a_braze_send_redirected_elsewhere_is_refused_and_not_ambiguous(origin, foreign, make_client):
    """A 307 keeps the POST body (learner emails): it must never reach another host."""
    origin.route = lambda h: h.redirect(307, f"{foreign.url}/campaigns/trigger/send")
    client = make_client("braze", attempts=3, default_headers={"Authorization": "Bearer braze-key"})
    braze = BrazeClient(client, origin.url)
    with pytest.raises(RedirectRefusedError) as info:
        braze.trigger_campaign("camp", [alias_recipient("jane.doe@example.com")])
    assert not isinstance(info.value, AmbiguousOutcomeError)  # Braze answered with a redirect: not processed
    assert foreign.seen == []
    assert [s.path for s in origin.seen] == ["/campaigns/trigger/send"]
    assert info.value.status == 307


def test_a_same_origin_redirect_is_followed(origin, foreign, make_client):
    def route(h: Handler) -> None:
        if h.route_path == "/old":
            h.redirect(302, "/new?page=2")  # relative, as Django writes them
        elif h.route_path == "/new":
            h.reply(200, {"at": h.path})
        else:
            h.reply(404)

    origin.route = route
    client = make_client()
    assert client.get(f"{origin.url}/old", params={"page": "1"}) == {"at": "/new?page=2"}  # the Location's query
    assert [s.path for s in origin.seen] == ["/old?page=1", "/new?page=2"]
    assert client.request_count == 2  # both hops were requests sent
    assert len({s.client_port for s in origin.seen}) == 1  # the redirect's body was drained: connection reused
    assert foreign.seen == []


def test_a_same_origin_307_on_a_post_keeps_method_and_body(origin, make_client):
    def route(h: Handler) -> None:
        if h.route_path == "/campaigns/trigger/send":
            h.redirect(307, f"{origin.url}/v2/campaigns/trigger/send")
        else:
            h.reply(201, {"dispatch_id": "d-1", "message": "success"})

    origin.route = route
    client = make_client("braze", default_headers={"Authorization": "Bearer braze-key"})
    braze = BrazeClient(client, origin.url)
    assert braze.trigger_campaign("camp", [alias_recipient("a@example.com")]).dispatch_id == "d-1"
    first, second = origin.seen
    assert (first.method, second.method) == ("POST", "POST")
    assert second.path == "/v2/campaigns/trigger/send"
    assert second.body == first.body
    assert json.loads(second.body)["recipients"][0]["attributes"] == {"email": "a@example.com"}
    assert second.headers["authorization"] == "Bearer braze-key"
    assert client.request_count == 2


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_post_is_never_turned_into_a_get(origin, make_client, status):
    origin.route = lambda h: h.redirect(status, "/somewhere/else") if h.command == "POST" else h.reply(200, {})
    with pytest.raises(RedirectRefusedError, match="GET"):
        make_client().post(f"{origin.url}/users/alias/new", json={"user_aliases": []})
    assert [s.method for s in origin.seen] == ["POST"]


def test_redirect_hops_are_bounded(origin, make_client):
    origin.route = lambda h: h.redirect(302, f"/hop?n={int(h.query.get('n', ['0'])[0]) + 1}")
    with pytest.raises(RedirectRefusedError, match=f"more than {MAX_REDIRECTS} redirects"):
        make_client().get(f"{origin.url}/hop")
    assert len(origin.seen) == MAX_REDIRECTS + 1


def test_a_redirect_without_location_is_refused(origin, make_client):
    origin.route = lambda h: h.reply(302, {"detail": "moved, somewhere"})
    with pytest.raises(RedirectRefusedError, match="without a Location"):
        make_client().get(f"{origin.url}/x")


# -- the time bound -------------------------------------------------------------------------------------------


def test_a_trickled_body_times_out_within_the_attempt_bound(origin, make_client):
    origin.route = lambda h: h.trickle_body()
    client = make_client(timeout=1.0)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=r"no complete reply within 1\.0s"):
        client.get(f"{origin.url}/api/v1/subscriptions/")
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3.0
    assert TRICKLE_SECONDS >= 2 * 3.0  # every byte came within 0.2 s: a per-read timeout sits through it all
    assert origin.trickles_finished == 0  # we hung up mid-reply


def test_trickled_headers_time_out_too(origin, make_client):
    origin.route = lambda h: h.trickle_headers()
    client = make_client(timeout=1.0)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        client.get(f"{origin.url}/api/v1/subscriptions/")
    assert 0.9 <= time.monotonic() - start < 3.0
    assert origin.trickles_finished == 0


def test_a_trickled_reply_to_a_send_is_ambiguous_and_not_retried(origin, make_client):
    origin.route = lambda h: h.trickle_body()
    client = make_client("braze", timeout=1.0, attempts=3)
    start = time.monotonic()
    with pytest.raises(AmbiguousOutcomeError, match=r"no complete reply within 1\.0s"):
        client.post(f"{origin.url}/campaigns/trigger/send", json={"campaign_id": "c"}, idempotent=False)
    assert time.monotonic() - start < 3.0
    assert len(origin.seen) == 1


def test_a_stalled_tls_handshake_on_a_send_is_a_plain_timeout(make_client):
    """A server that accepts TCP but never answers the TLS ClientHello: cut at the deadline, and since no
    byte of the request went out, a send is retried rather than reported ambiguous."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(listener.accept()[0]) for _ in range(2)], daemon=True).start()
    client = make_client("braze", timeout=0.5, attempts=2)
    start = time.monotonic()
    try:
        with pytest.raises(UpstreamTimeout, match="not connected within") as info:
            client.post(
                f"https://127.0.0.1:{listener.getsockname()[1]}/campaigns/trigger/send", json={}, idempotent=False
            )
        assert not isinstance(info.value, AmbiguousOutcomeError)
        assert time.monotonic() - start < 2.5
        assert len(accepted) == 2  # retried: nothing had been sent
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_timed_out_attempt_is_retried_on_a_fresh_connection(origin, make_client):
    """The interrupted connection is not reused; the retry succeeds and later calls reuse its connection."""

    def route(h: Handler) -> None:
        if len(origin.seen) == 1:
            h.trickle_body()
        else:
            h.reply(200, {"ok": len(origin.seen)})

    origin.route = route
    client = make_client(timeout=0.6, attempts=2)
    assert client.get(f"{origin.url}/a") == {"ok": 2}
    assert client.get(f"{origin.url}/b") == {"ok": 3}
    ports = [s.client_port for s in origin.seen]
    assert ports[0] != ports[1] == ports[2]


def test_a_short_deadline_fires_on_time_while_a_longer_one_is_pending(origin, make_client):
    """One watchdog serves every client and thread: a 0.5 s attempt started while a 30 s one waits in another
    thread is cut at 0.5 s, and the other attempt (its own deadline, its own connection) is left alone."""
    release = threading.Event()

    def route(h: Handler) -> None:
        if h.route_path == "/slow":
            release.wait(10)
            h.reply(200, {"slow": True})
        else:
            h.trickle_body()

    origin.route = route
    slow, fast = make_client(timeout=30.0), make_client(timeout=0.5)
    result: dict[str, Any] = {}
    waiting = threading.Thread(target=lambda: result.update(reply=slow.get(f"{origin.url}/slow")), daemon=True)
    waiting.start()
    for _ in range(200):
        if origin.seen:
            break
        time.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        fast.get(f"{origin.url}/trickle")
    assert time.monotonic() - start < 1.5
    release.set()
    waiting.join(5)
    assert result == {"reply": {"slow": True}}


def test_the_bound_covers_all_redirect_hops_of_an_attempt(origin, make_client):
    """One deadline per attempt, redirects included: a hop is not started once it has passed."""
    now = [0.0]

    def route(h: Handler) -> None:
        now[0] += 5.0  # the reply took "5 s" by the injected clock
        h.reply(302, headers={"Location": "/next"})

    origin.route = route
    client = make_client(timeout=2.0, monotonic=lambda: now[0])
    with pytest.raises(UpstreamTimeout):
        client.get(f"{origin.url}/first")
    assert [s.path for s in origin.seen] == ["/first"]


def test_connections_are_pooled(origin, make_client):
    origin.route = lambda h: h.reply(200, {"n": len(origin.seen)})
    client = make_client()
    for i in range(5):
        assert client.get(f"{origin.url}/x") == {"n": i + 1}
    assert len({s.client_port for s in origin.seen}) == 1


# -- pagination ends ------------------------------------------------------------------------------------------


def serve_pages(
    origin: Hostile, *, per_page: int, count: Callable[[int], int], last_page: int = 1000, **extra: Any
) -> None:
    """Page ``n`` (1-based, ``?page=n``) has ``per_page`` results, ``count(n)`` as its count, and a ``next``
    up to ``last_page`` (a server that goes on much longer than it says)."""

    def route(h: Handler) -> None:
        n = int(h.query.get("page", ["1"])[0])
        nxt = f"{origin.url}/list/?page={n + 1}" if n < last_page else None
        items = [{"id": (n - 1) * per_page + i} for i in range(per_page)]
        h.reply(200, page_reply(items, count=count(n), next_url=nxt, **extra))

    origin.route = route


def read_pages(client: HttpClient, url: str, pages: list[dict[str, Any]], **kwargs: Any) -> None:
    for page in client.paginate(url, **kwargs):
        pages.append(page)


def test_an_endless_next_chain_stops_once_count_says_it_should_have_ended(origin, make_client):
    serve_pages(origin, per_page=10, count=lambda n: 30)
    pages: list[dict[str, Any]] = []
    with pytest.raises(MalformedResponseError, match="pagination does not end"):
        read_pages(make_client(), f"{origin.url}/list/", pages)
    assert len(pages) == len(origin.seen) == 3 + PAGINATION_SLACK_PAGES


def test_num_pages_bounds_the_chain_when_count_lies(origin, make_client):
    serve_pages(origin, per_page=10, count=lambda n: 10**6, num_pages=3)
    with pytest.raises(MalformedResponseError, match="3 pages the first page announced"):
        read_pages(make_client(), f"{origin.url}/list/", [])
    assert len(origin.seen) == 3 + PAGINATION_SLACK_PAGES


def test_more_items_than_count_is_refused_before_they_are_yielded(origin, make_client):
    def route(h: Handler) -> None:
        if "page=2" in h.path:
            h.reply(200, page_reply([{"id": i} for i in range(500)], count=5, next_url=None))
        else:
            h.reply(200, page_reply([{"id": i} for i in range(5)], count=5, next_url=f"{origin.url}/list/?page=2"))

    origin.route = route
    pages: list[dict[str, Any]] = []
    with pytest.raises(MalformedResponseError, match="505 items received"):
        read_pages(make_client(), f"{origin.url}/list/", pages)
    assert len(pages) == 1


def test_the_hard_page_cap_stops_a_server_whose_count_is_huge(origin, make_client):
    serve_pages(origin, per_page=1, count=lambda n: 10**9)
    pages: list[dict[str, Any]] = []
    with pytest.raises(MalformedResponseError, match="cap of 7 pages"):
        read_pages(make_client(), f"{origin.url}/list/", pages, max_pages=7)
    assert len(pages) == len(origin.seen) == 7


def test_the_client_wide_page_cap_applies_without_count(origin, make_client):
    serve_pages(origin, per_page=1, count=lambda n: None)  # no usable count: only the cap and loops apply
    with pytest.raises(MalformedResponseError, match="cap of 4 pages"):
        read_pages(make_client(max_pages=4), f"{origin.url}/list/", [])
    assert len(origin.seen) == 4


def test_a_list_growing_while_read_still_completes(origin, make_client):
    """count 30 on the first page, 10 a page; two records are added while we read: 4 pages, 32 items."""
    total = {1: 30, 2: 31, 3: 32, 4: 32}

    def route(h: Handler) -> None:
        n = int(h.query.get("page", ["1"])[0])
        start = (n - 1) * 10
        items = [{"id": i} for i in range(start, min(start + 10, total[n]))]
        nxt = f"{origin.url}/list/?page={n + 1}" if start + 10 < total[n] else None
        h.reply(200, page_reply(items, count=total[n], next_url=nxt, num_pages=-(-total[n] // 10)))

    origin.route = route
    pages: list[dict[str, Any]] = []
    read_pages(make_client(), f"{origin.url}/list/", pages)
    assert [len(p["results"]) for p in pages] == [10, 10, 10, 2]
    assert len({r["id"] for p in pages for r in p["results"]}) == 32


def test_an_empty_list_is_one_page(origin, make_client):
    origin.route = lambda h: h.reply(200, plan_page())
    pages: list[dict[str, Any]] = []
    read_pages(make_client(), f"{origin.url}/list/", pages)
    assert pages == [plan_page()]


# -- retries stop at the caller's deadline -----------------------------------------------------------------------


def test_no_retry_starts_after_the_call_deadline(origin, make_client):
    origin.route = lambda h: h.reply(503, {"detail": "unavailable"})
    clock = {"now": 100.0}
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock["now"] += seconds

    client = make_client(attempts=5, monotonic=lambda: clock["now"])
    client._sleep = sleep
    with pytest.raises(ServerError):  # without a deadline: every attempt
        client.get(f"{origin.url}/x")
    assert len(origin.seen) == 5
    origin.seen.clear()
    waits.clear()
    start = clock["now"]
    with call_deadline(start + 1.0), pytest.raises(ServerError):  # room for the first backoff(s) only
        client.get(f"{origin.url}/x")
    assert 1 <= len(origin.seen) < 5
    assert clock["now"] - start == pytest.approx(sum(waits))
    assert sum(waits) <= 1.0  # no attempt started after the deadline
