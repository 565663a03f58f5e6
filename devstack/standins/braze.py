"""Braze REST API stand-in: ``/users/alias/new``, ``/campaigns/trigger/send`` and ``/campaigns/details``
(contract section 4).

It validates like Braze (and, where the contract is silent, more strictly, so client bugs surface), keeps
the accepted sends in ``outbox`` and puts ``X-RateLimit-*`` headers on every reply (but on the bare 429s
of ``rate_limit_without_reset_next``, a proxy's answer rather than Braze's).

Fault controls beyond the base class's: ``rate_limit_next`` / ``rate_limit_without_reset_next`` (429 with
and without the reset headers), ``queue_next`` (202 maintenance replies), ``reject`` / ``minor_error`` (a
recipient refused, or accepted with a non-fatal error), ``accept_then_stall_next`` (accepted, answered
later than the client waits) and ``on_accepted`` (a hook run after a trigger is accepted, before its reply).
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.dataset import iso_z

from .base import JSON_CONTENT_TYPE, Reply, Request, StandIn, route

ALIAS_PATH = "/users/alias/new"
DETAILS_PATH = "/campaigns/details"
TRIGGER_PATH = "/campaigns/trigger/send"
MAX_ALIASES = 50
MAX_RECIPIENTS = 50

# contract section 4: send endpoints share 250,000/hour; /users/alias/new 20,000/minute.
# contract silent: windows are fixed and aligned on the epoch; a 429 body is {"message": "Rate limit exceeded"}.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, int]] = {TRIGGER_PATH: (250_000, 3600), ALIAS_PATH: (20_000, 60)}
_FALLBACK_LIMIT = (250_000, 3600)

# contract silent on unknown keys: Braze may ignore them, but a misspelt key is a client bug, so reject.
TRIGGER_KEYS = {"campaign_id", "send_id", "trigger_properties", "broadcast", "recipients"}
RECIPIENT_KEYS = {"external_user_id", "user_alias", "trigger_properties", "attributes", "send_to_existing_only"}
ALIAS_KEYS = {"alias_name", "alias_label", "external_id"}

AcceptedHook = Callable[[Request, dict[str, Any], float | None], None]


class _BareReply(Reply):
    """A reply ``decorate`` leaves alone (no ``X-RateLimit-*`` headers added)."""


@dataclass
class _Window:
    limit: int
    seconds: int
    started: float = 0.0
    used: int = 0

    def used_at(self, now: float) -> int:
        """Requests counted in the fixed window (aligned on the epoch) that holds ``now``."""
        return self.used if now - (now % self.seconds) == self.started else 0

    def count(self, now: float) -> None:
        self.used, self.started = self.used_at(now) + 1, now - (now % self.seconds)


def _text(value: Any) -> bool:
    """A non-empty string."""
    return isinstance(value, str) and value.strip() != ""


class BrazeStandIn(StandIn):
    """Braze's REST host for one workspace.

    Args:
        api_key: the only REST API key accepted (``Authorization: Bearer <api_key>``).
        known_campaigns: when given, ``campaign_id`` must be one of them (else 400 "Invalid campaign_id"), and
            ``GET /campaigns/details`` knows them.
        rate_limits: path -> (requests, window seconds); enforced (429) and reported in the headers.
    """

    name = "Braze stand-in"

    def __init__(
        self,
        api_key: str,
        *,
        known_campaigns: Iterable[str] | None = None,
        rate_limits: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        self.api_key = api_key
        self.known_campaigns = set(known_campaigns) if known_campaigns is not None else None
        self.aliases: set[tuple[str, str]] = set()  # (alias_label, alias_name)
        self.outbox: list[dict[str, Any]] = []
        self._state_lock = threading.Lock()
        self._windows = {path: _Window(*limit) for path, limit in (rate_limits or DEFAULT_RATE_LIMITS).items()}
        self._queue_next = 0
        # identifier (alias_name or external_user_id) -> reason, per endpoint; see reject() / minor_error()
        self.rejected: dict[str, dict[str, str]] = {ALIAS_PATH: {}, TRIGGER_PATH: {}}
        self.minor_errors: dict[str, str] = {}
        self._stalls: list[tuple[float, str | None]] = []  # accept_then_stall_next: (seconds, label) per trigger
        self._accepted_hooks: list[AcceptedHook] = []
        self.campaigns: dict[str, dict[str, Any]] = {}  # what GET /campaigns/details answers
        for campaign_id in self.known_campaigns or ():
            self.set_campaign(campaign_id)
        self.details_denied = False
        super().__init__()

    def routes(self) -> list[Any]:
        return [
            route("POST", ALIAS_PATH, self.new_aliases),
            route("POST", TRIGGER_PATH, self.trigger_send),
            route("GET", DETAILS_PATH, self.campaign_details),
        ]

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    # ------------------------------------------------------------------------------------- fault controls
    def rate_limit_next(
        self, path_prefix: str, reset_in_seconds: float, times: int = 1, *, label: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests 429 with ``X-RateLimit-Remaining: 0`` and
        ``X-RateLimit-Reset`` = ceil(now + reset_in_seconds) (UTC epoch seconds), computed when answering."""

        def respond(request: Request) -> Reply:
            headers = {
                "X-RateLimit-Limit": str(self._window(request.path).limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in_seconds)),
            }
            return Reply(429, {"message": "Rate limit exceeded"}, headers)

        self.respond_next(path_prefix, respond, times=times, label=label)

    def rate_limit_without_reset_next(
        self, path_prefix: str, times: int = 1, *, retry_after: float | None = None, label: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests 429 with no ``X-RateLimit-*`` header at all (and a
        ``Retry-After`` only when ``retry_after`` is given), as a proxy or CDN in front of Braze could: the
        client has no reset time to wait for and must back off on its own. contract: Braze's own 429s always
        carry the headers (``rate_limit_next``); this is the harsher case."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        body = {"message": "Rate limit exceeded"}
        self.respond_next(path_prefix, lambda _: _BareReply(429, body, dict(headers)), times=times, label=label)

    def accept_then_stall_next(self, seconds: float, times: int = 1, *, label: str | None = None) -> None:
        """The next ``times`` triggers that Braze accepts are kept in the outbox (Braze will deliver them) but
        answered only after ``seconds``: set it above the client's read timeout to make a send whose outcome
        the client cannot know (a read timeout after acceptance). Refused triggers are not delayed."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._state_lock:
            self._stalls.extend([(seconds, label)] * times)

    def on_accepted(self, hook: AcceptedHook) -> None:
        """Call ``hook(request, outbox_entry, stall_seconds)`` after every accepted trigger is in the outbox and
        before the reply is written, so what it does (e.g. kill the caller) happens while the client still
        waits; ``stall_seconds`` is the ``accept_then_stall_next`` delay this reply is about to get, or None."""
        with self._state_lock:
            self._accepted_hooks.append(hook)

    def clear_faults(self) -> None:
        """The base class's injected replies and the pending stalls (``reject`` / ``minor_error`` stay)."""
        super().clear_faults()
        with self._state_lock:
            self._stalls.clear()

    @property
    def pending_faults(self) -> int:
        with self._state_lock:
            stalls = len(self._stalls)
        return super().pending_faults + stalls

    def queue_next(self, times: int = 1) -> None:
        """Braze maintenance mode: the next ``times`` valid triggers are accepted (outbox) but answered
        202 ``{"message": "queued"}`` without a dispatch_id (contract section 4)."""
        with self._state_lock:
            self._queue_next += times

    def set_campaign(self, campaign_id: str, **state: Any) -> None:
        """What ``GET /campaigns/details`` answers for ``campaign_id`` (``name``, ``enabled``, ``draft``,
        ``archived``; defaults: enabled, not a draft, not archived)."""
        defaults = {"name": campaign_id, "enabled": True, "draft": False, "archived": False}
        with self._state_lock:
            self.campaigns[campaign_id] = {**defaults, **state}

    def deny_details(self) -> None:
        """The key lacks the ``campaigns.details`` permission: that endpoint answers 401 (contract section 4)."""
        self.details_denied = True

    def reject(self, identifier: str, reason: str = "invalid email address", *, alias: bool = False) -> None:
        """Answer 400 to every trigger (or, with ``alias``, every ``/users/alias/new``) that names
        ``identifier`` (an alias_name or external_user_id), as Braze refuses a request with one bad recipient.

        contract silent on the body of such a 400: ``{"message": "<where>: <reason> (<identifier>)"}`` here,
        echoing the identifier (an email, for learners) the way error bodies can."""
        with self._state_lock:
            self.rejected[ALIAS_PATH if alias else TRIGGER_PATH][identifier] = reason

    def minor_error(self, identifier: str, reason: str = "user is unsubscribed") -> None:
        """Accept triggers naming ``identifier`` but add a non-fatal ``errors`` entry about it (Braze's
        ``{"message": "success", "errors": [<minor error message>]}``). contract silent on the entry's text:
        ``"recipients[<index>] (<identifier>): <reason>"`` here."""
        with self._state_lock:
            self.minor_errors[identifier] = reason

    # --------------------------------------------------------------------------------------- validation
    def authenticate(self, request: Request) -> None:
        """``Authorization: Bearer <key>``, ``Content-Type: application/json``, a JSON object body (POSTs)."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), self.api_key):
            raise self.error(401, f"Invalid API key: {key.strip() or '(none)'}")
        if request.method == "GET":
            return
        if request.mimetype != JSON_CONTENT_TYPE:
            raise self.error(400, "Content-Type must be application/json")
        if not isinstance(request.json_or_none(), dict):
            raise self.error(400, "Request body must be a JSON object")

    def decorate(self, request: Request, reply: Reply) -> None:
        """``X-RateLimit-Limit/Remaining/Reset`` on every reply (contract section 4)."""
        if isinstance(reply, _BareReply):
            return
        window = self._window(request.path)
        with self._state_lock:
            window.count(time.time())
            remaining, reset = max(0, window.limit - window.used), int(window.started + window.seconds)
        for name, value in (("Limit", window.limit), ("Remaining", remaining), ("Reset", reset)):
            reply.headers.setdefault(f"X-RateLimit-{name}", str(value))

    def _window(self, path: str) -> _Window:
        with self._state_lock:
            return self._windows.setdefault(path.rstrip("/"), _Window(*_FALLBACK_LIMIT))

    def _enforce_rate_limit(self, request: Request) -> None:
        window = self._window(request.path)
        with self._state_lock:
            if window.used_at(time.time()) >= window.limit:
                raise self.error(429, "Rate limit exceeded", {"X-RateLimit-Remaining": "0"})

    def _refused(self, path: str, names: list[str], where: str) -> None:
        """400 when a name is one ``reject()`` refuses at ``path``."""
        with self._state_lock:
            rejected = dict(self.rejected[path])
        for index, name in enumerate(names):
            if name in rejected:
                raise self.error(400, f"{where}[{index}]: {rejected[name]} ({name})")

    # ------------------------------------------------------------------------------------------ handlers
    def new_aliases(self, request: Request) -> Reply:
        """Contract section 4: ``POST /users/alias/new`` with 1..50 aliases; idempotent."""
        self._enforce_rate_limit(request)
        aliases = request.json_or_none().get("user_aliases")
        if not isinstance(aliases, list) or not 1 <= len(aliases) <= MAX_ALIASES:
            raise self.error(400, f"user_aliases must be an array of 1 to {MAX_ALIASES} aliases")
        for index, alias in enumerate(aliases):
            if not isinstance(alias, dict) or set(alias) - ALIAS_KEYS:
                raise self.error(400, f"user_aliases[{index}] must be an object with alias_name, alias_label")
            if not (
                _text(alias.get("alias_name"))
                and _text(alias.get("alias_label"))
                and _text(alias.get("external_id", "-"))
            ):
                raise self.error(400, f"user_aliases[{index}] needs non-empty alias_name, alias_label (, external_id)")
        self._refused(ALIAS_PATH, [alias["alias_name"] for alias in aliases], "user_aliases")
        with self._state_lock:
            self.aliases.update((alias["alias_label"], alias["alias_name"]) for alias in aliases)
        return Reply(201, {"aliases_processed": len(aliases), "message": "success"})

    def trigger_send(self, request: Request) -> Reply:
        """Contract section 4: ``POST /campaigns/trigger/send``; every rule checked before anything is kept."""
        self._enforce_rate_limit(request)
        body = request.json_or_none()
        problem = next(self._trigger_problems(body), None)
        if problem is not None:
            raise self.error(400, problem)
        identifiers = [r.get("external_user_id") or r["user_alias"]["alias_name"] for r in body["recipients"]]
        self._refused(TRIGGER_PATH, identifiers, "recipients")
        with self._state_lock:
            minor = dict(self.minor_errors)
            queued, self._queue_next = self._queue_next > 0, max(0, self._queue_next - 1)
        entry = {
            "dispatch_id": None if queued else secrets.token_hex(16),
            "campaign_id": body["campaign_id"],
            "trigger_properties": body.get("trigger_properties") or {},
            "recipients": body["recipients"],
            "received_at": iso_z(datetime.now(UTC)),
        }
        self._accept(request, entry)
        if queued:
            return Reply(202, {"message": "queued"})
        errors = [f"recipients[{i}] ({name}): {minor[name]}" for i, name in enumerate(identifiers) if name in minor]
        return Reply(
            201, {"dispatch_id": entry["dispatch_id"], "message": "success", **({"errors": errors} if errors else {})}
        )

    def _accept(self, request: Request, entry: dict[str, Any]) -> None:
        """Keep the send in the outbox, run the ``on_accepted`` hooks, then any ``accept_then_stall_next``."""
        with self._state_lock:
            self.outbox.append(entry)
            hooks = list(self._accepted_hooks)
            seconds, label = self._stalls.pop(0) if self._stalls else (None, None)
        for hook in hooks:
            try:
                hook(request, entry, seconds)
            except Exception as exc:  # a bug in the hook: keep it for the tests, still answer
                self.record_error(exc)
        if seconds is not None:
            self.count_fired(label)
            self._stopping.wait(seconds)

    def _trigger_problems(self, body: dict[str, Any]) -> Iterator[str]:
        """What is wrong with a trigger body, first problem first (lazily: later checks rely on earlier ones)."""
        if unknown := set(body) - TRIGGER_KEYS:
            yield f"Unknown field(s): {', '.join(sorted(unknown))}"
        if not _text(body.get("campaign_id")):
            yield "campaign_id is required and must be a string"
        if self.known_campaigns is not None and body["campaign_id"] not in self.known_campaigns:
            yield "Invalid campaign_id"
        if not isinstance(body.get("send_id", ""), str):
            yield "send_id must be a string"
        if not isinstance(body.get("trigger_properties", {}), dict):
            yield "trigger_properties must be an object"
        if not isinstance(body.get("broadcast", False), bool):
            yield "broadcast must be a boolean"
        if "recipients" not in body:  # contract silent: a broadcast would mail a whole segment; never wanted here
            yield "recipients is required (the stand-in does not accept broadcast sends)"
        if body.get("broadcast"):
            yield "broadcast must be false when recipients are given"
        recipients = body["recipients"]
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            yield f"recipients must be an array of 1 to {MAX_RECIPIENTS} entries"
        for index, recipient in enumerate(recipients):
            yield from (f"recipients[{index}]{problem}" for problem in _recipient_problems(recipient))

    def campaign_details(self, request: Request) -> Reply:
        """Contract section 4: ``GET /campaigns/details?campaign_id=``. contract silent on an unknown id: a 400
        ``{"message": "Invalid campaign_id"}`` here, as for triggers; a key without the permission: 401."""
        if self.details_denied:
            raise self.error(401, "Invalid API key: the key lacks campaigns.details")
        with self._state_lock:
            campaign = self.campaigns.get(request.param("campaign_id") or "")
        if campaign is None:
            raise self.error(400, "Invalid campaign_id")
        return Reply(200, {"message": "success", "channels": ["email"], **campaign})

    # ------------------------------------------------------------------------------------------- helpers
    def sent_to(self, campaign_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(external_user_id or alias_name, top-level trigger_properties overridden by the recipient's) for
        every accepted recipient, in arrival order."""
        with self._state_lock:
            entries = [e for e in self.outbox if campaign_id is None or e["campaign_id"] == campaign_id]
        return [
            (
                r.get("external_user_id") or r["user_alias"]["alias_name"],
                {**e["trigger_properties"], **r.get("trigger_properties", {})},
            )
            for e in entries
            for r in e["recipients"]
        ]

    def save_outbox(self, path: str | Path) -> Path:
        """Write the outbox as JSON (the demo report points to it). Returns the path."""
        target = Path(path)
        with self._state_lock:
            data = list(self.outbox)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return target


def _recipient_problems(recipient: Any) -> Iterator[str]:
    """What is wrong with one trigger recipient (each problem follows ``recipients[<index>]``)."""
    if not isinstance(recipient, dict):
        yield " must be an object"
    if unknown := set(recipient) - RECIPIENT_KEYS:
        yield f": unknown field(s) {', '.join(sorted(unknown))}"
    if ("external_user_id" in recipient) == ("user_alias" in recipient):
        yield " needs exactly one of external_user_id or user_alias"
    # contract silent on the type: Braze external ids are strings, so an LMS user id sent as a JSON number is
    # refused (the client must send str(user.id)).
    if not _text(recipient.get("external_user_id", "-")):
        yield ".external_user_id must be a non-empty string"
    alias = recipient.get("user_alias", {"alias_name": "-", "alias_label": "-"})
    if (
        not isinstance(alias, dict)
        or set(alias) != {"alias_name", "alias_label"}
        or not all(map(_text, alias.values()))
    ):
        yield ".user_alias must be {alias_name, alias_label} (non-empty strings)"
    send_to_existing_only = recipient.get("send_to_existing_only", True)
    if not isinstance(send_to_existing_only, bool):
        yield ".send_to_existing_only must be a boolean"
    if "user_alias" in recipient and send_to_existing_only:
        yield ": send_to_existing_only must be false for user_alias recipients"
    if not isinstance(recipient.get("attributes", {}), dict) or not isinstance(
        recipient.get("trigger_properties", {}), dict
    ):
        yield ": attributes and trigger_properties must be objects"
    if not send_to_existing_only and "attributes" not in recipient:
        yield ": attributes are required when send_to_existing_only is false"
