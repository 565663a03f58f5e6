"""One WSGI app served on 127.0.0.1 at an ephemeral port from a daemon thread: what moto's server
(``aws.MotoStack``), the DynamoDB throttling proxy (``dynamodb_faults``) and the stand-ins (``standins/base.py``)
each run on."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class LoopbackServer:
    """werkzeug's threaded server for ``app``. ``make_server`` binds before returning, so once :meth:`start`
    returns the port is known and accepts connections (queued by the kernel) even before ``serve_forever`` runs."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        request_handler: type[WSGIRequestHandler],
        poll_interval: float = 0.5,
        join_timeout: float = 10.0,
    ) -> None:
        self.app, self.name, self.request_handler = app, name, request_handler
        self.poll_interval, self.join_timeout = poll_interval, join_timeout
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        if self._server is None:
            self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=self.request_handler)
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(self.poll_interval,), name=self.name, daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=self.join_timeout)
