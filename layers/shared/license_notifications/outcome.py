"""What processing one enterprise produced: counts for logs, metrics, reports and the exit status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from license_notifications.events import Job


@dataclass(frozen=True)
class Failure:
    """One failed unit of work (an enterprise, or one Braze batch of recipients), named well enough for an
    operator and for the error notification."""

    job: Job
    enterprise_customer_uuid: str
    error: str
    subject_kind: str | None = None  # "license" or "admin" when the failure concerns recipients
    subjects: tuple[str, ...] = ()  # their license uuids / admin ids
    retry: bool = True  # worth delivering the work message again (False: a redelivery cannot change it)

    @property
    def count(self) -> int:
        return len(self.subjects)


@dataclass
class EnterpriseOutcome:
    job: Job
    enterprise_customer_uuid: str
    dry_run: bool = False
    due: int = 0
    sent: int = 0
    would_send: int = 0
    failed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    sent_by_type: Counter[str] = field(default_factory=Counter)  # utilization: per notification type
    rejected: int = 0  # refused by Braze (of ``failed``)
    unrecorded: int = 0  # sent but not recorded in the ledger (of ``failed``)
    malformed: int = 0  # upstream records that did not parse (of ``failed``)
    warned: int = 0  # accepted by Braze with a non-fatal error naming them (of ``sent``)
    handed_on: int = 0  # continuation messages this pass handed the rest of the run on in
    braze_requests: int = 0
    error: str | None = None  # the enterprise as a whole failed (e.g. an upstream API error)
    failures: list[Failure] = field(default_factory=list)
    problems: list[Failure] = field(default_factory=list)  # notified, but sent (e.g. Braze's non-fatal errors)

    @property
    def ok(self) -> bool:
        """Nothing failed (the CLI's exit status; the problems are reported, they are not failures)."""
        return self.error is None and self.failed == 0

    @property
    def needs_redelivery(self) -> bool:
        """Something failed that delivering the work message again may still send (the worker raises for it);
        refused recipients, malformed records, unconfirmed or unrecorded sends cannot change by retrying now."""
        return self.error is not None or any(f.retry for f in self.failures)

    def counts(self) -> dict[str, object]:
        """The figures of the completion log line."""
        return {
            "due": self.due,
            "sent": self.sent,
            "would_send": self.would_send,
            "failed": self.failed,
            "rejected": self.rejected,
            "unrecorded": self.unrecorded,
            "malformed": self.malformed,
            "warned": self.warned,
            "handed_on": self.handed_on,
            "skipped": dict(self.skipped),
            "sent_by_type": dict(self.sent_by_type),
            "braze_requests": self.braze_requests,
            "error": self.error,
        }

    def fail(
        self, error: str, *, subject_kind: str, subjects: list[str], retry: bool = True, count: int | None = None
    ) -> None:
        """A batch of recipients failed (one Failure for the batch, naming ``subjects``; ``count`` of them
        failed, all of them unless given)."""
        self.failed += len(subjects) if count is None else count
        self.failures.append(
            Failure(self.job, self.enterprise_customer_uuid, error, subject_kind, tuple(subjects), retry=retry)
        )

    def warn(self, error: str, *, subject_kind: str, subjects: list[str]) -> None:
        """Sent, but something about these recipients needs an operator's eye (notified, not failed)."""
        self.warned += len(subjects)
        self.problems.append(Failure(self.job, self.enterprise_customer_uuid, error, subject_kind, tuple(subjects)))

    def fail_enterprise(self, error: str) -> None:
        self.error = error
        self.failures.append(Failure(self.job, self.enterprise_customer_uuid, error))


@dataclass
class RunSummary:
    """Totals over the enterprises of one run (the CLI's and the demo's report)."""

    job: Job
    run_id: str
    outcomes: list[EnterpriseOutcome] = field(default_factory=list)
    invalid_uuids: list[str] = field(default_factory=list)

    def add(self, outcome: EnterpriseOutcome) -> None:
        self.outcomes.append(outcome)

    @property
    def sent(self) -> int:
        return sum(o.sent for o in self.outcomes)

    @property
    def failed(self) -> int:
        """Failed recipients plus failed enterprises (the spec counts a failed enterprise as a failure)."""
        return sum(o.failed + (1 if o.error else 0) for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)
