"""The ledger: one DynamoDB table recording what was sent, so nothing is ever sent twice.

Protocol, for every notification key (e.g. ``expiration_reminder#<license uuid>``):

1. ``claim``: a conditional write that succeeds only if nobody holds the key: no record, or a claim whose
   lease ran out (a crashed worker), or, for recurring notifications, a ``sent`` record older than the
   caller's ``resend_if_sent_before``. Exactly one of several racing workers wins a key.
2. send through Braze;
3. ``mark_sent`` (only after Braze accepted the batch: sent time = the run's ``as_of``, wall-clock
   ``recorded_at``, run id, Braze ``dispatch_id``), or ``release`` when the send failed, so a later run
   retries it, or ``hold`` when Braze refused the recipient: the key stays taken (state ``rejected``) until
   the hold runs out, then any run may claim it again.

The cutover (``import_sent_many``, for ``license-notifications import-sent``) writes the sends license-manager
made before this service as ``sent`` records, each with a conditional put that never touches an existing key.

Leases use the wall clock, not ``as_of``: they measure how long a real worker may hold a key, which a
preview or backfill clock must not stretch. ``CLAIM_LEASE_SECONDS`` (default 1200) exceeds the worker's (900 s)
timeout, so a live worker never loses its claim mid-send. Records carry a TTL (``expires_at``).

Cost (issue 8). A batch of up to 50 keys is written with one ``TransactWriteItems`` of per-key conditional
writes (the same conditions as single writes), through one low-level botocore client per ledger (no pynamodb,
no thread pool):

- steady state, per 50 reminders: the claim transaction, the record transaction, and ``sent()``, which reads
  100 keys per BatchGetItem (0.5 a batch when the job reads a page of 500); the utilization job adds the
  strongly consistent ``states()`` read of its 75 % / 100 % check;
- a transaction is all or nothing, so one key held elsewhere cancels it. Then a strongly consistent
  BatchGetItem of the batch shows where each key stands (not the cancellation reasons: moto does not keep
  their order), the keys whose write still applies are written in one more transaction, and if that is
  cancelled too (a racing writer), key by key. Every write keeps its own condition, so the read-back only
  chooses which writes to try: a stale read costs requests, never a duplicate. A write an earlier attempt of
  ours already made counts as made (botocore sends a transaction again when its reply is lost: DynamoDB
  answers the repeat like the first, by its client request token; moto cancels it). The same for records
  (conditioned on the claim token), releases (a first-time claim is deleted, a recurring one gets its
  previous send back) and holds;
- a failed claim batch gives back every claim it may have taken (by token, so keys it did not get are
  untouched), also when DynamoDB committed a transaction whose reply was lost.

Measured with ``python -m perf.ledger_cost --reminders 1000 5000 --baseline ef6ad8e`` (moto in another
process, this project's 2-core machine, one run): the previous ledger (pynamodb, one conditional UpdateItem
per key to claim and another to record, a new 8-thread pool per batch call) made 100.5 requests per 50
reminders and spent 4.4-4.7 ms of client CPU per reminder; this one makes 2.5 (4.5 with a tenth of each
batch held elsewhere) and spends 0.24-0.26 ms (0.37 ms contended), about 18x less. Batching does most of it:
the same two transactions built with pynamodb's ``TransactWrite`` spent 0.36 ms per reminder for claim +
record (a throwaway script, not kept), against about 0.22 ms here.

Alternatives weighed: a lease per (run, enterprise, job) plus unconditional ``BatchWriteItem`` records would
be as cheap in requests, but a racing run would skip or wait for a whole enterprise instead of only the keys
it loses, a crashed worker would block the whole enterprise until its lease ran out, recurring keys would need
a read before an unconditional write (safe only under that lease), and it needs ``dynamodb:BatchWriteItem``.
PartiQL ``BatchExecuteStatement`` decides each statement on its own but takes 25 statements a request (4.5
requests per 50) and other IAM actions. Transactions need only ``UpdateItem`` / ``DeleteItem`` permissions.
Their price: DynamoDB bills a transactional write two write units per item instead of one, so the ledger's
write units per reminder double (4 instead of 2) while its requests fall 40-fold.

Stored attributes and formats are pynamodb's (records written by the previous ledger read the same, and the
indexes on ``enterprise_customer_uuid`` + ``sent_at`` and ``run_id`` see the same values): ``sent_at`` and
``recorded_at`` as ``2026-03-01T09:00:00.000000+0000``, ``lease_until`` and ``expires_at`` as epoch seconds.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

logger = logging.getLogger(__name__)

CLAIMED = "claimed"
SENT = "sent"
REJECTED = "rejected"
# Recording a send Braze accepted is worth retrying on top of botocore's own retries, within a time budget:
# MARK_WORST_CASE_SECONDS is what the worker keeps free before its timeout for the last batch's record. No
# request of a record starts once the budget is spent, so the worst case is the budget plus one request.
MARK_ATTEMPTS = 6
MARK_BUDGET_SECONDS = 20
DYNAMODB_CONNECT_TIMEOUT_SECONDS = 2
DYNAMODB_READ_TIMEOUT_SECONDS = 5
DYNAMODB_MAX_RETRY_ATTEMPTS = 2  # botocore's retries of one request (after the first try)
MARK_WORST_CASE_SECONDS = MARK_BUDGET_SECONDS + (DYNAMODB_MAX_RETRY_ATTEMPTS + 1) * (
    DYNAMODB_CONNECT_TIMEOUT_SECONDS + DYNAMODB_READ_TIMEOUT_SECONDS
)
TRANSACTION_MAX_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
BATCH_GET_MAX_KEYS = 100  # DynamoDB's limit per BatchGetItem
BATCH_GET_ATTEMPTS = 8  # requests for one chunk while DynamoDB returns UnprocessedKeys
CONFLICT_ATTEMPTS = 3  # a single write meeting another writer's transaction in flight

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"  # pynamodb's UTCDateTimeAttribute
_monotonic = time.monotonic  # the record budget's clock
_NOT_RETRIED = {"ValidationException", "ResourceNotFoundException", "AccessDeniedException"}


class LedgerBudgetExceededError(TimeoutError):
    """Recording a batch ran out of ``MARK_BUDGET_SECONDS`` before every record was written."""


# -- attribute formats (pynamodb's, so records written before and after read alike) --------------------------


def format_datetime(value: datetime) -> str:
    """pynamodb's UTCDateTimeAttribute: ``2026-03-01T09:00:00.000000+0000`` (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_DATETIME_FORMAT).zfill(31)


def parse_datetime(text: str) -> datetime:
    """Reads :func:`format_datetime`'s strings (and pre-1000 years written unpadded by older pynamodb)."""
    text = text.zfill(31)
    if len(text) != 31 or text[10] != "T" or text[26:] != "+0000":
        raise ValueError(f"not a ledger datetime: {text!r}")
    return datetime.fromisoformat(text)


def format_epoch(value: datetime) -> str:
    """pynamodb's TTLAttribute: whole epoch seconds (the value must be timezone-aware)."""
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return str(calendar.timegm(value.utctimetuple()))


@dataclass(frozen=True)
class LedgerRecord:
    """One record as stored (what :meth:`Ledger.get` returns)."""

    pk: str
    kind: str | None = None
    state: str | None = None
    claim_token: str | None = None
    lease_until: float | None = None  # wall-clock epoch seconds
    claimed_by_run: str | None = None
    sent_at: datetime | None = None  # the run's as_of
    recorded_at: datetime | None = None  # wall clock of the write, for audit
    run_id: str | None = None
    dispatch_id: str | None = None
    enterprise_customer_uuid: str | None = None
    subject_uuid: str | None = None  # license uuid, plan uuid, ...
    note: str | None = None  # why a key is held (``rejected``)
    expires_at: datetime | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Mapping[str, str]]) -> LedgerRecord:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        def when(name: str) -> datetime | None:
            return parse_datetime(item[name]["S"]) if name in item else None

        return cls(
            pk=item["pk"]["S"],
            kind=text("kind"),
            state=text("state"),
            claim_token=text("claim_token"),
            lease_until=json.loads(item["lease_until"]["N"]) if "lease_until" in item else None,
            claimed_by_run=text("claimed_by_run"),
            sent_at=when("sent_at"),
            recorded_at=when("recorded_at"),
            run_id=text("run_id"),
            dispatch_id=text("dispatch_id"),
            enterprise_customer_uuid=text("enterprise_customer_uuid"),
            subject_uuid=text("subject_uuid"),
            note=text("note"),
            expires_at=datetime.fromtimestamp(json.loads(item["expires_at"]["N"]), UTC)
            if "expires_at" in item
            else None,
        )


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


# -- the writes -------------------------------------------------------------------------------------------------

Op = tuple[str, dict[str, Any]]  # ("Update" | "Delete" | "Put", the request's parameters)
Item = dict[str, dict[str, Any]]  # a record as DynamoDB returns it
DONE: Any = object()  # a re-plan's answer: the write is already in place (an earlier attempt of ours)


def _value(text: str) -> dict[str, str]:
    return {"S": text}


def _names(*names: str) -> dict[str, str]:
    return {f"#{name}": name for name in names}


@cache
def _claim_expressions(enterprise: bool, subject: bool, recurring: bool) -> tuple[str, str, dict[str, str]]:
    sets = ["#kind = :kind", "#state = :claimed", "#claim_token = :token", "#lease_until = :lease",
            "#claimed_by_run = :run", "#expires_at = :expires"]  # fmt: skip
    names = ["kind", "state", "claim_token", "lease_until", "claimed_by_run", "expires_at", "note", "pk"]
    if enterprise:
        sets.append("#enterprise_customer_uuid = :enterprise")
        names.append("enterprise_customer_uuid")
    if subject:
        sets.append("#subject_uuid = :subject")
        names.append("subject_uuid")
    condition = "attribute_not_exists(#pk) OR (#state IN (:claimed, :rejected) AND #lease_until < :now)"
    if recurring:
        condition += " OR (#state = :sent AND #sent_at < :resend)"
        names.append("sent_at")
    return f"SET {', '.join(sets)} REMOVE #note", condition, _names(*names)


_MARK_UPDATE = (
    "SET #state = :sent, #sent_at = :as_of, #recorded_at = :recorded, #run_id = :run, #dispatch_id = :dispatch"
    " REMOVE #claim_token, #lease_until, #claimed_by_run"
)
_MARK_NAMES = _names("state", "sent_at", "recorded_at", "run_id", "dispatch_id", "claim_token", "lease_until",
                     "claimed_by_run")  # fmt: skip
_RELEASE_DELETE_NAMES = _names("claim_token", "sent_at")
_RESTORE_UPDATE = "SET #state = :sent REMOVE #claim_token, #lease_until, #claimed_by_run"
_RESTORE_NAMES = _names("state", "claim_token", "lease_until", "claimed_by_run")
_HOLD_UPDATE = "SET #state = :rejected, #lease_until = :lease, #note = :note REMOVE #claim_token"
_HOLD_NAMES = _names("state", "lease_until", "note", "claim_token")


def _claimable(item: Item | None, now: float, resend_before: str | None) -> bool:
    """The claim condition, evaluated on a record read back (after a cancelled transaction)."""
    if item is None:
        return True
    state = item.get("state", {}).get("S")
    lease = item.get("lease_until", {}).get("N")
    if state in (CLAIMED, REJECTED) and lease is not None and float(lease) < now:
        return True
    sent_at = item.get("sent_at", {}).get("S")
    return resend_before is not None and state == SENT and sent_at is not None and sent_at < resend_before


def _token(item: Item | None) -> str | None:
    return item.get("claim_token", {}).get("S") if item else None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _transient(exc: BaseException) -> bool:
    """Worth another attempt at recording a send: DynamoDB or the network failed, not the request."""
    if isinstance(exc, ClientError):
        return _code(exc) not in _NOT_RETRIED
    return isinstance(exc, BotoCoreError)


_client_lock = threading.Lock()


@cache
def _botocore_session() -> Any:
    return botocore.session.get_session()


def dynamodb_client() -> Any:
    """A low-level DynamoDB client with bounded timeouts and retries (region and endpoint from the environment:
    ``AWS_REGION``, ``AWS_ENDPOINT_URL``). Thread-safe once created; creating one is not, hence the lock."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        connect_timeout=DYNAMODB_CONNECT_TIMEOUT_SECONDS,
        read_timeout=DYNAMODB_READ_TIMEOUT_SECONDS,
        retries={"total_max_attempts": 1 + DYNAMODB_MAX_RETRY_ATTEMPTS, "mode": "standard"},
        parameter_validation=False,  # the requests are built here, from fixed shapes
    )
    with _client_lock:
        return _botocore_session().create_client("dynamodb", region_name=region, config=config)


class Ledger:
    def __init__(
        self,
        table_name: str,
        *,
        lease_seconds: int = 1200,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
    ):
        self.table_name = table_name
        self.client = client if client is not None else dynamodb_client()
        self.lease_seconds = lease_seconds
        self._wall_clock = wall_clock
        self._sleep = sleep

    # -- reads -------------------------------------------------------------------------------------------

    def sent(self, keys: Iterable[str]) -> dict[str, datetime]:
        """For each key that was ever sent, when it was last sent: the sending run's ``as_of``
        (BatchGetItem, 100 keys a call)."""
        items = self._batch_get(keys, consistent=False, attributes=("pk", "sent_at"))
        # a re-claimed recurring record keeps its last send
        return {i["pk"]["S"]: parse_datetime(i["sent_at"]["S"]) for i in items.values() if "sent_at" in i}

    def states(self, keys: Iterable[str]) -> dict[str, str]:
        """``claimed``, ``sent`` or ``rejected`` for each key that has a record (strongly consistent reads)."""
        items = self._batch_get(keys, consistent=True, attributes=("pk", "state"))
        return {key: item["state"]["S"] for key, item in items.items()}

    def get(self, key: str) -> LedgerRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key={"pk": _value(key)}, ConsistentRead=True)
        return LedgerRecord.from_item(item["Item"]) if "Item" in item else None

    def _batch_get(
        self,
        keys: Iterable[str],
        *,
        consistent: bool,
        attributes: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> dict[str, Item]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, Item] = {}
        for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
            request: dict[str, Any] = {"Keys": [{"pk": _value(k)} for k in unique[start : start + BATCH_GET_MAX_KEYS]]}
            request["ConsistentRead"] = consistent
            if attributes:
                request["ProjectionExpression"] = ", ".join(f"#{a}" for a in attributes)
                request["ExpressionAttributeNames"] = _names(*attributes)
            pending = {self.table_name: request}
            for attempt in range(BATCH_GET_ATTEMPTS):
                self._check(deadline)
                response = self.client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    found[item["pk"]["S"]] = item
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise RuntimeError(f"DynamoDB left keys unread after {BATCH_GET_ATTEMPTS} BatchGetItem requests")
        return found

    # -- the protocol, one key ---------------------------------------------------------------------------

    def claim(self, key: str, **request: Any) -> Claim | None:
        """Take ``key`` for this worker, or return None if someone else holds it or it is already sent.

        ``request``: kind, run_id, expires_at, and optionally enterprise_customer_uuid, subject_uuid,
        resend_if_sent_before (recurring notifications: a send whose ``as_of`` is older than this may be
        sent again).
        """
        return self.claim_many([{"key": key, **request}])[0]

    def mark_sent(self, claim: Claim, *, as_of: datetime, run_id: str, dispatch_id: str) -> bool:
        """Record the send. False (and an error log) if the claim was lost, which a lease longer than the
        worker timeout rules out in practice."""
        return self.mark_sent_many([claim], as_of=as_of, run_id=run_id, dispatch_id=dispatch_id) == 1

    def release(self, claim: Claim) -> None:
        """Give the key back after a failed send: delete a first-time claim, or restore the previous send
        of a recurring one (its ``sent_at`` stays, so the cadence is unchanged)."""
        self.release_many([claim])

    def hold(self, claim: Claim, *, seconds: int, reason: str) -> None:
        """Keep the key from every run for ``seconds`` (wall clock) after Braze refused it: state ``rejected``
        with a lease; once it runs out any run may claim the key again. A previous send (``sent_at``) stays."""
        self.hold_many([claim], seconds=seconds, reason=reason)

    # -- the protocol, a batch (one transaction in the steady state) ---------------------------------------

    def claim_many(self, requests: Sequence[Mapping[str, Any]]) -> list[Claim | None]:
        """Claim each key (None where it is held elsewhere or already sent). If a write errors, every claim this
        call may have taken is given back before the error is raised."""
        now = self._wall_clock()
        planned: dict[str, tuple[Claim, Op, str | None]] = {}
        for request in requests:
            if request["key"] not in planned:  # a key twice in one batch: the first one claims it
                planned[request["key"]] = self._claim_op(now, **request)

        def replan(key: str, item: Item | None) -> Op | None:
            claim, op, resend_before = planned[key]
            if _token(item) == claim.token:
                return DONE  # an earlier attempt of ours took it (its reply was lost, botocore sent it again)
            return op if _claimable(item, now, resend_before) else None

        taken: dict[str, bool] = {}
        try:
            self._settle({key: op for key, (_, op, _) in planned.items()}, replan, taken, reread_single=False)
        except BaseException:
            self._give_back([claim for claim, _, _ in planned.values()])
            raise
        claims: list[Claim | None] = []
        for request in requests:
            key = request["key"]
            claims.append(planned[key][0] if taken.pop(key, False) else None)
        return claims

    def mark_sent_many(self, claims: Sequence[Claim], *, as_of: datetime, run_id: str, dispatch_id: str) -> int:
        """Record each claim's send; returns how many are recorded (a lost claim is logged and not counted).

        Braze has already accepted these sends: errors are retried on top of botocore's own retries, within
        ``MARK_BUDGET_SECONDS``, since an unrecorded claim becomes claimable again once its lease runs out."""
        pending = {claim.key: claim for claim in claims}
        sent_at = format_datetime(as_of)
        done: dict[str, bool] = {}
        deadline = _monotonic() + MARK_BUDGET_SECONDS
        ours = {"state": _value(SENT), "sent_at": _value(sent_at), "run_id": _value(run_id),
                "dispatch_id": _value(dispatch_id)}  # fmt: skip

        def op(claim: Claim) -> Op:
            values = {":sent": _value(SENT), ":as_of": _value(sent_at), ":recorded": _value(recorded_at),
                      ":run": _value(run_id), ":dispatch": _value(dispatch_id), ":token": _value(claim.token)}  # fmt: skip
            return "Update", self._params(claim.key, _MARK_UPDATE, "#claim_token = :token", _MARK_NAMES, values)

        def replan(key: str, item: Item | None) -> Op | None:
            if _token(item) == pending[key].token:
                return op(pending[key])
            if item and all(item.get(name) == value for name, value in ours.items()):
                return DONE  # an earlier attempt of ours wrote it (its reply was lost)
            return None

        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(MARK_ATTEMPTS) | stop_after_delay(MARK_BUDGET_SECONDS),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                recorded_at = format_datetime(datetime.fromtimestamp(self._wall_clock(), UTC))
                left = {key: op(claim) for key, claim in pending.items() if key not in done}
                self._settle(left, replan, done, reread_single=True, deadline=deadline)
        for key, ok in done.items():
            if not ok:
                logger.error("ledger claim lost before mark_sent", extra={"ledger_key": key})
        return sum(done.values())

    def release_many(self, claims: Sequence[Claim]) -> None:
        """Give each key back (see :meth:`release`)."""
        self._release(claims, quiet=False)

    def hold_many(self, claims: Sequence[Claim], *, seconds: int, reason: str) -> None:
        """Hold each key back (see :meth:`hold`)."""
        pending = {claim.key: claim for claim in claims}
        lease = str(int(self._wall_clock()) + seconds)

        def op(claim: Claim) -> Op:
            values = {":rejected": _value(REJECTED), ":lease": {"N": lease}, ":note": _value(reason),
                      ":token": _value(claim.token)}  # fmt: skip
            return "Update", self._params(claim.key, _HOLD_UPDATE, "#claim_token = :token", _HOLD_NAMES, values)

        held = {"state": _value(REJECTED), "lease_until": {"N": lease}, "note": _value(reason)}

        def replan(key: str, item: Item | None) -> Op | None:
            if _token(item) == pending[key].token:
                return op(pending[key])
            if item and "claim_token" not in item and all(item.get(n) == v for n, v in held.items()):
                return DONE  # an earlier attempt of ours wrote it
            return None

        done: dict[str, bool] = {}
        self._settle({key: op(claim) for key, claim in pending.items()}, replan, done, reread_single=False)
        for key, ok in done.items():
            if not ok:
                logger.warning("ledger claim already gone at hold", extra={"ledger_key": key})

    # -- the cutover: sends made before this service (``import-sent``) ------------------------------------

    def import_sent_many(self, records: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Write each record as ``sent`` unless its key already exists, in any state; returns, per record,
        whether it was written (False: the key was there already, or named earlier in ``records``).

        A record: ``key``, ``kind``, ``sent_at`` (when it was sent), ``run_id`` and ``dispatch_id`` (the audit
        mark), and optionally ``enterprise_customer_uuid``, ``subject_uuid`` and ``expires_at`` (without it the
        record never expires). ``recorded_at`` is the wall clock. No claim attributes: the record is what
        :meth:`mark_sent` leaves, so the jobs and the report read it like any send.

        One conditional put (``attribute_not_exists(pk)``) per key, 100 per ``TransactWriteItems``. A key that
        exists cancels its transaction: the batch is read back and the rest written (see ``_settle``); a key
        that holds exactly what this call put counts as written (an earlier attempt of ours whose reply was
        lost). Nothing that exists is ever changed, so importing the same records again writes nothing."""
        recorded_at = format_datetime(datetime.fromtimestamp(self._wall_clock(), UTC))
        planned: dict[str, Op] = {}
        for record in records:
            planned.setdefault(record["key"], self._import_op(recorded_at, **record))  # the first one counts

        def replan(key: str, item: Item | None) -> Op | None:
            op = planned[key]
            if item is None:
                return op
            return DONE if item == op[1]["Item"] else None

        written: dict[str, bool] = {}
        self._settle(dict(planned), replan, written, reread_single=True)
        results = []
        for record in records:
            results.append(written.pop(record["key"], False))  # a repeated key: False after the first
        return results

    # -- internals ---------------------------------------------------------------------------------------

    def _claim_op(
        self,
        now: float,
        *,
        key: str,
        kind: str,
        run_id: str,
        expires_at: datetime,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        resend_if_sent_before: datetime | None = None,
    ) -> tuple[Claim, Op, str | None]:
        token = f"{run_id}:{secrets.token_hex(8)}"
        resend_before = format_datetime(resend_if_sent_before) if resend_if_sent_before is not None else None
        update, condition, names = _claim_expressions(
            bool(enterprise_customer_uuid), bool(subject_uuid), resend_before is not None
        )
        values = {
            ":kind": _value(kind),
            ":claimed": _value(CLAIMED),
            ":rejected": _value(REJECTED),
            ":token": _value(token),
            ":lease": {"N": str(int(now) + self.lease_seconds)},
            ":run": _value(run_id),
            ":expires": {"N": format_epoch(expires_at)},
            ":now": {"N": json.dumps(now)},
        }
        if enterprise_customer_uuid:
            values[":enterprise"] = _value(enterprise_customer_uuid)
        if subject_uuid:
            values[":subject"] = _value(subject_uuid)
        if resend_before is not None:
            values[":sent"] = _value(SENT)
            values[":resend"] = _value(resend_before)
        return Claim(key, token), ("Update", self._params(key, update, condition, names, values)), resend_before

    def _import_op(
        self,
        recorded_at: str,
        *,
        key: str,
        kind: str,
        sent_at: datetime,
        run_id: str,
        dispatch_id: str,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        expires_at: datetime | None = None,
    ) -> Op:
        item: Item = {
            "pk": _value(key),
            "kind": _value(kind),
            "state": _value(SENT),
            "sent_at": _value(format_datetime(sent_at)),
            "recorded_at": _value(recorded_at),
            "run_id": _value(run_id),
            "dispatch_id": _value(dispatch_id),
        }
        if enterprise_customer_uuid:
            item["enterprise_customer_uuid"] = _value(enterprise_customer_uuid)
        if subject_uuid:
            item["subject_uuid"] = _value(subject_uuid)
        if expires_at is not None:
            item["expires_at"] = {"N": format_epoch(expires_at)}
        params = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": _names("pk"),
        }
        return "Put", params

    def _release(self, claims: Sequence[Claim], *, quiet: bool) -> None:
        pending = {claim.key: claim for claim in claims}

        def delete(claim: Claim) -> Op:
            params = {
                "TableName": self.table_name,
                "Key": {"pk": _value(claim.key)},
                "ConditionExpression": "#claim_token = :token AND attribute_not_exists(#sent_at)",
                "ExpressionAttributeNames": _RELEASE_DELETE_NAMES,
                "ExpressionAttributeValues": {":token": _value(claim.token)},
            }
            return "Delete", params

        def replan(key: str, item: Item | None) -> Op | None:
            claim = pending[key]
            if _token(item) != claim.token:
                return None
            if item is not None and "sent_at" in item:  # a recurring record: its previous send comes back
                values = {":sent": _value(SENT), ":token": _value(claim.token)}
                return "Update", self._params(key, _RESTORE_UPDATE, "#claim_token = :token", _RESTORE_NAMES, values)
            return delete(claim)

        done: dict[str, bool] = {}
        self._settle({key: delete(claim) for key, claim in pending.items()}, replan, done, reread_single=True)
        for key, ok in done.items():
            if not ok and not quiet:
                logger.warning("ledger claim already gone at release", extra={"ledger_key": key})

    def _give_back(self, claims: Sequence[Claim]) -> None:
        """After a failed claim batch: release whatever it may hold (errors logged, the original one is raised)."""
        try:
            self._release(claims, quiet=True)
        except Exception:  # their leases let a later run take them
            logger.exception("could not give back the claims of a failed claim batch")

    def _params(
        self, key: str, update: str, condition: str, names: dict[str, str], values: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "TableName": self.table_name,
            "Key": {"pk": _value(key)},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _settle(
        self,
        ops: dict[str, Op],
        replan: Callable[[str, Item | None], Op | None],
        done: dict[str, bool],
        *,
        reread_single: bool,
        deadline: float | None = None,
    ) -> None:
        """Apply each key's conditional write; ``done[key]`` becomes True where it is applied (or ``replan``
        finds it already in place), False where its condition does not hold. Filled as writes complete, so a
        caller that catches an error knows what was written.

        One transaction per 100 keys. If it is cancelled, or a single write's condition fails and
        ``reread_single``, each key is read back (strongly consistent) and ``replan`` says what to write now
        (an op), that nothing applies (None) or that it is already done (DONE); what still applies is written
        in one more transaction, then, if that is cancelled too, key by key."""
        keys = list(ops)
        for start in range(0, len(keys), TRANSACTION_MAX_ITEMS):
            chunk = {key: ops[key] for key in keys[start : start + TRANSACTION_MAX_ITEMS]}
            self._settle_chunk(chunk, replan, done, reread_single, deadline)

    def _settle_chunk(
        self,
        ops: dict[str, Op],
        replan: Callable[[str, Item | None], Op | None],
        done: dict[str, bool],
        reread_single: bool,
        deadline: float | None,
    ) -> None:
        if not ops or self._first_try(ops, done, reread_single, deadline):
            return
        items = self._batch_get(ops, consistent=True, deadline=deadline)
        left: dict[str, Op] = {}
        for key in ops:
            plan = replan(key, items.get(key))
            if plan is None or plan is DONE:
                done[key] = plan is DONE
            else:
                left[key] = plan
        if len(left) > 1 and self._first_try(left, done, False, deadline):
            return
        for key, op in left.items():  # each key decided by its own condition
            self._check(deadline)
            done[key] = self._write_one(op)

    def _first_try(
        self, ops: dict[str, Op], done: dict[str, bool], reread_single: bool, deadline: float | None
    ) -> bool:
        """One write for ``ops`` (a transaction, or the single write): True when that settled them all."""
        self._check(deadline)
        if len(ops) > 1:
            applied = self._transact(ops)
            if applied:
                done.update(dict.fromkeys(ops, True))
            return applied
        ((key, op),) = ops.items()
        applied = self._write_one(op)
        if applied or not reread_single:
            done[key] = applied
            return True
        return False

    def _write_one(self, op: Op) -> bool:
        """One conditional write: True if applied, False if its condition does not hold."""
        kind, params = op
        call = {"Update": self.client.update_item, "Delete": self.client.delete_item, "Put": self.client.put_item}[kind]
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                call(**params)
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    return False
                if _code(exc) != "TransactionConflictException" or attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                self._sleep(0.05 * 2**attempt)  # another writer's transaction holds the key for a moment
            else:
                return True
        raise AssertionError("unreachable")

    def _transact(self, ops: dict[str, Op]) -> bool:
        """One transaction of ``ops``: True if applied, False if cancelled (nothing written)."""
        try:
            self.client.transact_write_items(TransactItems=[{kind: params} for kind, params in ops.values()])
        except ClientError as exc:
            if _code(exc) == "TransactionCanceledException":
                return False
            raise
        return True

    @staticmethod
    def _check(deadline: float | None) -> None:
        if deadline is not None and _monotonic() > deadline:
            raise LedgerBudgetExceededError(f"the ledger's {MARK_BUDGET_SECONDS} s budget for a record ran out")
