"""Braze REST API (contract section 4): alias creation and API-triggered campaign sends.

Braze has no idempotency key: every accepted trigger is delivered. Callers must make sure a trigger is
sent once (the ledger does); this client only refuses requests Braze would reject and retries only what
Braze says is transient (429 until X-RateLimit-Reset, 5xx, timeouts, connection errors).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from license_notifications.adapters.http import HttpClient
from license_notifications.errors import MalformedResponseError

logger = logging.getLogger(__name__)

SERVICE = "braze"
MAX_ALIASES_PER_REQUEST = 50
MAX_RECIPIENTS_PER_REQUEST = 50
LEARNER_ALIAS_LABEL = "Enterprise"


@dataclass(frozen=True)
class UserAlias:
    alias_name: str
    alias_label: str = LEARNER_ALIAS_LABEL

    def as_json(self) -> dict[str, str]:
        return {"alias_name": self.alias_name, "alias_label": self.alias_label}


@dataclass(frozen=True)
class Recipient:
    """Exactly one identifier: an alias (with ``attributes``, so Braze can create the profile) or an external id."""

    user_alias: UserAlias | None = None
    external_user_id: str | None = None
    trigger_properties: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.user_alias is None) == (self.external_user_id is None):
            raise ValueError("a Braze recipient needs exactly one of user_alias or external_user_id")
        if self.user_alias is not None and not self.attributes:
            raise ValueError("an alias recipient needs attributes (send_to_existing_only is false)")

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.user_alias is not None:
            body["user_alias"] = self.user_alias.as_json()
            body["send_to_existing_only"] = False
            body["attributes"] = dict(self.attributes or {})
        else:
            body["external_user_id"] = self.external_user_id
            if self.attributes:
                body["attributes"] = dict(self.attributes)
        if self.trigger_properties:
            body["trigger_properties"] = dict(self.trigger_properties)
        return body


@dataclass(frozen=True)
class SendResult:
    """An accepted trigger: Braze's ``dispatch_id`` (or what stands for it) and its non-fatal ``errors``."""

    dispatch_id: str
    errors: tuple[Any, ...] = ()


_INDEX = re.compile(r"recipients\s*\[\s*(\d+)\s*\]|\bindex['\"]?\s*[:=]?\s*(\d+)", re.IGNORECASE)


def _identifier(recipient: Recipient) -> str:
    return recipient.user_alias.alias_name if recipient.user_alias is not None else str(recipient.external_user_id)


def attribute_errors(errors: Sequence[Any], recipients: Sequence[Recipient]) -> dict[int, str]:
    """Which recipients (by index) Braze's non-fatal ``errors`` name, and the error naming each.

    Braze documents the entries only as "<minor error message>" (contract section 4 is silent on their
    shape), so an entry names a recipient by an index (``recipients[3]``, ``index 3``) or by its identifier
    (alias name / external id) in the text. Entries naming none are not attributed: the caller reports them
    for the whole request."""
    found: dict[int, str] = {}
    identifiers = {_identifier(r): i for i, r in enumerate(recipients)}
    for entry in errors:
        text = entry if isinstance(entry, str) else repr(entry)
        match = _INDEX.search(text)
        if match:
            index = int(match.group(1) or match.group(2))
            if 0 <= index < len(recipients):
                found.setdefault(index, text)
                continue
        for identifier, index in identifiers.items():
            if re.search(rf"(?<![\w.@+-]){re.escape(identifier)}(?![\w.@-])", text):
                found.setdefault(index, text)
    return found


class SendPacer:
    """Spaces one worker's trigger requests at least ``interval`` seconds apart (a worker's part of the
    workspace's send budget), so all workers together stay within it without waiting for 429s, which remain
    the backstop. The first request goes at once; thread-safe."""

    def __init__(
        self,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = -float("inf")
        self._lock = threading.Lock()

    def wait_turn(self) -> float:
        """Wait until this worker may send again; returns the seconds waited."""
        with self._lock:
            now = self._monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait


class BrazeClient:
    def __init__(self, http: HttpClient, base_url: str, *, pacer: SendPacer | None = None):
        self._http = http
        self._base = base_url.rstrip("/")
        self._pacer = pacer

    @property
    def request_count(self) -> int:
        return self._http.request_count

    def campaign_details(self, campaign_id: str) -> dict[str, Any]:
        """``GET /campaigns/details?campaign_id=`` (contract section 4; needs the key's ``campaigns.details``
        permission): ``{"message", "name", "enabled", "draft", "archived", ...}``. Reads only."""
        reply = self._http.get(f"{self._base}/campaigns/details", params={"campaign_id": campaign_id})
        if not isinstance(reply, dict):
            raise MalformedResponseError(SERVICE, "campaign details: not a JSON object")
        return reply

    def create_aliases(self, aliases: Sequence[UserAlias]) -> None:
        """``POST /users/alias/new``, at most 50 aliases a request (one request per 50)."""
        unique = list(dict.fromkeys(aliases))
        for start in range(0, len(unique), MAX_ALIASES_PER_REQUEST):
            chunk = unique[start : start + MAX_ALIASES_PER_REQUEST]
            self._http.post(f"{self._base}/users/alias/new", json={"user_aliases": [a.as_json() for a in chunk]})

    def trigger_campaign(
        self,
        campaign_id: str,
        recipients: Sequence[Recipient],
        *,
        trigger_properties: Mapping[str, Any] | None = None,
    ) -> SendResult:
        """``POST /campaigns/trigger/send`` to at most 50 recipients; returns Braze's ``dispatch_id`` and its
        non-fatal ``errors`` (a 2xx: the recipients they do not concern were delivered).

        The caller batches: one call is one Braze request, so a failure maps to exactly these recipients.
        """
        if not campaign_id:
            raise ValueError("campaign_id is required")
        if not 1 <= len(recipients) <= MAX_RECIPIENTS_PER_REQUEST:
            raise ValueError(f"1 to {MAX_RECIPIENTS_PER_REQUEST} recipients per request, got {len(recipients)}")
        body: dict[str, Any] = {
            "campaign_id": campaign_id,
            "broadcast": False,
            "recipients": [r.as_json() for r in recipients],
        }
        if trigger_properties:
            body["trigger_properties"] = dict(trigger_properties)
        url = f"{self._base}/campaigns/trigger/send"
        if self._pacer is not None:
            self._pacer.wait_turn()
        # Not idempotent: Braze delivers every accepted trigger, so an unanswered send is not retried.
        try:
            reply = self._http.post(url, json=body, idempotent=False)
        except MalformedResponseError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise
            reply = None  # a 2xx whose body is not JSON: accepted all the same
        return _accepted(reply if isinstance(reply, dict) else {})


def _accepted(reply: Mapping[str, Any]) -> SendResult:
    """Any 2xx means Braze accepted the send: an odd body must never make the caller send it again."""
    raw_errors = reply.get("errors")
    errors = tuple(raw_errors) if isinstance(raw_errors, list) else ((raw_errors,) if raw_errors else ())
    dispatch_id = reply.get("dispatch_id")
    if isinstance(dispatch_id, str) and dispatch_id:
        return SendResult(dispatch_id, errors)
    if reply.get("message") == "queued":  # maintenance: accepted, sent later
        return SendResult("queued", errors)
    logger.warning("Braze accepted the trigger without a dispatch_id")
    return SendResult("accepted-without-dispatch-id", errors)


BRAZE_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def braze_datetime(value: datetime) -> str:
    """A datetime as the campaigns' trigger properties carry it (``%Y-%m-%dT%H:%M:%SZ``, UTC; contract 5)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"value must be timezone-aware, got {value!r}")
    return value.astimezone(UTC).strftime(BRAZE_DATETIME_FORMAT)
