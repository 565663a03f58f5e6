"""One Braze batch, end to end: the steps both jobs share, in one place.

For each batch of at most 50 deliveries (a recipient plus the ledger key that keeps it sent once):

1. out of time? stop before anything is claimed (the message is delivered again and the next attempt goes on);
2. dry run? log what would be sent, count it, stop;
3. claim every key in the ledger; keys held elsewhere are skipped (a job may drop more, e.g. the 75 % / 100 %
   ordering of the utilization emails);
4. create the Braze aliases (learners), then trigger the campaign. A request Braze refuses with a 400 (one
   bad recipient refuses the whole request) is narrowed down: split in halves and each half tried again,
   until the refused recipients stand alone. Everyone else is sent in the same run; isolating one refused
   recipient of 50 costs at most 2 x ceil(log2(50)) = 12 extra requests.
5. record each accepted request in the ledger (sent time = the run's ``as_of``, Braze's dispatch id), or
   settle every other outcome so no claim is left behind:

   - refused alone: held back in the ledger for ``REJECTED_HOLD`` (a later run retries it once that has
     passed: a permanently refused recipient costs one narrowed batch a day, not a failed batch every hour),
     named in the error notification and counted as failed;
   - a transient failure that outlived its retries: released (retried by the message's redelivery or the
     next run), counted as failed;
   - no reply to a send that went out: recorded as sent ``unconfirmed`` (a retry could deliver twice), named
     and counted as failed, not redelivered;
   - accepted but not recorded in the ledger: counted as failed (it may be sent again once its claim's lease
     runs out), named;
   - accepted with a non-fatal ``errors`` list: recorded as sent (the others in the request were delivered);
     the recipients the errors name are reported (notification, metric, warning), masked.

More than ``MAX_REJECTED_PER_BATCH`` recipients refused one by one means the request itself is wrong (a
campaign, a payload), not the recipients: the batch's claims are all released and the enterprise stops.
Bad credentials and bugs stop the enterprise too, after releasing what this batch still held.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from license_notifications.adapters.braze import Recipient, SendResult, UserAlias, attribute_errors
from license_notifications.adapters.ledger import Claim
from license_notifications.errors import (
    AmbiguousOutcomeError,
    BadRequestError,
    MalformedResponseError,
    NotFoundError,
    TransientUpstreamError,
    UpstreamError,
)
from license_notifications.observability import mask_emails
from license_notifications.outcome import EnterpriseOutcome

REJECTED_HOLD = timedelta(hours=24)
MAX_REJECTED_PER_BATCH = 5
_SUBJECT_LABELS = {"license": "license uuid", "admin": "admin id"}  # how a log line names a Delivery's subject


class OutOfTimeError(Exception):
    """The invocation is about to hit its timeout: stop before the next Braze request, with nothing in flight.
    The enterprise counts as failed, so SQS delivers its message again and the next attempt continues."""


class BatchRejectedError(UpstreamError):
    """Braze refused more recipients of one batch than a batch plausibly holds bad ones: the request is wrong."""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One recipient of one campaign: what to claim, what to send, and how to name it in logs."""

    subject: str  # the license uuid or admin id, as failures and notifications name it
    claim: Mapping[str, Any]  # a ledger claim request (``key``, ``kind``, ``run_id``, ``expires_at``, ...)
    recipient: Recipient
    description: str  # "license expiration reminder to j***@example.com for license ... expiring on ..."
    alias: UserAlias | None = None  # created before the trigger (learners)
    log_extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    trigger_properties: Mapping[str, Any] | None = None
    sent_type: str | None = None  # counted in ``outcome.sent_by_type`` under this name


Taken = tuple[Delivery, Claim]


class BatchSender:
    """Sends one enterprise's batches for one job run (see the module docstring for the steps)."""

    def __init__(
        self,
        job: Any,  # EnterpriseJob: braze, ledger, logger
        run: Any,  # JobRun: run_id, as_of, dry_run, out_of_time()
        outcome: EnterpriseOutcome,
        *,
        subject_kind: str,
        after_claim: Callable[[list[Taken]], list[Taken]] | None = None,
    ):
        self.braze = job.braze
        self.ledger = job.ledger
        self.logger: logging.Logger = job.logger
        self.run = run
        self.outcome = outcome
        self.subject_kind = subject_kind
        self.after_claim = after_claim
        self.where = {"enterprise_customer_uuid": outcome.enterprise_customer_uuid}

    def send(self, campaign: Campaign, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        self._check_time(f"before a batch of {len(deliveries)}")
        if self.run.dry_run:
            for delivery in deliveries:
                self.logger.info("[dry run] Would send %s", delivery.description, extra=self._extra(delivery))
            self.outcome.would_send += len(deliveries)
            return
        taken = self._claim(deliveries)
        if taken:
            _Batch(self, campaign, taken).deliver()

    def _claim(self, deliveries: Sequence[Delivery]) -> list[Taken]:
        claims = self.ledger.claim_many([dict(d.claim) for d in deliveries])
        taken = [(d, c) for d, c in zip(deliveries, claims, strict=True) if c is not None]
        if len(taken) < len(deliveries):
            self.outcome.skipped["claimed_elsewhere"] += len(deliveries) - len(taken)
        if taken and self.after_claim is not None:
            taken = self.after_claim(taken)
        return taken

    def _check_time(self, where: str) -> None:
        if self.run.out_of_time():
            raise OutOfTimeError(f"stopped {where}: the invocation's time is nearly up")

    def _extra(self, delivery: Delivery, **more: Any) -> dict[str, Any]:
        return {**self.where, **delivery.log_extra, **more}


class _Batch:
    """One batch's claims from claim to settlement; every claim ends recorded, held or released."""

    def __init__(self, sender: BatchSender, campaign: Campaign, taken: list[Taken]):
        self.s = sender
        self.campaign = campaign
        self.taken = taken
        self.unsettled: dict[str, Taken] = {claim.key: (delivery, claim) for delivery, claim in taken}
        self.rejected: list[tuple[Taken, str]] = []

    def deliver(self) -> None:
        try:
            ready = self._with_aliases()
            if ready:
                self._narrow(ready, self._trigger, "trigger")
        except BatchRejectedError as exc:  # not the recipients: give every claim back, nothing is held
            stopped = [entry for entry, _ in self.rejected] + list(self.unsettled.values())
            self.rejected.clear()
            self._fail(stopped, "the batch", exc)
            raise
        except OutOfTimeError:  # given back uncounted: the hand-off or the message's redelivery sends them
            self._release_all([claim for _, claim in self.unsettled.values()])
            raise
        except BaseException as exc:  # stops the enterprise: what this batch still holds is given back
            self._fail(list(self.unsettled.values()), "the batch", exc)
            raise
        finally:
            self._report_rejected()

    def _with_aliases(self) -> list[Taken]:
        """Create the aliases the deliveries need; returns the deliveries ready to trigger, in order."""
        with_alias = [t for t in self.taken if t[0].alias is not None]
        if not with_alias:
            return list(self.taken)
        aliased = {id(entry) for entry in self._narrow(with_alias, self._create_aliases, "alias creation")}
        return [t for t in self.taken if t[0].alias is None or id(t) in aliased]

    # -- the Braze calls -----------------------------------------------------------------------------------

    def _create_aliases(self, group: list[Taken]) -> None:
        self.s.braze.create_aliases([d.alias for d, _ in group if d.alias is not None])

    def _trigger(self, group: list[Taken]) -> None:
        result = self.s.braze.trigger_campaign(
            self.campaign.campaign_id,
            [d.recipient for d, _ in group],
            trigger_properties=self.campaign.trigger_properties,
        )
        self._record(group, result)

    # -- narrowing -----------------------------------------------------------------------------------------

    def _narrow(self, group: list[Taken], call: Callable[[list[Taken]], None], step: str) -> list[Taken]:
        """``call`` on ``group``; a 400 splits it in halves (depth first, in order) until the refused stand
        alone. Returns the entries whose call succeeded."""
        accepted: list[Taken] = []
        stack = [group]
        while stack:
            part = stack.pop()
            self.s._check_time(f"before a Braze request for {len(part)} recipient(s)")
            try:
                call(part)
            except BadRequestError as exc:
                if len(part) > 1:
                    middle = (len(part) + 1) // 2
                    stack.extend((part[middle:], part[:middle]))
                    continue
                self._reject(part[0], step, exc)
                continue
            except AmbiguousOutcomeError as exc:
                self._unconfirmed(part, exc)
                continue
            except UpstreamError as exc:
                if not _batch_local(exc):
                    raise
                self._fail(part, step, exc)
                continue
            accepted.extend(part)
        return accepted

    # -- settling ------------------------------------------------------------------------------------------

    def _settled(self, group: Sequence[Taken]) -> None:
        for _, claim in group:
            self.unsettled.pop(claim.key, None)

    def _reject(self, entry: Taken, step: str, exc: Exception) -> None:
        self._settled([entry])
        self.rejected.append((entry, f"{step}: {exc}"))
        if len(self.rejected) > MAX_REJECTED_PER_BATCH:
            raise BatchRejectedError(
                "braze",
                f"refused {len(self.rejected)} recipients of one batch one by one ({step}): the request itself "
                f"is likely wrong (campaign {self.campaign.campaign_id!r}, payload), not the recipients",
            )

    def _report_rejected(self) -> None:
        if not self.rejected:
            return
        self.s.ledger.hold_many(
            [claim for (_, claim), _ in self.rejected], seconds=int(REJECTED_HOLD.total_seconds()), reason="rejected"
        )
        subjects = [delivery.subject for (delivery, _), _ in self.rejected]
        reasons = "; ".join(f"{delivery.subject}: {reason}" for (delivery, _), reason in self.rejected)
        error = mask_emails(f"Braze refused {len(subjects)} recipient(s), sent the rest of the batch: {reasons}")
        self.s.logger.error(
            "%s (held back for %s before a later run retries them)",
            error,
            REJECTED_HOLD,
            extra={**self.s.where, f"{self.s.subject_kind}_ids": subjects},
        )
        self.s.outcome.fail(error, subject_kind=self.s.subject_kind, subjects=subjects, retry=False)
        self.s.outcome.rejected += len(subjects)
        self.rejected.clear()

    def _fail(self, group: list[Taken], step: str, exc: BaseException) -> None:
        """Release ``group`` and count it as failed (a later run, or the message's redelivery, retries it)."""
        if not group:
            return
        self._release_all([claim for _, claim in group])
        subjects = [d.subject for d, _ in group]
        error = f"{type(exc).__name__}: {exc}"
        self.s.logger.error(
            "Failed %s for %d recipient(s): %s",
            step,
            len(group),
            error,
            exc_info=exc if isinstance(exc, Exception) else None,
            extra={**self.s.where, f"{self.s.subject_kind}_ids": subjects},
        )
        self.s.outcome.fail(error, subject_kind=self.s.subject_kind, subjects=subjects)

    def _unconfirmed(self, group: list[Taken], exc: Exception) -> None:
        subjects = [d.subject for d, _ in group]
        self.s.logger.error(
            "Braze outcome unknown for %d recipient(s): %s; recorded as sent to avoid a duplicate",
            len(group),
            exc,
            extra={**self.s.where, f"{self.s.subject_kind}_ids": subjects},
        )
        marked = self._mark(group, f"unconfirmed:{self.s.run.run_id}")
        self.s.outcome.unrecorded += len(group) - marked  # those may be sent again once their lease runs out
        recorded = "recorded as sent" if marked == len(group) else f"{marked} of {len(group)} recorded as sent"
        self.s.outcome.fail(
            f"{type(exc).__name__}: {exc} ({recorded}, not retried: check Braze's delivery log)",
            subject_kind=self.s.subject_kind,
            subjects=subjects,
            retry=False,
        )

    def _record(self, group: list[Taken], result: SendResult) -> None:
        marked = self._mark(group, result.dispatch_id)
        outcome = self.s.outcome
        outcome.sent += len(group)
        if self.campaign.sent_type:
            outcome.sent_by_type[self.campaign.sent_type] += len(group)
        for delivery, _ in group:
            self.s.logger.info(
                "Successfully sent %s",
                delivery.description,
                extra=self.s._extra(delivery, dispatch_id=result.dispatch_id),
            )
        if marked < len(group):
            subjects = [d.subject for d, _ in group]
            outcome.unrecorded += len(group) - marked
            outcome.fail(
                f"sent (dispatch {result.dispatch_id}) but {len(group) - marked} of {len(group)} not recorded in "
                "the ledger: they may be sent again once their claim's lease runs out",
                subject_kind=self.s.subject_kind,
                subjects=subjects,  # the request's: which of them went unrecorded is not known here
                retry=False,
                count=len(group) - marked,
            )
        if result.errors:
            self._report_minor_errors(group, result)

    def _mark(self, group: list[Taken], dispatch_id: str) -> int:
        """Record ``group`` as sent; returns how many records were written (errors logged, never raised)."""
        self._settled(group)
        claims = [claim for _, claim in group]
        try:
            return self.s.ledger.mark_sent_many(
                claims, as_of=self.s.run.as_of, run_id=self.s.run.run_id, dispatch_id=dispatch_id
            )
        except Exception as exc:
            self.s.logger.exception(
                "Sent %d recipient(s) (dispatch %s) but could not record it: %s",
                len(group),
                dispatch_id,
                exc,
                extra={**self.s.where, f"{self.s.subject_kind}_ids": [d.subject for d, _ in group]},
            )
            return 0

    def _report_minor_errors(self, group: list[Taken], result: SendResult) -> None:
        """Braze accepted the request but listed non-fatal errors: one warning line and one notification that
        name the recipients concerned by license uuid / admin id in their text (what an operator looks up),
        each with the error naming it; all of the request's recipients when the errors name none."""
        texts = [e if isinstance(e, str) else repr(e) for e in result.errors]
        by_index = attribute_errors(result.errors, [d.recipient for d, _ in group])
        label = _SUBJECT_LABELS.get(self.s.subject_kind, f"{self.s.subject_kind} id")
        if by_index:
            named = [group[i][0].subject for i in sorted(by_index)]
            which = f"{len(named)} recipient(s), {label}(s) {', '.join(named)}"
            attributed = set(by_index.values())
            details = [f"{group[i][0].subject}: {by_index[i]}" for i in sorted(by_index)]
            details += [text for text in texts if text not in attributed]  # entries naming nobody, kept
        else:
            named = [d.subject for d, _ in group]
            which = (
                f"the request's {len(named)} recipient(s) (the errors name none of them), {label}(s) {', '.join(named)}"
            )
            details = texts
        errors = mask_emails("; ".join(details))[:1000]
        message = f"Braze accepted dispatch {result.dispatch_id} with errors for {which}: {errors}"
        self.s.logger.warning(message, extra={**self.s.where, f"{self.s.subject_kind}_ids": named})
        self.s.outcome.warn(message, subject_kind=self.s.subject_kind, subjects=named)

    def _release_all(self, claims: list[Claim]) -> None:
        if not claims:
            return
        for claim in claims:
            self.unsettled.pop(claim.key, None)
        try:
            self.s.ledger.release_many(claims)
        except Exception:  # the claims' lease lets a later run take them
            self.s.logger.exception("could not release %d ledger claim(s)", len(claims), extra=self.s.where)


def _batch_local(exc: UpstreamError) -> bool:
    """A failure that concerns this request only (the next batch may well succeed): transient errors that
    outlived their retries, an unknown resource, a malformed reply. Bad credentials, refused redirects and
    anything else stop the enterprise."""
    return isinstance(exc, TransientUpstreamError | NotFoundError | MalformedResponseError)
