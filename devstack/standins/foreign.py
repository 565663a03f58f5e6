"""A server on another host (another port of 127.0.0.1) that the real services never send a client to.

It serves no route: every request is recorded (``requests``) and answered 404. Point a stand-in's
``redirect_next`` at its ``url`` to check that a client does not follow a redirect off its configured host
(it would carry the request's query, body or credentials there): the foreign host must record nothing.
"""

from __future__ import annotations

from .base import StandIn


class ForeignHost(StandIn):
    """Records whatever reaches it; answers 404 ``{"detail": "Not found."}`` to everything."""

    name = "foreign host"
