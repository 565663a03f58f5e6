"""The ledger: one DynamoDB table (pynamodb) recording what was sent, so nothing is ever sent twice.

Protocol, for every notification key (e.g. ``expiration_reminder#<license uuid>``):

1. ``claim``: a conditional write that succeeds only if nobody holds the key: no record, or a claim whose
   lease ran out (a crashed worker), or, for recurring notifications, a ``sent`` record older than the
   caller's ``resend_if_sent_before``. Exactly one of several racing workers wins a key.
2. send through Braze;
3. ``mark_sent`` (only after Braze accepted the batch: sent time = the run's ``as_of``, wall-clock
   ``recorded_at``, run id, Braze ``dispatch_id``), or ``release`` when the send failed, so a later run
   retries it, or ``hold`` when Braze refused the recipient: the key stays taken (state ``rejected``) until
   the hold runs out, then any run may claim it again.

Leases use the wall clock, not ``as_of``: they measure how long a real worker may hold a key, which a
preview or backfill clock must not stretch. ``CLAIM_LEASE_SECONDS`` (default 1200) exceeds the worker's (900 s)
timeout, so a live worker never loses its claim mid-send. Records carry a TTL (``expires_at``).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DeleteError, UpdateError
from pynamodb.models import Model
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

logger = logging.getLogger(__name__)

CLAIMED = "claimed"
SENT = "sent"
REJECTED = "rejected"
_WRITE_WORKERS = 8  # parallel conditional writes per batch
# Recording a send Braze accepted is worth retrying on top of botocore's own retries, within a time budget:
# MARK_WORST_CASE_SECONDS is what the worker keeps free before its timeout for the last batch's record.
MARK_ATTEMPTS = 6
MARK_BUDGET_SECONDS = 20
DYNAMODB_CONNECT_TIMEOUT_SECONDS = 2
DYNAMODB_READ_TIMEOUT_SECONDS = 5
DYNAMODB_MAX_RETRY_ATTEMPTS = 2  # botocore's retries of one request (after the first try)
MARK_WORST_CASE_SECONDS = MARK_BUDGET_SECONDS + (DYNAMODB_MAX_RETRY_ATTEMPTS + 1) * (
    DYNAMODB_CONNECT_TIMEOUT_SECONDS + DYNAMODB_READ_TIMEOUT_SECONDS
)


class LedgerRecord(Model):
    """Base model; :func:`ledger_model` binds it to a table name at run time."""

    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    state = UnicodeAttribute()
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


@cache
def ledger_model(table_name: str) -> type[LedgerRecord]:
    """A LedgerRecord subclass bound to ``table_name`` (pynamodb binds tables at class level)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    meta = type(
        "Meta",
        (),
        {
            "table_name": table_name,
            "region": region,
            "connect_timeout_seconds": DYNAMODB_CONNECT_TIMEOUT_SECONDS,
            "read_timeout_seconds": DYNAMODB_READ_TIMEOUT_SECONDS,
            "max_retry_attempts": DYNAMODB_MAX_RETRY_ATTEMPTS,
        },
    )
    return type(f"LedgerRecord_{abs(hash(table_name))}", (LedgerRecord,), {"Meta": meta})


@dataclass(frozen=True)
class Claim:
    key: str
    token: str


def _outcome[R](fn: Callable[[], R]) -> R | Exception:
    """The result, or the exception raised: lets a parallel batch finish every item before deciding."""
    try:
        return fn()
    except Exception as exc:
        return exc


def _condition_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) in {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    }


class Ledger:
    def __init__(
        self,
        table_name: str,
        *,
        lease_seconds: int = 1200,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.model = ledger_model(table_name)
        self.lease_seconds = lease_seconds
        self._wall_clock = wall_clock
        self._sleep = sleep

    # -- reads -------------------------------------------------------------------------------------------

    def sent(self, keys: Iterable[str]) -> dict[str, datetime]:
        """For each key that was ever sent, when it was last sent: the sending run's ``as_of``
        (BatchGetItem, 100 keys a call)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        return {
            record.pk: record.sent_at
            for record in self.model.batch_get(unique, attributes_to_get=["pk", "sent_at"])
            if record.sent_at is not None  # a re-claimed recurring record keeps its last send
        }

    def states(self, keys: Iterable[str]) -> dict[str, str]:
        """``claimed`` or ``sent`` for each key that has a record (strongly consistent reads)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        records = self.model.batch_get(unique, consistent_read=True, attributes_to_get=["pk", "state"])
        return {r.pk: r.state for r in records}

    def get(self, key: str) -> LedgerRecord | None:
        try:
            return self.model.get(key, consistent_read=True)
        except self.model.DoesNotExist:
            return None

    # -- the protocol ------------------------------------------------------------------------------------

    def claim(self, key: str, **request: Any) -> Claim | None:
        """Take ``key`` for this worker, or return None if someone else holds it or it is already sent.

        ``request``: kind, run_id, expires_at, and optionally enterprise_customer_uuid, subject_uuid,
        resend_if_sent_before (recurring notifications: a send whose ``as_of`` is older than this may be
        sent again).
        """
        actions, condition, claim = self._claim_write(key, **request)
        try:
            self.model(key).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if _condition_failed(exc):
                return None
            raise
        return claim

    def mark_sent(self, claim: Claim, *, as_of: datetime, run_id: str, dispatch_id: str) -> bool:
        """Record the send. False (and an error log) if the claim was lost, which a lease longer than the
        worker timeout rules out in practice."""
        actions, condition = self._mark_write(claim, as_of=as_of, run_id=run_id, dispatch_id=dispatch_id)
        try:
            # Braze has already accepted this send: try harder than botocore's own retries before giving up,
            # since an unmarked claim becomes claimable again once its lease runs out.
            for attempt in Retrying(
                retry=retry_if_exception(lambda exc: isinstance(exc, UpdateError) and not _condition_failed(exc)),
                stop=stop_after_attempt(MARK_ATTEMPTS) | stop_after_delay(MARK_BUDGET_SECONDS),
                wait=wait_exponential_jitter(multiplier=0.2, max=5),
                sleep=self._sleep,
                reraise=True,
            ):
                with attempt:
                    self.model(claim.key).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if _condition_failed(exc):
                logger.error("ledger claim lost before mark_sent", extra={"ledger_key": claim.key})
                return False
            raise
        return True

    def _claim_write(
        self,
        key: str,
        *,
        kind: str,
        run_id: str,
        expires_at: datetime,
        enterprise_customer_uuid: str | None = None,
        subject_uuid: str | None = None,
        resend_if_sent_before: datetime | None = None,
    ) -> tuple[list[Any], Any, Claim]:
        model = self.model
        now = self._wall_clock()
        token = f"{run_id}:{secrets.token_hex(8)}"
        condition = model.pk.does_not_exist() | (model.state.is_in(CLAIMED, REJECTED) & (model.lease_until < now))
        if resend_if_sent_before is not None:
            condition = condition | ((model.state == SENT) & (model.sent_at < resend_if_sent_before))
        actions = [
            model.kind.set(kind),
            model.state.set(CLAIMED),
            model.claim_token.set(token),
            model.lease_until.set(int(now) + self.lease_seconds),
            model.claimed_by_run.set(run_id),
            model.expires_at.set(expires_at),
            model.note.remove(),
        ]
        if enterprise_customer_uuid:
            actions.append(model.enterprise_customer_uuid.set(enterprise_customer_uuid))
        if subject_uuid:
            actions.append(model.subject_uuid.set(subject_uuid))
        return actions, condition, Claim(key, token)

    def _mark_write(self, claim: Claim, *, as_of: datetime, run_id: str, dispatch_id: str) -> tuple[list[Any], Any]:
        model = self.model
        actions = [
            model.state.set(SENT),
            model.sent_at.set(as_of),
            model.recorded_at.set(datetime.fromtimestamp(self._wall_clock(), UTC)),
            model.run_id.set(run_id),
            model.dispatch_id.set(dispatch_id),
            model.claim_token.remove(),
            model.lease_until.remove(),
            model.claimed_by_run.remove(),
        ]
        return actions, model.claim_token == claim.token

    def release(self, claim: Claim) -> None:
        """Give the key back after a failed send: delete a first-time claim, or restore the previous send
        of a recurring one (its ``sent_at`` stays, so the cadence is unchanged)."""
        model = self.model
        try:
            model(claim.key).delete(condition=(model.claim_token == claim.token) & model.sent_at.does_not_exist())
            return
        except DeleteError as exc:
            if not _condition_failed(exc):
                raise
        try:
            model(claim.key).update(
                actions=[
                    model.state.set(SENT),
                    model.claim_token.remove(),
                    model.lease_until.remove(),
                    model.claimed_by_run.remove(),
                ],
                condition=model.claim_token == claim.token,
            )
        except UpdateError as exc:
            if not _condition_failed(exc):
                raise
            logger.warning("ledger claim already gone at release", extra={"ledger_key": claim.key})

    def hold(self, claim: Claim, *, seconds: int, reason: str) -> None:
        """Keep the key from every run for ``seconds`` (wall clock) after Braze refused it: state ``rejected``
        with a lease; once it runs out any run may claim the key again. A previous send (``sent_at``) stays."""
        model = self.model
        try:
            model(claim.key).update(
                actions=[
                    model.state.set(REJECTED),
                    model.lease_until.set(int(self._wall_clock()) + seconds),
                    model.note.set(reason),
                    model.claim_token.remove(),
                ],
                condition=model.claim_token == claim.token,
            )
        except UpdateError as exc:
            if not _condition_failed(exc):
                raise
            logger.warning("ledger claim already gone at hold", extra={"ledger_key": claim.key})

    # -- batches: each item is its own conditional write (so each key is decided on its own), run in parallel.
    # TransactWriteItems would make a batch one request, but one held key cancels the whole transaction.

    def claim_many(self, requests: Sequence[dict[str, Any]]) -> list[Claim | None]:
        """Claim each key; if any write errors, give back the claims already taken, then raise."""
        results = self._parallel(lambda request: _outcome(lambda: self.claim(**request)), requests)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.release_many([r for r in results if isinstance(r, Claim)])
            raise errors[0]
        return results

    def mark_sent_many(self, claims: Sequence[Claim], *, as_of: datetime, run_id: str, dispatch_id: str) -> int:
        marks = {"as_of": as_of, "run_id": run_id, "dispatch_id": dispatch_id}
        return sum(1 for ok in self._parallel(lambda c: self.mark_sent(c, **marks), claims) if ok)

    def release_many(self, claims: Sequence[Claim]) -> None:
        self._parallel(self.release, claims)

    def hold_many(self, claims: Sequence[Claim], *, seconds: int, reason: str) -> None:
        self._parallel(lambda claim: self.hold(claim, seconds=seconds, reason=reason), claims)

    def _parallel[T, R](self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(_WRITE_WORKERS, len(items))) as pool:
            return list(pool.map(fn, items))
