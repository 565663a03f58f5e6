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

The table is the pynamodb model :class:`LedgerItem` (its attributes, TTL and the ``by-enterprise`` and
``by-run`` indexes ``report`` queries; ``tests/integration/test_template.py`` keeps it equal to
``template.yaml``). Each :class:`Ledger` binds a subclass of it to its table, with its own connection (pynamodb
builds its botocore client from the model's ``Meta``: no parameter validation, 2 s connect / 5 s read timeouts,
3 attempts, the bounds ``MARK_WORST_CASE_SECONDS`` counts on).

Cost (issue 8). A batch of up to 100 keys is written with one ``TransactWriteItems`` of per-key conditional
updates, deletes or puts, their actions and conditions built from the model's attributes (``_Write``), and read
with ``batch_get``:

- steady state, per 50 reminders: the claim transaction, the record transaction, and ``sent()``, which reads
  100 keys per BatchGetItem (0.5 a batch when the job reads a page of 500); the utilization job adds the
  strongly consistent ``states()`` read of its 75 % / 100 % check;
- a transaction is all or nothing, so one key held elsewhere cancels it. Then a strongly consistent
  ``batch_get`` of the batch shows where each key stands (not the cancellation reasons: their order does not
  follow the calls in pynamodb and moto), the keys whose write still applies are written in one more
  transaction, and if that is cancelled too (a racing writer), key by key. Every write keeps its own
  condition, so the read-back only chooses which writes to try: a stale read costs requests, never a
  duplicate. A write an earlier attempt of ours already made counts as made. The same for records
  (conditioned on the claim token), releases (a first-time claim is deleted, a recurring one gets its
  previous send back), holds and imports (a put that never touches an existing key);
- a transaction sent again carries the client request token of its first sending (botocore's own retries
  reuse it; a record retried after an error reuses the token of the same writes): DynamoDB (and DynamoDB
  Local) answers the repeat as it answered the first without writing again; moto ignores the token and
  cancels the repeat, and the read-back above finds the writes ours;
- a failed claim batch gives back every claim it may have taken (by token, so keys it did not get are
  untouched), also when DynamoDB committed a transaction whose reply was lost.

Client CPU: pynamodb's ``TransactWrite`` serialises every item's actions and condition anew. The 50 claims or
records of a batch are one write with different keys and tokens, so ``_Write`` has pynamodb serialise each
write once per batch (a marker in each per-key value) and gives each key a copy with its own key and values (a
unit test checks every item against pynamodb's own serialisation of that key's write), sent through pynamodb's
``Connection.transact_write_items``, the call ``TransactWrite`` ends in. Why, the figures, and the
alternatives weighed (a lease per enterprise, PartiQL): docs/design.md, "The ledger's implementation and cost".

Stored formats are pynamodb's and have not changed since the first ledger: ``sent_at`` and ``recorded_at`` as
``2026-03-01T09:00:00.000000+0000`` (sorts by time in the ``by-enterprise`` index), ``lease_until`` and
``expires_at`` as epoch seconds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
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
CONFLICT_ATTEMPTS = 3  # a single write meeting another writer's transaction in flight

_monotonic = time.monotonic  # the record budget's clock
_NOT_RETRIED = {"ValidationException", "ResourceNotFoundException", "AccessDeniedException"}


class LedgerBudgetExceededError(TimeoutError):
    """Recording a batch ran out of ``MARK_BUDGET_SECONDS`` before every record was written."""


class ByEnterprise(GlobalSecondaryIndex["LedgerItem"]):
    """An enterprise's sends, in time order (sparse: records with ``sent_at``)."""

    class Meta:
        index_name = "by-enterprise"
        projection = AllProjection()

    enterprise_customer_uuid = UnicodeAttribute(hash_key=True)
    sent_at = UTCDateTimeAttribute(range_key=True)


class ByRun(GlobalSecondaryIndex["LedgerItem"]):
    """What one run sent (sparse: records with ``run_id``)."""

    class Meta:
        index_name = "by-run"
        projection = AllProjection()

    run_id = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class LedgerItem(Model):
    """One ledger record (also what :meth:`Ledger.get` returns)."""

    class Meta:
        table_name = os.environ.get("LEDGER_TABLE_NAME", "LedgerTable")  # Ledger binds its own table
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        connect_timeout_seconds = DYNAMODB_CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = DYNAMODB_READ_TIMEOUT_SECONDS
        max_retry_attempts = DYNAMODB_MAX_RETRY_ATTEMPTS

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)
    claim_token = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)  # wall-clock epoch seconds
    claimed_by_run = UnicodeAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)  # the run's as_of
    recorded_at = UTCDateTimeAttribute(null=True)  # wall clock of the write, for audit
    run_id = UnicodeAttribute(null=True)
    dispatch_id = UnicodeAttribute(null=True)
    enterprise_customer_uuid = UnicodeAttribute(null=True)
    subject_uuid = UnicodeAttribute(null=True)  # license uuid, plan uuid, ...
    note = UnicodeAttribute(null=True)  # why a key is held (``rejected``)
    expires_at = TTLAttribute(null=True)
    by_enterprise = ByEnterprise()
    by_run = ByRun()


LedgerRecord = LedgerItem  # the name the jobs and fakes know


def ledger_model(table_name: str, *, host: str | None = None) -> type[LedgerItem]:
    """:class:`LedgerItem` bound to ``table_name`` with a connection of its own (endpoint from ``host`` or the
    environment: ``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL``)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    meta = type("Meta", (LedgerItem.Meta,), {"table_name": table_name, "region": region, "host": host})
    return type("BoundLedgerItem", (LedgerItem,), {"Meta": meta, "__module__": __name__})


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


DONE: Any = object()  # a re-plan's answer: the write is already in place (an earlier attempt of ours)
_MARKER = f"\0{secrets.token_hex(8)}:"  # stands for a per-key value while pynamodb serialises a write once


class _Write:
    """One kind of conditional write (``update``, ``delete`` or ``put``) for many keys. ``build`` makes it from the
    model's attributes for one key's values: (actions, condition) for an update, (None, condition) for a delete,
    (the item's attributes, condition) for a put. ``slots``: the string values that differ from key to key; with
    slots, pynamodb serialises the write once (a marker in each slot) and each key's transaction item is a copy
    with its own key and values, instead of pynamodb serialising every key's actions and condition anew."""

    def __init__(self, model: type[LedgerItem], kind: str, build: Callable[..., tuple[Any, Any]], *slots: str):
        self.model, self.kind, self.build, self.slots = model, kind, build, slots
        self._template: tuple[dict[str, Any], dict[str, str]] | None = None

    def apply(self, key: str, values: Mapping[str, Any]) -> None:
        """The write of one key on its own (UpdateItem, DeleteItem or PutItem)."""
        what, condition = self.build(**values)
        if self.kind == "update":
            self.model(key).update(what, condition=condition)
        elif self.kind == "delete":
            self.model(key).delete(condition=condition)
        else:
            self.model(key, **what).save(condition=condition)

    def request(self, key: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """One key's item of a TransactWriteItems request, as pynamodb's TransactWrite builds it."""
        if not self.slots:
            return self._serialise(key, values)
        if self._template is None:
            request = self._serialise(_MARKER, {slot: _MARKER + slot for slot in self.slots})
            found = [(value["S"][len(_MARKER) :], name) for name, value in request["ExpressionAttributeValues"].items()
                     if str(value.get("S", "")).startswith(_MARKER)]  # fmt: skip
            slots = dict(found)
            if len(found) != len(self.slots) or set(slots) != set(self.slots):
                raise ValueError(f"each slot must be one value of the write: {self.slots}")
            self._template = request, slots
        request, slots = self._template
        values_map = dict(request["ExpressionAttributeValues"])
        for slot, name in slots.items():
            values_map[name] = {"S": values[slot]}
        return {**request, "Key": {LedgerItem.pk.attr_name: {"S": key}}, "ExpressionAttributeValues": values_map}

    def _serialise(self, key: str, values: Mapping[str, Any]) -> dict[str, Any]:
        what, condition = self.build(**values)
        if self.kind == "update":
            return self.model(key).get_update_kwargs_from_instance(actions=what, condition=condition)
        if self.kind == "delete":
            return self.model(key).get_delete_kwargs_from_instance(condition=condition)
        return self.model(key, **what).get_save_kwargs_from_instance(condition=condition)


Op = tuple[_Write, Mapping[str, Any]]  # a write and one key's values


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _code(exc: BaseException) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def _transient(exc: BaseException) -> bool:
    """Worth another attempt at recording a send: DynamoDB or the network failed, not the request."""
    if isinstance(exc, ClientError):
        return _code(exc) not in _NOT_RETRIED
    return isinstance(exc, BotoCoreError)


def _botocore_error(exc: PynamoDBException) -> BaseException:
    """The botocore error pynamodb wrapped (callers see DynamoDB's errors as botocore raises them)."""
    return exc.cause if isinstance(exc.cause, ClientError | BotoCoreError) else exc


def _token_for(nonce: str, ops: Mapping[str, Op]) -> str:
    """One client request token per set of writes: the same writes sent again carry the same token."""
    digest = hashlib.sha256(nonce.encode())
    for key, (write, _) in ops.items():
        digest.update(f"\0{write.kind}\0{key}".encode())
    return digest.hexdigest()[:36]


class Ledger:
    def __init__(
        self,
        table_name: str,
        *,
        lease_seconds: int = 1200,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        host: str | None = None,
    ):
        self.table_name = table_name
        self.model = ledger_model(table_name, host=host)
        self.lease_seconds = lease_seconds
        self._wall_clock = wall_clock
        self._sleep = sleep

    @property
    def client(self) -> Any:
        """The botocore DynamoDB client this ledger's requests go through (pynamodb's, created on first use)."""
        return self.model._get_connection().connection.client

    # -- reads -------------------------------------------------------------------------------------------

    def sent(self, keys: Iterable[str]) -> dict[str, datetime]:
        """For each key that was ever sent, when it was last sent: the sending run's ``as_of``
        (BatchGetItem, 100 keys a call)."""
        items = self._batch_get(keys, consistent=False, attributes=("pk", "sent_at"))
        # a re-claimed recurring record keeps its last send
        return {key: item.sent_at for key, item in items.items() if item.sent_at is not None}

    def states(self, keys: Iterable[str]) -> dict[str, str]:
        """``claimed``, ``sent`` or ``rejected`` for each key that has a record (strongly consistent reads)."""
        items = self._batch_get(keys, consistent=True, attributes=("pk", "state"))
        return {key: item.state for key, item in items.items()}

    def get(self, key: str) -> LedgerItem | None:
        try:
            return self.model.get(key, consistent_read=True)
        except self.model.DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise _botocore_error(exc) from exc

    def _batch_get(
        self, keys: Iterable[str], *, consistent: bool, attributes: Sequence[str] | None = None
    ) -> dict[str, LedgerItem]:
        unique = list(dict.fromkeys(keys))
        found: dict[str, LedgerItem] = {}
        try:
            for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
                chunk = unique[start : start + BATCH_GET_MAX_KEYS]
                for item in self.model.batch_get(
                    chunk, consistent_read=consistent, attributes_to_get=attributes and list(attributes)
                ):
                    found[item.pk] = item
        except PynamoDBException as exc:
            raise _botocore_error(exc) from exc
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
        writes: dict[tuple[Any, ...], _Write] = {}  # one per kind of claim in the batch (usually one)
        planned: dict[str, tuple[Claim, Op, datetime | None]] = {}
        for request in requests:
            if request["key"] not in planned:  # a key twice in one batch: the first one claims it
                planned[request["key"]] = self._claim_op(now, writes, **request)

        def replan(key: str, item: LedgerItem | None) -> Op | None:
            claim, op, resend_before = planned[key]
            if item is not None and item.claim_token == claim.token:
                return DONE  # an earlier attempt of ours took it (its reply was lost)
            return op if self._claimable(item, now, resend_before) else None

        taken: dict[str, bool] = {}
        try:
            self._settle({key: op for key, (_, op, _) in planned.items()}, replan, taken, reread_single=False)
        except BaseException:
            self._give_back([claim for claim, _, _ in planned.values()])
            raise
        return [planned[r["key"]][0] if taken.pop(r["key"], False) else None for r in requests]

    def mark_sent_many(self, claims: Sequence[Claim], *, as_of: datetime, run_id: str, dispatch_id: str) -> int:
        """Record each claim's send; returns how many are recorded (a lost claim is logged and not counted).

        Braze has already accepted these sends: errors are retried on top of botocore's own retries, within
        ``MARK_BUDGET_SECONDS``, since an unrecorded claim becomes claimable again once its lease runs out."""
        m = self.model
        pending = {claim.key: claim for claim in claims}
        as_of = _utc(as_of)
        recorded_at = datetime.fromtimestamp(self._wall_clock(), UTC)  # one value: a resent transaction is equal
        deadline = _monotonic() + MARK_BUDGET_SECONDS
        done: dict[str, bool] = {}
        actions = [m.state.set(SENT), m.sent_at.set(as_of), m.recorded_at.set(recorded_at), m.run_id.set(run_id),
                   m.dispatch_id.set(dispatch_id), m.claim_token.remove(), m.lease_until.remove(),
                   m.claimed_by_run.remove()]  # fmt: skip

        record = _Write(m, "update", lambda token: (actions, m.claim_token == token), "token")

        def op(claim: Claim) -> Op:
            return record, {"token": claim.token}

        def replan(key: str, item: LedgerItem | None) -> Op | None:
            if item is None:
                return None
            if item.claim_token == pending[key].token:
                return op(pending[key])
            if (item.state, item.sent_at, item.run_id, item.dispatch_id) == (SENT, as_of, run_id, dispatch_id):
                return DONE  # an earlier attempt of ours wrote it (its reply was lost)
            return None

        nonce = secrets.token_hex(8)
        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(MARK_ATTEMPTS) | stop_after_delay(MARK_BUDGET_SECONDS),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                left = {key: op(claim) for key, claim in pending.items() if key not in done}
                self._settle(left, replan, done, reread_single=True, deadline=deadline, nonce=nonce)
        for key, ok in done.items():
            if not ok:
                logger.error("ledger claim lost before mark_sent", extra={"ledger_key": key})
        return sum(done.values())

    def release_many(self, claims: Sequence[Claim]) -> None:
        """Give each key back (see :meth:`release`)."""
        self._release(claims, quiet=False)

    def hold_many(self, claims: Sequence[Claim], *, seconds: int, reason: str) -> None:
        """Hold each key back (see :meth:`hold`)."""
        m = self.model
        pending = {claim.key: claim for claim in claims}
        lease = int(self._wall_clock()) + seconds
        actions = [m.state.set(REJECTED), m.lease_until.set(lease), m.note.set(reason), m.claim_token.remove()]
        held = _Write(m, "update", lambda token: (actions, m.claim_token == token), "token")

        def replan(key: str, item: LedgerItem | None) -> Op | None:
            if item is not None and item.claim_token == pending[key].token:
                return held, {"token": pending[key].token}
            if item is not None and (item.claim_token, item.state, item.lease_until, item.note) == (
                None, REJECTED, lease, reason):  # fmt: skip
                return DONE  # an earlier attempt of ours wrote it
            return None

        done: dict[str, bool] = {}
        ops: dict[str, Op] = {key: (held, {"token": claim.token}) for key, claim in pending.items()}
        self._settle(ops, replan, done, reread_single=False)
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
        recorded_at = datetime.fromtimestamp(self._wall_clock(), UTC)
        put = _Write(self.model, "put", lambda **item: (item, self.model.pk.does_not_exist()))
        planned: dict[str, Op] = {}
        for record in records:
            if record["key"] not in planned:  # the first one counts
                planned[record["key"]] = put, self._import_item(recorded_at, **record)

        def replan(key: str, item: LedgerItem | None) -> Op | None:
            if item is None:
                return planned[key]
            ours = self.model(key, **planned[key][1])
            return DONE if item.serialize() == ours.serialize() else None  # exactly ours: an earlier attempt

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
        writes: dict[tuple[Any, ...], _Write],
        *,
        key: str,
        kind: str,
        run_id: str,
        expires_at: datetime,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        resend_if_sent_before: datetime | None = None,
    ) -> tuple[Claim, Op, datetime | None]:
        token = f"{run_id}:{secrets.token_hex(8)}"
        resend_before = _utc(resend_if_sent_before) if resend_if_sent_before is not None else None
        values = {"token": token}
        if enterprise_customer_uuid:
            values["enterprise"] = enterprise_customer_uuid
        if subject_uuid:
            values["subject"] = subject_uuid
        shape = (kind, run_id, expires_at, resend_before, *values)
        if shape not in writes:
            writes[shape] = self._claim_write(now, kind, run_id, expires_at, resend_before, *values)
        return Claim(key, token), (writes[shape], values), resend_before

    def _claim_write(
        self, now: float, kind: str, run_id: str, expires_at: datetime, resend_before: datetime | None, *slots: str
    ) -> _Write:
        m = self.model
        shared = [m.kind.set(kind), m.state.set(CLAIMED), m.lease_until.set(int(now) + self.lease_seconds),
                  m.claimed_by_run.set(run_id), m.expires_at.set(expires_at), m.note.remove()]  # fmt: skip
        condition = m.pk.does_not_exist() | (m.state.is_in(CLAIMED, REJECTED) & (m.lease_until < now))
        if resend_before is not None:
            condition |= (m.state == SENT) & (m.sent_at < resend_before)

        def build(token: str, enterprise: str | None = None, subject: str | None = None) -> tuple[Any, Any]:
            actions = [*shared, m.claim_token.set(token)]
            if enterprise:
                actions.append(m.enterprise_customer_uuid.set(enterprise))
            if subject:
                actions.append(m.subject_uuid.set(subject))
            return actions, condition

        return _Write(m, "update", build, *slots)

    @staticmethod
    def _claimable(item: LedgerItem | None, now: float, resend_before: datetime | None) -> bool:
        """The claim condition, evaluated on a record read back (after a cancelled transaction)."""
        if item is None:
            return True
        if item.state in (CLAIMED, REJECTED) and item.lease_until is not None and item.lease_until < now:
            return True
        sent_at = item.sent_at
        return resend_before is not None and item.state == SENT and sent_at is not None and sent_at < resend_before

    def _import_item(
        self,
        recorded_at: datetime,
        *,
        key: str,
        kind: str,
        sent_at: datetime,
        run_id: str,
        dispatch_id: str,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        expires_at: datetime | None = None,
    ) -> dict[str, Any]:
        return {"kind": kind, "state": SENT, "sent_at": _utc(sent_at), "recorded_at": recorded_at, "run_id": run_id,
                "dispatch_id": dispatch_id, "enterprise_customer_uuid": enterprise_customer_uuid or None,
                "subject_uuid": subject_uuid or None, "expires_at": expires_at}  # fmt: skip

    def _release(self, claims: Sequence[Claim], *, quiet: bool) -> None:
        m = self.model
        pending = {claim.key: claim for claim in claims}
        actions = [m.state.set(SENT), m.claim_token.remove(), m.lease_until.remove(), m.claimed_by_run.remove()]
        restore = _Write(m, "update", lambda token: (actions, m.claim_token == token), "token")
        delete = _Write(
            m, "delete", lambda token: (None, (m.claim_token == token) & m.sent_at.does_not_exist()), "token"
        )

        def replan(key: str, item: LedgerItem | None) -> Op | None:
            token = pending[key].token
            if item is None or item.claim_token != token:
                return None
            # a recurring record gets its previous send back
            return (restore if item.sent_at is not None else delete), {"token": token}

        done: dict[str, bool] = {}
        ops: dict[str, Op] = {key: (delete, {"token": claim.token}) for key, claim in pending.items()}
        self._settle(ops, replan, done, reread_single=True)
        for key, ok in done.items():
            if not ok and not quiet:
                logger.warning("ledger claim already gone at release", extra={"ledger_key": key})

    def _give_back(self, claims: Sequence[Claim]) -> None:
        """After a failed claim batch: release whatever it may hold (errors logged, the original one is raised)."""
        try:
            self._release(claims, quiet=True)
        except Exception:  # their leases let a later run take them
            logger.exception("could not give back the claims of a failed claim batch")

    def _settle(
        self,
        ops: dict[str, Op],
        replan: Callable[[str, LedgerItem | None], Op | None],
        done: dict[str, bool],
        *,
        reread_single: bool,
        deadline: float | None = None,
        nonce: str | None = None,
    ) -> None:
        """Apply each key's conditional write; ``done[key]`` becomes True where it is applied (or ``replan``
        finds it already in place), False where its condition does not hold. Filled as writes complete, so a
        caller that catches an error knows what was written.

        One transaction per 100 keys. If it is cancelled, or a single write's condition fails and
        ``reread_single``, each key is read back (strongly consistent) and ``replan`` says what to write now
        (an op), that nothing applies (None) or that it is already done (DONE); what still applies is written
        in one more transaction, then, if that is cancelled too, key by key. ``nonce``: the first transaction
        of the same keys carries the same client request token on every call that passes the same nonce."""
        keys = list(ops)
        for start in range(0, len(keys), TRANSACTION_MAX_ITEMS):
            chunk = {key: ops[key] for key in keys[start : start + TRANSACTION_MAX_ITEMS]}
            if not chunk or self._first_try(chunk, done, reread_single, deadline, nonce):
                continue
            self._check(deadline)
            items = self._batch_get(chunk, consistent=True)
            left: dict[str, Op] = {}
            for key in chunk:
                plan = replan(key, items.get(key))
                if plan is None or plan is DONE:
                    done[key] = plan is DONE
                else:
                    left[key] = plan
            if len(left) > 1 and self._first_try(left, done, False, deadline, None):
                continue
            for key, op in left.items():  # each key decided by its own condition
                self._check(deadline)
                done[key] = self._write_one(key, op)

    def _first_try(
        self, ops: dict[str, Op], done: dict[str, bool], reread_single: bool, deadline: float | None, nonce: str | None
    ) -> bool:
        """One write for ``ops`` (a transaction, or the single write): True when that settled them all."""
        self._check(deadline)
        if len(ops) > 1:
            applied = self._transact(ops, _token_for(nonce, ops) if nonce else None)
            if applied:
                done.update(dict.fromkeys(ops, True))
            return applied
        ((key, op),) = ops.items()
        applied = self._write_one(key, op)
        if applied or not reread_single:
            done[key] = applied
            return True
        return False

    def _write_one(self, key: str, op: Op) -> bool:
        """One conditional write: True if applied, False if its condition does not hold."""
        write, values = op
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                write.apply(key, values)
            except PynamoDBException as exc:
                code = exc.cause_response_code
                if code == "ConditionalCheckFailedException":
                    return False
                if code != "TransactionConflictException" or attempt == CONFLICT_ATTEMPTS - 1:
                    raise _botocore_error(exc) from exc
                self._sleep(0.05 * 2**attempt)  # another writer's transaction holds the key for a moment
            else:
                return True
        raise AssertionError("unreachable")

    def _transact(self, ops: dict[str, Op], token: str | None) -> bool:
        """One transaction of ``ops``: True if applied, False if cancelled (nothing written)."""
        items: dict[str, list[dict[str, Any]]] = {"update": [], "delete": [], "put": []}
        for key, (write, values) in ops.items():
            items[write.kind].append(write.request(key, values))
        try:
            self.model._get_connection().connection.transact_write_items(
                condition_check_items=(), delete_items=items["delete"], put_items=items["put"],
                update_items=items["update"], client_request_token=token,
            )  # fmt: skip
        except PynamoDBException as exc:
            if exc.cause_response_code == "TransactionCanceledException":
                return False
            raise _botocore_error(exc) from exc
        return True

    @staticmethod
    def _check(deadline: float | None) -> None:
        if deadline is not None and _monotonic() > deadline:
            raise LedgerBudgetExceededError(f"the ledger's {MARK_BUDGET_SECONDS} s budget for a record ran out")
