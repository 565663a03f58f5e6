"""Braze REST API stand-in: ``/users/alias/new`` and ``/campaigns/trigger/send`` (contract section 4).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.dataset import iso_z

from .base import JSON_CONTENT_TYPE, HttpError, Reply, Request, Route, StandIn

ALIAS_PATH = "/users/alias/new"
DETAILS_PATH = "/campaigns/details"
TRIGGER_PATH = "/campaigns/trigger/send"
MAX_ALIASES = 50
MAX_RECIPIENTS = 50

# contract section 4: send endpoints share 250,000/hour; /users/alias/new 20,000/minute.
# contract silent: windows are fixed and aligned on the epoch; a 429 body is {"message": "Rate limit exceeded"}.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, int]] = {TRIGGER_PATH: (250_000, 3600), ALIAS_PATH: (20_000, 60)}
_FALLBACK_LIMIT = (250_000, 3600)


class _BareReply(Reply):
    """A reply ``decorate`` leaves alone (no ``X-RateLimit-*`` headers added)."""


# contract silent on unknown keys: Braze may ignore them, but a misspelt key is a client bug, so reject.
TRIGGER_KEYS = {"campaign_id", "send_id", "trigger_properties", "broadcast", "recipients"}
RECIPIENT_KEYS = {"external_user_id", "user_alias", "trigger_properties", "attributes", "send_to_existing_only"}
ALIAS_KEYS = {"alias_name", "alias_label", "external_id"}


@dataclass
class _Window:
    limit: int
    seconds: int
    started: float = 0.0
    used: int = 0

    def count(self, now: float) -> None:
        start = now - (now % self.seconds)  # fixed windows aligned on the epoch
        if start != self.started:
            self.started, self.used = start, 0
        self.used += 1

    @property
    def reset(self) -> int:
        return int(self.started + self.seconds)


class BrazeStandIn(StandIn):
    """Braze's REST host for one workspace.

    Args:
        api_key: the only REST API key accepted (``Authorization: Bearer <api_key>``).
        known_campaigns: when given, ``campaign_id`` must be one of them (else 400 "Invalid campaign_id").
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
        self.alias_external_ids: dict[tuple[str, str], str] = {}
        self.outbox: list[dict[str, Any]] = []
        self._state_lock = threading.Lock()
        self._windows = {path: _Window(*limit) for path, limit in (rate_limits or DEFAULT_RATE_LIMITS).items()}
        self._queue_next = 0
        # identifier (alias_name or external_user_id) -> reason, per endpoint; see reject() / minor_error()
        self.rejected: dict[str, dict[str, str]] = {ALIAS_PATH: {}, TRIGGER_PATH: {}}
        self.minor_errors: dict[str, str] = {}
        self._stalls: list[tuple[float, str | None]] = []  # accept_then_stall_next: (seconds, label) per trigger
        self._accepted_hooks: list[Callable[[Request, dict[str, Any], float | None], None]] = []
        # GET /campaigns/details answers for these (set_campaign / known_campaigns); deny_details() refuses it
        self.campaigns: dict[str, dict[str, Any]] = {}
        for campaign_id in known_campaigns or ():
            self.set_campaign(campaign_id)
        self.details_denied = False
        super().__init__()

    def routes(self) -> list[Route]:
        return [
            Route("POST", ALIAS_PATH, self.new_aliases),
            Route("POST", TRIGGER_PATH, self.trigger_send),
            Route("GET", DETAILS_PATH, self.campaign_details),
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
            window = self._window(request.path)
            return Reply(
                429,
                {"message": "Rate limit exceeded"},
                {
                    "X-RateLimit-Limit": str(window.limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in_seconds)),
                },
            )

        self.respond_next(path_prefix, respond, times=times, label=label)

    def rate_limit_without_reset_next(
        self, path_prefix: str, times: int = 1, *, retry_after: float | None = None, label: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests 429 with no ``X-RateLimit-*`` header at all (and a
        ``Retry-After`` only when ``retry_after`` is given), as a proxy or CDN in front of Braze could: the
        client has no reset time to wait for and must back off on its own. contract: Braze's own 429s always
        carry the headers (``rate_limit_next``); this is the harsher case."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self.respond_next(
            path_prefix,
            lambda _: _BareReply(429, {"message": "Rate limit exceeded"}, dict(headers)),
            times=times,
            label=label,
        )

    def accept_then_stall_next(self, seconds: float, times: int = 1, *, label: str | None = None) -> None:
        """The next ``times`` triggers that Braze accepts are kept in the outbox (Braze will deliver them) but
        answered only after ``seconds``: set it above the client's read timeout to make a send whose outcome
        the client cannot know (a read timeout after acceptance). Refused triggers are not delayed."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._state_lock:
            self._stalls.extend([(seconds, label)] * times)

    def on_accepted(self, hook: Callable[[Request, dict[str, Any], float | None], None]) -> None:
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
        ``archived``; defaults: enabled, not a draft, not archived). Only campaigns set here (or in
        ``known_campaigns``) exist for that endpoint."""
        with self._state_lock:
            self.campaigns[campaign_id] = {
                "name": campaign_id,
                "enabled": True,
                "draft": False,
                "archived": False,
                **state,
            }

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
            shown = key.strip() or "(none)"
            raise self.error(401, f"Invalid API key: {shown}")
        if request.method == "GET":
            return
        if request.content_type != JSON_CONTENT_TYPE:
            raise self.error(400, "Content-Type must be application/json")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise self.error(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")

    def decorate(self, request: Request, reply: Reply) -> None:
        """``X-RateLimit-Limit/Remaining/Reset`` on every reply (contract section 4)."""
        if isinstance(reply, _BareReply):
            return
        window = self._window(request.path)
        with self._state_lock:
            window.count(time.time())
            remaining = max(0, window.limit - window.used)
            reset = window.reset
        reply.headers.setdefault("X-RateLimit-Limit", str(window.limit))
        reply.headers.setdefault("X-RateLimit-Remaining", str(remaining))
        reply.headers.setdefault("X-RateLimit-Reset", str(reset))

    def _window(self, path: str) -> _Window:
        normalised = path.rstrip("/")
        window = self._windows.get(normalised)
        if window is None:
            window = self._windows.setdefault(normalised, _Window(*_FALLBACK_LIMIT))
        return window

    def _enforce_rate_limit(self, request: Request) -> None:
        window = self._window(request.path)
        with self._state_lock:
            now = time.time()
            start = now - (now % window.seconds)
            used = window.used if start == window.started else 0
            if used >= window.limit:
                raise self.error(429, "Rate limit exceeded", {"X-RateLimit-Remaining": "0"})

    def _bad(self, message: str) -> HttpError:
        return self.error(400, message)

    @staticmethod
    def _non_empty_str(value: Any) -> bool:
        return isinstance(value, str) and value.strip() != ""

    # ------------------------------------------------------------------------------------------ handlers
    def new_aliases(self, request: Request) -> Reply:
        """Contract section 4: ``POST /users/alias/new`` with 1..50 aliases; idempotent."""
        self._enforce_rate_limit(request)
        body = json.loads(request.body)
        aliases = body.get("user_aliases")
        if not isinstance(aliases, list) or not aliases:
            raise self._bad("user_aliases must be a non-empty array")
        if len(aliases) > MAX_ALIASES:
            raise self._bad(f"user_aliases may hold at most {MAX_ALIASES} aliases")
        parsed = []
        for index, alias in enumerate(aliases):
            if not isinstance(alias, dict) or set(alias) - ALIAS_KEYS:
                raise self._bad(f"user_aliases[{index}] must be an object with alias_name, alias_label")
            if not self._non_empty_str(alias.get("alias_name")) or not self._non_empty_str(alias.get("alias_label")):
                raise self._bad(f"user_aliases[{index}] needs a non-empty alias_name and alias_label")
            if "external_id" in alias and not self._non_empty_str(alias["external_id"]):
                raise self._bad(f"user_aliases[{index}].external_id must be a non-empty string")
            parsed.append(alias)
        with self._state_lock:
            rejected = dict(self.rejected[ALIAS_PATH])
        for index, alias in enumerate(parsed):
            if alias["alias_name"] in rejected:
                raise self._bad(f"user_aliases[{index}]: {rejected[alias['alias_name']]} ({alias['alias_name']})")
        with self._state_lock:
            for alias in parsed:
                key = (alias["alias_label"], alias["alias_name"])
                self.aliases.add(key)
                if "external_id" in alias:
                    self.alias_external_ids[key] = alias["external_id"]
        return Reply(201, {"aliases_processed": len(parsed), "message": "success"})

    def trigger_send(self, request: Request) -> Reply:
        """Contract section 4: ``POST /campaigns/trigger/send``; every rule checked before anything is kept."""
        self._enforce_rate_limit(request)
        body = json.loads(request.body)
        unknown = set(body) - TRIGGER_KEYS
        if unknown:
            raise self._bad(f"Unknown field(s): {', '.join(sorted(unknown))}")
        campaign_id = body.get("campaign_id")
        if not self._non_empty_str(campaign_id):
            raise self._bad("campaign_id is required and must be a string")
        if self.known_campaigns is not None and campaign_id not in self.known_campaigns:
            raise self._bad("Invalid campaign_id")
        if "send_id" in body and not isinstance(body["send_id"], str):
            raise self._bad("send_id must be a string")
        top_properties = self._properties(body, "trigger_properties", "trigger_properties")
        broadcast = body.get("broadcast", False)
        if not isinstance(broadcast, bool):
            raise self._bad("broadcast must be a boolean")
        if "recipients" not in body:
            # contract silent: a broadcast (no recipients) would mail a whole segment; never wanted here.
            raise self._bad("recipients is required (the stand-in does not accept broadcast sends)")
        if broadcast:
            raise self._bad("broadcast must be false when recipients are given")
        recipients = body["recipients"]
        if not isinstance(recipients, list) or not recipients:
            raise self._bad("recipients must be a non-empty array")
        if len(recipients) > MAX_RECIPIENTS:
            raise self._bad(f"recipients may hold at most {MAX_RECIPIENTS} entries")
        for index, recipient in enumerate(recipients):
            self._check_recipient(index, recipient)
        with self._state_lock:
            rejected, minor = dict(self.rejected[TRIGGER_PATH]), dict(self.minor_errors)
        identifiers = [_identifier(recipient) for recipient in recipients]
        for index, identifier in enumerate(identifiers):
            if identifier in rejected:
                raise self._bad(f"recipients[{index}]: {rejected[identifier]} ({identifier})")
        errors = [f"recipients[{i}] ({ident}): {minor[ident]}" for i, ident in enumerate(identifiers) if ident in minor]
        with self._state_lock:
            queued = self._queue_next > 0
            if queued:
                self._queue_next -= 1
        dispatch_id = None if queued else secrets.token_hex(16)
        entry = {
            "dispatch_id": dispatch_id,
            "campaign_id": campaign_id,
            "trigger_properties": top_properties or {},
            "recipients": recipients,
            "received_at": iso_z(datetime.now(UTC)),
        }
        with self._state_lock:
            self.outbox.append(entry)
            hooks = list(self._accepted_hooks)
            stall = self._stalls.pop(0) if self._stalls else None
        for hook in hooks:
            try:
                hook(request, entry, stall[0] if stall is not None else None)
            except Exception as exc:  # a bug in the hook: keep it for the tests, still answer
                with self._lock:
                    self._errors.append(exc)
        if stall is not None:
            seconds, label = stall
            self.count_fired(label)
            self._stopping.wait(seconds)
        if queued:
            return Reply(202, {"message": "queued"})
        reply: dict[str, Any] = {"dispatch_id": dispatch_id, "message": "success"}
        if errors:
            reply["errors"] = errors
        return Reply(201, reply)

    def campaign_details(self, request: Request) -> Reply:
        """Contract section 4: ``GET /campaigns/details?campaign_id=``. contract silent on an unknown id: a 400
        ``{"message": "Invalid campaign_id"}`` here, as for triggers; a key without the permission: 401."""
        if self.details_denied:
            raise self.error(401, "Invalid API key: the key lacks campaigns.details")
        campaign_id = request.param("campaign_id")
        with self._state_lock:
            campaign = self.campaigns.get(campaign_id or "")
        if campaign is None:
            raise self._bad("Invalid campaign_id")
        return Reply(200, {"message": "success", "channels": ["email"], **campaign})

    def _properties(self, container: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
        """Optional object of JSON values (parsed JSON is always serialisable; only the type is checked)."""
        if key not in container:
            return None
        value = container[key]
        if not isinstance(value, dict):
            raise self._bad(f"{where} must be an object")
        return value

    def _check_recipient(self, index: int, recipient: Any) -> None:
        where = f"recipients[{index}]"
        if not isinstance(recipient, dict):
            raise self._bad(f"{where} must be an object")
        unknown = set(recipient) - RECIPIENT_KEYS
        if unknown:
            raise self._bad(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        has_external = "external_user_id" in recipient
        has_alias = "user_alias" in recipient
        if has_external == has_alias:
            raise self._bad(f"{where} needs exactly one of external_user_id or user_alias")
        # contract silent on the type: Braze external ids are strings, so an LMS user id sent as a JSON
        # number is refused (the client must send str(user.id)).
        if has_external and not self._non_empty_str(recipient["external_user_id"]):
            raise self._bad(f"{where}.external_user_id must be a non-empty string")
        if has_alias:
            alias = recipient["user_alias"]
            if (
                not isinstance(alias, dict)
                or set(alias) != {"alias_name", "alias_label"}
                or not self._non_empty_str(alias.get("alias_name"))
                or not self._non_empty_str(alias.get("alias_label"))
            ):
                raise self._bad(f"{where}.user_alias must be {{alias_name, alias_label}} (non-empty strings)")
        send_to_existing_only = recipient.get("send_to_existing_only", True)
        if not isinstance(send_to_existing_only, bool):
            raise self._bad(f"{where}.send_to_existing_only must be a boolean")
        if has_alias and send_to_existing_only:
            raise self._bad(f"{where}: send_to_existing_only must be false for user_alias recipients")
        attributes = self._properties(recipient, "attributes", f"{where}.attributes")
        if not send_to_existing_only and attributes is None:
            raise self._bad(f"{where}: attributes are required when send_to_existing_only is false")
        self._properties(recipient, "trigger_properties", f"{where}.trigger_properties")

    # ------------------------------------------------------------------------------------------- helpers
    def sent_to(self, campaign_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(external_user_id or alias_name, top-level trigger_properties overridden by the recipient's) for
        every accepted recipient, in arrival order."""
        with self._state_lock:
            entries = list(self.outbox)
        sent = []
        for entry in entries:
            if campaign_id is not None and entry["campaign_id"] != campaign_id:
                continue
            for recipient in entry["recipients"]:
                identifier = _identifier(recipient)
                merged = {**entry["trigger_properties"], **recipient.get("trigger_properties", {})}
                sent.append((identifier, merged))
        return sent

    def save_outbox(self, path: str | Path) -> Path:
        """Write the outbox as JSON (the demo report points to it). Returns the path."""
        target = Path(path)
        with self._state_lock:
            data = list(self.outbox)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return target


def _identifier(recipient: dict[str, Any]) -> str:
    """A validated recipient's external_user_id or alias_name."""
    return recipient.get("external_user_id") or recipient["user_alias"]["alias_name"]
