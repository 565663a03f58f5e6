"""Hosts and time are bounded (issue 6): the HTTP layer against a small hostile server of its own.

The server (``Hostile``) is a ``ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral port, HTTP/1.1
keep-alive, served from a daemon thread; each test scripts its replies with a route function. A second
instance on another port is another origin ("a foreign host"): every redirect test checks it received
nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from license_notifications.adapters.braze import BrazeClient, Recipient, UserAlias
from license_notifications.adapters.http import MAX_REDIRECTS, PAGINATION_SLACK_PAGES, HttpClient, RetryPolicy
from license_notifications.adapters.license_manager import LicenseManagerClient
from license_notifications.errors import AmbiguousOutcomeError, MalformedResponseError, RedirectRefusedError

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


class Hostile:
    """One origin: http://127.0.0.1:<port>. ``route(handler)`` answers each request (default: 404)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
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
    assert braze.trigger_campaign("camp", [alias_recipient("a@example.com")]) == "d-1"
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
