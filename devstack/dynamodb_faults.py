"""DynamoDB throttling on purpose (the soak's fault injection), in front of any DynamoDB endpoint.

:class:`ThrottlingProxy` is an HTTP proxy on 127.0.0.1 (a free port, a daemon thread) that forwards every
request to a DynamoDB endpoint (DynamoDB Local, see ``devstack/dynamodb_local.py``) and, when asked, answers a
share of them, or the next few, as DynamoDB throttles: HTTP 400 with a
``ProvisionedThroughputExceededException`` JSON body, the request not forwarded (so not executed)::

    with DynamoDBLocal() as engine, ThrottlingProxy(engine.endpoint_url) as proxy:  # doctest: +SKIP
        proxy.throttle(0.2, seed=7)  # AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint_url: a fifth throttled

Off by default: until :meth:`~ThrottlingProxy.throttle` or :meth:`~ThrottlingProxy.throttle_next`, every
request is forwarded as it came (method, path, headers, body) and its answer returned as it came.
``throttled`` counts the throttled requests by operation (``UpdateItem``, ``TransactWriteItems``...).
"""

from __future__ import annotations

import json
import random
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import urllib3
from werkzeug.serving import WSGIRequestHandler

from devstack.loopback import LoopbackServer

__all__ = ["THROTTLED_BODY", "ThrottlingProxy"]

THROTTLED_BODY = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}
# Not forwarded either way: they describe one connection, not the request (RFC 9110, 7.6.1), or are recomputed.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "host", "content-length"})  # fmt: skip


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ThrottlingProxy:
    """Forwards DynamoDB requests to ``target_url``; throttles a share of them, or the next few, when asked."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        if target.scheme != "http" or not target.hostname or not target.port:
            raise ValueError(f"expected http://host:port, got {target_url!r}")
        self.target_url = target_url
        self._pool = urllib3.HTTPConnectionPool(target.hostname, target.port, maxsize=32, block=False, retries=False,
                                                timeout=urllib3.Timeout(connect=5, read=60))  # fmt: skip
        self._lock = threading.Lock()
        self._rate = 0.0
        self._rate_operations: frozenset[str] | None = None
        self._next: list[frozenset[str] | None] = []
        self._rng = random.Random()  # fault injection, not cryptography
        self.throttled: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self._server = LoopbackServer(self, name="dynamodb-proxy", request_handler=_QuietHandler)

    # ------------------------------------------------------------------------------------------ faults
    def throttle(self, rate: float, *, operations: Iterable[str] | None = None, seed: int | None = None) -> None:
        """Throttle each request with probability ``rate`` (0 turns it off), only ``operations`` (e.g.
        ``{"UpdateItem"}``) when given; ``seed`` makes the draws repeatable."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._rate = rate
            self._rate_operations = frozenset(operations) if operations is not None else None
            if seed is not None:
                self._rng.seed(seed)

    def throttle_next(self, times: int = 1, *, operations: Iterable[str] | None = None) -> None:
        """Throttle the next ``times`` requests (of ``operations``, when given)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        wanted = frozenset(operations) if operations is not None else None
        with self._lock:
            self._next.extend([wanted] * times)

    def clear_throttling(self) -> None:
        with self._lock:
            self._rate, self._rate_operations = 0.0, None
            self._next.clear()

    def _throttles(self, operation: str) -> bool:
        with self._lock:
            for index, wanted in enumerate(self._next):
                if wanted is None or operation in wanted:
                    del self._next[index]
                    self.throttled[operation] += 1
                    return True
            wanted = self._rate_operations is None or operation in self._rate_operations
            if self._rate and wanted and self._rng.random() < self._rate:
                self.throttled[operation] += 1
                return True
            self.forwarded[operation] += 1
        return False

    # ------------------------------------------------------------------------------------------ proxy
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2] or "?"
        if self._throttles(operation):
            body = json.dumps(THROTTLED_BODY).encode()
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                               ("x-amzn-RequestId", secrets.token_hex(16)),
                                               ("Content-Length", str(len(body)))])  # fmt: skip
            return [body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-"): value for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["CONTENT-TYPE"] = environ["CONTENT_TYPE"]
        headers = {key: value for key, value in headers.items() if key.lower() not in _HOP_BY_HOP}
        path = environ.get("PATH_INFO") or "/"
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        try:
            reply = self._pool.urlopen(environ["REQUEST_METHOD"], path, body=body, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:  # the engine is gone: as a dead endpoint would answer
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [f"DynamoDB endpoint {self.target_url} unreachable: {exc}".encode()]
        data = reply.data
        answer = [(key, value) for key, value in reply.headers.items() if key.lower() not in _HOP_BY_HOP]
        status = f"{reply.status} {reply.reason or HTTPStatus(reply.status).phrase}"
        start_response(status, [*answer, ("Content-Length", str(len(data)))])
        return [data]

    @property
    def endpoint_url(self) -> str:
        return self._server.url

    def start(self) -> ThrottlingProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._pool.close()

    def __enter__(self) -> ThrottlingProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
