"""What both learner jobs share (the expiration reminders, the post-expiration emails): one enterprise's pass over
the activated licenses of its plans in the job's window, in Braze batches of 50.

For one enterprise: the customer agreement (none: the enterprise fails, naming the likely missing role; opted
out of expiration notifications: skipped and logged), its plans in the job's window, their licenses streamed
one license-manager page (<= 500) at a time, the due ones sent through ``jobs/pipeline.py`` (one
``/users/alias/new`` and one ``/campaigns/trigger/send`` request per 50 emails), a giant enterprise shared in
continuation messages, and the rest handed on when the invocation's time runs out. A job says which plans are
in its window, how one license is decided, its ledger record and its email's day count (``EnterpriseLicenses``);
the rest is here, the payload included (alias label ``Enterprise``, name = email; attributes ``email`` and
``enterprise_default_language``; the plan's and the enterprise's trigger properties, and ``license_uuid``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from license_notifications.adapters.braze import MAX_RECIPIENTS_PER_REQUEST, Recipient, UserAlias, braze_datetime
from license_notifications.adapters.license_manager import LicensePage
from license_notifications.jobs.enterprise_run import EnterpriseJob, JobRun, PagesPart, malformed_reporter
from license_notifications.jobs.pipeline import BatchSender, Campaign, Delivery, OutOfTimeError
from license_notifications.models import CustomerAgreement, EnterpriseCustomer, License, SubscriptionPlan
from license_notifications.outcome import EnterpriseOutcome

PAGES_PER_MESSAGE = 4  # a large enterprise is shared in messages of this many license pages (2,000 licenses)
OPTED_OUT = "opted_out"  # the skip reason of an enterprise whose agreement disables expiration notifications
DUE = "due"  # the decision of a due license (each job's decision enum has it)


class LicenseEmailJob(EnterpriseJob):
    """A learner job: one email per due license, through one Braze campaign. ``enterprise_pass`` makes the job's
    ``EnterpriseLicenses`` for one enterprise."""

    def __init__(self, *, campaign_id: str, **adapters: Any):
        super().__init__(**adapters)
        self.campaign_id = campaign_id

    def enterprise_pass(self, enterprise_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> EnterpriseLicenses:
        raise NotImplementedError

    def process(self, enterprise_customer_uuid: str, run: JobRun, outcome: EnterpriseOutcome) -> None:
        self.enterprise_pass(enterprise_customer_uuid, run, outcome).process()


class EnterpriseLicenses:
    """One enterprise's pass for a learner job; holds the agreement and the lazily fetched enterprise customer.
    A job sets its ledger record (``ledger_key``, ``ledger_kind``, ``record_retention``) and its email's name in
    the logs (``email_name``, ``expiry_verb``), and overrides ``in_window``, ``decide`` and ``day_count``."""

    ledger_key: Callable[[UUID | str], str]
    ledger_kind: str
    record_retention: timedelta
    email_name: str  # "license expiration reminder"
    expiry_verb: str  # "expiring" (on the plan's expiration date)

    def __init__(self, job: LicenseEmailJob, enterprise_uuid: str, run: JobRun, outcome: EnterpriseOutcome):
        self.job = job
        self.logger = job.logger
        self.enterprise_uuid = enterprise_uuid
        self.run = run
        self.outcome = outcome
        self.where = {"enterprise_customer_uuid": enterprise_uuid}
        self.sender = BatchSender(job, run, outcome, subject_kind="license")
        self.campaign = Campaign(job.campaign_id)
        self.agreement: CustomerAgreement | None = None
        self.unreadable_plans = 0  # plans of the agreement that did not parse (reported, counted as malformed)
        self._customer: EnterpriseCustomer | None = None

    # -- what a job decides --------------------------------------------------------------------------------------

    def in_window(self, plan: SubscriptionPlan) -> bool:
        """Whether the plan's licenses may be due (the job's plan window)."""
        raise NotImplementedError

    def decide(self, plan: SubscriptionPlan, lic: License, *, already_sent: bool) -> str:
        """The job's decision for one license of ``plan``: ``DUE`` or a skip reason."""
        raise NotImplementedError

    def day_count(self, plan: SubscriptionPlan) -> dict[str, int]:
        """The email's day count trigger property (``days_until_expiration``, ``days_since_expiration``)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------------------

    def due_licenses(self, plan: SubscriptionPlan, page: list[License]) -> list[License]:
        """The page's due licenses (the ledger read once for the page); the others are counted by skip reason."""
        sent = self.job.ledger.sent(self.ledger_key(lic.uuid) for lic in page)
        due = []
        for lic in page:
            decision = self.decide(plan, lic, already_sent=self.ledger_key(lic.uuid) in sent)
            if decision == DUE:
                due.append(lic)
            else:
                self.outcome.skipped[decision] += 1
        self.outcome.due += len(due)
        return due

    def delivery(self, plan: SubscriptionPlan, lic: License) -> Delivery:
        """What a due license is sent (as license-manager sends it, plus ``license_uuid``), and its ledger claim."""
        email = lic.user_email or ""
        customer = self.customer  # fetched once, before anything is claimed: an unknown enterprise holds nothing
        return Delivery(
            subject=str(lic.uuid),
            claim={
                "key": self.ledger_key(lic.uuid),
                "kind": self.ledger_kind,
                "run_id": self.run.run_id,
                "expires_at": plan.expiration_date + self.record_retention,
                "enterprise_customer_uuid": self.enterprise_uuid,
                "subject_uuid": str(lic.uuid),
            },
            alias=UserAlias(email),
            recipient=Recipient(
                user_alias=UserAlias(email),
                attributes={"email": email, "enterprise_default_language": customer.default_language},
                trigger_properties={
                    "license_uuid": str(lic.uuid),
                    "expiration_date": braze_datetime(plan.expiration_date),
                    **self.day_count(plan),
                    "subscription_plan_title": plan.title,
                    "enterprise_customer_name": customer.name,
                    "enterprise_customer_slug": customer.slug,
                    "enterprise_sender_alias": customer.sender_alias_or_default,
                    "enterprise_contact_email": customer.contact_email,
                },
            ),
            description=(
                f"{self.email_name} to {self.job.emails(email)} for license {lic.uuid} "
                f"{self.expiry_verb} on {plan.expiration_date.date().isoformat()}"
            ),
            log_extra={"license_uuid": str(lic.uuid)},
        )

    @property
    def customer(self) -> EnterpriseCustomer:
        if self._customer is None:
            self._customer = self.job.lms.enterprise_customer(self.enterprise_uuid)
        return self._customer

    def process(self) -> None:
        malformed_before = self.outcome.malformed
        agreement = self.job.license_manager.customer_agreement(
            self.enterprise_uuid, on_malformed=malformed_reporter(self.logger, self.outcome, "plan", "uuid")
        )
        self.unreadable_plans = self.outcome.malformed - malformed_before
        if agreement is None:
            # On the real license-manager a service account without the enterprise_openedx_operator:* role
            # gets an empty 200, not a 403 (contract 2.4): never take "no agreement" for "nothing to do".
            self.outcome.fail_enterprise(
                f"license-manager returned no customer agreement for enterprise {self.enterprise_uuid}: the "
                "service account likely lacks the enterprise_openedx_operator:* role (missing permissions answer "
                "an empty 200), or the enterprise has no agreement"
            )
            return
        if agreement.disable_expiration_notifications:
            self.outcome.skipped[OPTED_OUT] += 1
            self.logger.info(
                "Skipping enterprise %s: its customer agreement disables expiration notifications",
                self.enterprise_uuid,
                extra={"enterprise_customer_uuid": self.enterprise_uuid, "skip_reason": OPTED_OUT},
            )
            return
        self.agreement = agreement
        plans = {str(plan.uuid): plan for plan in agreement.subscriptions if self.in_window(plan)}
        parts = [self.run.part] if self.run.part else [PagesPart(uuid) for uuid in plans]
        LicensePass(self, plans, parts).read_all()


class LicensePass:
    """Reads the parts' license pages in order and sends the due ones in Braze batches of 50. Due licenses wait
    in ``pending`` until a batch is full, across pages and plans (recipients carry their own plan data), so an
    enterprise costs 2 Braze requests per 50 emails plus one final partial batch.

    A large enterprise is shared: a whole-enterprise message whose plan has more than ``PAGES_PER_MESSAGE``
    pages keeps the first ones and hands the rest on (``run.handoff``) as continuation messages of the same
    run, which parallel workers take. And when the time runs out, the rest (from the oldest unsent page) is
    handed on instead of failing; without ``handoff`` the run stops with OutOfTimeError (SQS redelivers it)."""

    def __init__(self, enterprise: EnterpriseLicenses, plans: dict[str, SubscriptionPlan], parts: list[PagesPart]):
        self.r = enterprise
        self.logger = enterprise.logger
        self.run = enterprise.run
        self.plans = plans
        self.parts = list(parts)
        self.pending: list[tuple[PagesPart, int, Delivery]] = []  # (part, page number, delivery)

    def read_all(self) -> None:
        on_malformed = malformed_reporter(self.logger, self.r.outcome, "license", "uuid")
        for index, part in enumerate(self.parts):
            plan = self.plans.get(part.plan_uuid)
            if plan is None:  # a continuation whose plan left the window (or the agreement) meanwhile
                self.logger.info("Plan %s is no longer due: nothing to continue", part.plan_uuid, extra=self.r.where)
                continue
            if not self.read_part(part, plan, on_malformed, later=self.parts[index + 1 :]):
                return  # handed on
        try:
            self.send_full_batches(final=True)
        except OutOfTimeError:
            if self.run.handoff is None:
                raise
            self.hand_on(None, None, [])

    def read_part(self, part: PagesPart, plan: SubscriptionPlan, on_malformed: Any, later: list[PagesPart]) -> bool:
        """Read one part's pages; False when the time ran out and the rest was handed on."""
        pages = self.r.job.license_manager.license_pages(
            plan.uuid, on_malformed=on_malformed, first_page=part.first_page, last_page=part.last_page
        )
        for page in pages:
            part = self.split_if_large(part, page)
            try:
                self.read(part, plan, page)
                if self.run.out_of_time():  # nothing is claimed for what waits in ``pending``
                    raise OutOfTimeError("stopped between license pages: the invocation's time is nearly up")
            except OutOfTimeError:
                if self.run.handoff is None:
                    raise
                at_end = page.num_pages is not None and page.number >= page.num_pages
                self.hand_on(part, None if at_end else page.number + 1, later)
                return False
            if part.last_page is not None and page.number >= part.last_page:
                break  # the rest of the plan was handed on
        return True

    def read(self, part: PagesPart, plan: SubscriptionPlan, page: LicensePage) -> None:
        due = self.r.due_licenses(plan, page)
        self.logger.info(
            "Found %d licenses to process for enterprise %s",
            len(due),
            self.r.enterprise_uuid,
            extra={**self.r.where, "subscription_plan_uuid": str(plan.uuid), "page": page.number},
        )
        self.pending.extend((part, page.number, self.r.delivery(plan, lic)) for lic in due)
        self.send_full_batches()

    def send_full_batches(self, *, final: bool = False) -> None:
        while len(self.pending) >= MAX_RECIPIENTS_PER_REQUEST or (final and self.pending):
            batch = self.pending[:MAX_RECIPIENTS_PER_REQUEST]
            self.r.sender.send(self.r.campaign, [delivery for _, _, delivery in batch])
            del self.pending[:MAX_RECIPIENTS_PER_REQUEST]

    def split_if_large(self, part: PagesPart, page: LicensePage) -> PagesPart:
        """On a whole-enterprise message's first page of a plan: keep ``PAGES_PER_MESSAGE`` pages, hand the
        rest on in parts of that many pages (the last one open-ended: the list may grow meanwhile)."""
        whole = self.run.part is None and part.first_page == 1 and part.last_page is None and page.number == 1
        if not (whole and self.run.handoff and page.num_pages and page.num_pages > PAGES_PER_MESSAGE):
            return part
        starts = range(PAGES_PER_MESSAGE + 1, page.num_pages + 1, PAGES_PER_MESSAGE)
        rest = [PagesPart(part.plan_uuid, first, first + PAGES_PER_MESSAGE - 1) for first in starts]
        rest[-1] = PagesPart(part.plan_uuid, rest[-1].first_page, None)
        self.run.handoff(rest)
        self.r.outcome.handed_on += len(rest)
        self.logger.info(
            "Plan %s has %d pages of licenses: handing pages %d..%d on in %d message(s)",
            part.plan_uuid,
            page.num_pages,
            PAGES_PER_MESSAGE + 1,
            page.num_pages,
            len(rest),
            extra=self.r.where,
        )
        return PagesPart(part.plan_uuid, 1, PAGES_PER_MESSAGE)

    def hand_on(self, current: PagesPart | None, next_page: int | None, later: list[PagesPart]) -> None:
        """Out of time: hand on every page not yet sent (from the oldest unsent due license on)."""
        first_unsent: dict[str, PagesPart] = {}
        for part, number, _ in self.pending:
            first_unsent.setdefault(part.plan_uuid, PagesPart(part.plan_uuid, number, part.last_page))
        unread = current is not None and next_page is not None and current.plan_uuid not in first_unsent
        if unread and (current.last_page is None or next_page <= current.last_page):
            first_unsent[current.plan_uuid] = PagesPart(current.plan_uuid, next_page, current.last_page)
        rest = [*first_unsent.values(), *later]
        if rest:
            self.run.handoff(rest)  # type: ignore[misc]  # checked by the caller
        self.r.outcome.handed_on += len(rest)
        self.logger.warning(
            "Out of time: handed the rest of enterprise %s on in %d message(s)%s",
            self.r.enterprise_uuid,
            len(rest),
            "" if rest else " (its last page was read and sent: nothing is left)",
            extra={**self.r.where, "parts": [vars(p) for p in rest]},
        )
