"""Typed errors shared by every adapter and job.

``ConfigurationError`` is systemic: it stops a whole run before anything is sent. ``UpstreamError`` and its
subclasses describe one failed call to license-manager, the LMS or Braze; ``retryable`` says whether the
HTTP layer may try the call again (429, 5xx, timeouts, connection errors) or must not (other 4xx,
malformed replies).
"""

from __future__ import annotations


class ConfigurationError(ValueError):
    """A setting or input that makes the whole run pointless (the spec's "Configuration Errors")."""


class UpstreamError(Exception):
    """A call to an outside service failed."""

    retryable = False

    def __init__(self, service: str, message: str, *, status: int | None = None, url: str | None = None):
        self.service = service
        self.status = status
        self.url = url
        where = f" {url}" if url else ""
        code = f" HTTP {status}" if status is not None else ""
        super().__init__(f"{service}{code}{where}: {message}")


class BadRequestError(UpstreamError):
    """400: the request was wrong; retrying cannot help."""


class AuthenticationError(UpstreamError):
    """401: bad key or token (after one token refresh, for the JWT services)."""


class PermissionDeniedError(UpstreamError):
    """403: the credentials lack a role or permission."""


class NotFoundError(UpstreamError):
    """404: unknown resource (e.g. an inactive enterprise customer in the LMS)."""


class MalformedResponseError(UpstreamError):
    """A 2xx reply whose body is not the JSON shape the contract promises."""


class AmbiguousOutcomeError(UpstreamError):
    """A non-idempotent call (a Braze send) whose outcome is unknown: the request went out but no reply came
    (read timeout, connection dropped mid-reply). Retrying could deliver twice, so it is not retried."""


class RedirectRefusedError(UpstreamError):
    """A 3xx reply the HTTP layer would not follow: a redirect to another origin (scheme, host or port), one
    that would turn a POST into a GET, a redirect without a Location, or too many hops. Nothing was sent to
    the location it named, and the service did not process the request (it answered with a redirect), so
    this is never retried and never ambiguous: retrying would only be redirected again."""


class TransientUpstreamError(UpstreamError):
    """Worth another try: rate limits, server errors, timeouts, broken connections."""

    retryable = True


class RateLimitedError(TransientUpstreamError):
    """429. ``reset_at`` is the UTC epoch second the limit resets (Braze X-RateLimit-Reset), if known."""

    def __init__(self, service: str, message: str, *, reset_at: float | None = None, **kwargs):
        self.reset_at = reset_at
        super().__init__(service, message, **kwargs)


class ServerError(TransientUpstreamError):
    """5xx."""


class UpstreamTimeout(TransientUpstreamError):
    """No reply within the configured timeout."""


class UpstreamConnectionError(TransientUpstreamError):
    """The connection could not be made or broke."""


_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


def error_for_status(status: int) -> type[UpstreamError]:
    """The error class for a non-2xx HTTP status (429 is built separately, it carries a reset time)."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, BadRequestError)
