"""jobs/pipeline.py on in-memory fakes: claim, narrow a refused request down, record / hold / release, report.

Each test drives ``BatchSender`` (or a job around it) with ``fakes.FakeBraze`` and ``fakes.InMemoryLedger``;
the same behaviours are checked end to end on moto and the stand-ins in tests/integration/test_fault_isolation.py.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NOW
from fakes import ALIASES, TRIGGER, FakeBraze, FakeWorld, InMemoryLedger
from license_notifications.adapters.braze import Recipient, UserAlias
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT
from license_notifications.errors import (
    AmbiguousOutcomeError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    ServerError,
)
from license_notifications.events import Job
from license_notifications.jobs.enterprise_run import JobRun
from license_notifications.jobs.pipeline import (
    MAX_REJECTED_PER_BATCH,
    REJECTED_HOLD,
    BatchRejectedError,
    BatchSender,
    Campaign,
    Delivery,
    OutOfTimeError,
)
from license_notifications.outcome import EnterpriseOutcome

ENTERPRISE = "7a1c0e1e-5d4f-4c36-9d9b-0c2f2a0e4b11"
CAMPAIGN = Campaign("campaign-reminder")
RUN_ID = "run-1"
WALL = 1_800_000_000.0  # the fakes' wall clock (epoch seconds)
LOG2_50 = math.ceil(math.log2(50))  # 6: halvings to isolate one recipient of 50


def email(i: int) -> str:
    return f"learner{i:02d}@example.com"


def key(i: int) -> str:
    return f"expiration_reminder#license-{i:02d}"


def deliveries(n: int, *, alias: bool = True) -> list[Delivery]:
    return [
        Delivery(
            subject=f"license-{i:02d}",
            claim={"key": key(i), "kind": "expiration_reminder", "run_id": RUN_ID, "expires_at": NOW + timedelta(90)},
            recipient=Recipient(
                user_alias=UserAlias(email(i)), attributes={"email": email(i)}, trigger_properties={"n": i}
            ),
            alias=UserAlias(email(i)) if alias else None,
            description=f"reminder {i}",
        )
        for i in range(n)
    ]


class Pipeline:
    """One enterprise's BatchSender on the fakes, and what it left behind."""

    def __init__(self, run: JobRun | None = None, ledger: InMemoryLedger | None = None, braze: FakeBraze | None = None):
        self.wall = WALL
        self.ledger = ledger or InMemoryLedger(wall_clock=lambda: self.wall)
        self.braze = braze or FakeBraze()
        self.run = run or JobRun(run_id=RUN_ID, as_of=NOW)
        self.outcome = EnterpriseOutcome(Job.EXPIRATION_REMINDERS, ENTERPRISE)
        job = SimpleNamespace(braze=self.braze, ledger=self.ledger, logger=logging.getLogger("tests.pipeline"))
        self.sender = BatchSender(job, self.run, self.outcome, subject_kind="license")

    def send(self, batch: list[Delivery], campaign: Campaign = CAMPAIGN) -> None:
        self.sender.send(campaign, batch)

    def reminded(self) -> Counter[str]:
        return Counter(identifier for identifier, _ in self.braze.sent_to())

    def state(self, i: int) -> str | None:
        entry = self.ledger.get(key(i))
        return entry.state if entry else None


# -- a recipient Braze refuses ---------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(bad=st.integers(0, 49))
def test_one_refused_recipient_among_50_is_held_and_named_and_the_other_49_are_sent_in_the_same_run(bad):
    p = Pipeline()
    p.braze.refuse(email(bad), "invalid email address")
    p.send(deliveries(50))

    assert p.reminded() == Counter({email(i): 1 for i in range(50) if i != bad})
    assert len(p.braze.requests(ALIASES)) == 1
    assert len(p.braze.requests(TRIGGER)) - 1 <= 2 * LOG2_50
    assert p.state(bad) == REJECTED
    held = p.ledger.get(key(bad))
    assert held.lease_until == int(WALL + REJECTED_HOLD.total_seconds())
    assert all(p.state(i) == SENT for i in range(50) if i != bad)
    o = p.outcome
    assert (o.sent, o.failed, o.rejected, o.error) == (49, 1, 1, None)
    (failure,) = o.failures
    assert failure.subjects == (f"license-{bad:02d}",)
    assert not failure.retry  # a redelivery would be refused again: reported, not retried now
    assert f"license-{bad:02d}" in failure.error
    assert email(bad) not in failure.error  # masked


@settings(max_examples=40, deadline=None)
@given(bad=st.sets(st.integers(0, 49), min_size=2, max_size=2))
def test_two_refused_recipients_are_both_held_and_the_other_48_sent(bad):
    p = Pipeline()
    for i in bad:
        p.braze.refuse(email(i))
    p.send(deliveries(50))

    assert p.reminded() == Counter({email(i): 1 for i in range(50) if i not in bad})
    assert len(p.braze.requests(TRIGGER)) - 1 <= 2 * 2 * LOG2_50
    assert {i: p.state(i) for i in bad} == dict.fromkeys(bad, REJECTED)
    assert (p.outcome.sent, p.outcome.rejected) == (48, 2)
    (failure,) = p.outcome.failures  # one notification naming both
    assert sorted(failure.subjects) == sorted(f"license-{i:02d}" for i in bad)


def test_a_refused_alias_is_held_and_the_49_others_triggered_in_one_request():
    p = Pipeline()
    p.braze.refuse(email(9), alias=True)
    p.send(deliveries(50))

    (trigger,) = p.braze.requests(TRIGGER)
    assert email(9) not in trigger.identifiers
    assert len(trigger.identifiers) == 49
    assert len(p.braze.requests(ALIASES)) - 1 <= 2 * LOG2_50
    assert p.state(9) == REJECTED
    assert (p.outcome.sent, p.outcome.rejected) == (49, 1)
    assert "alias creation" in p.outcome.failures[0].error


def test_more_refused_one_by_one_than_a_batch_plausibly_holds_stops_the_enterprise_and_holds_nobody():
    world = FakeWorld()
    customer = world.lms.add_customer("Acme")
    world.license_manager.add_agreement(customer.uuid)
    plan = world.license_manager.add_plan(customer.uuid, expires_in=timedelta(days=10))
    licenses = world.license_manager.add_licenses(plan, "activated", 50)
    for lic in licenses[: MAX_REJECTED_PER_BATCH + 1]:
        world.braze.refuse(lic.user_email)

    outcome = world.expiration_reminders().run_enterprise(str(customer.uuid), JobRun(run_id=RUN_ID, as_of=NOW))

    assert "BatchRejectedError" in outcome.error
    assert outcome.needs_redelivery
    assert outcome.rejected == 0
    states = Counter(world.ledger.get(k).state for k in world.ledger.stored_keys())
    assert states[REJECTED] == 0  # nobody held: the request is wrong, not the recipients
    assert states[CLAIMED] == 0  # every claim settled
    sent = {identifier for identifier, _ in world.braze.sent_to()}
    assert states[SENT] == len(sent)  # what went out before the stop is recorded, the rest given back
    assert not sent & {lic.user_email for lic in licenses[: MAX_REJECTED_PER_BATCH + 1]}


def test_a_request_refused_whoever_is_in_it_gives_every_claim_back_within_a_bounded_number_of_requests():
    p = Pipeline()
    p.braze.fail_next(lambda: BadRequestError("braze", "Invalid campaign_id", status=400), times=1000)
    with pytest.raises(BatchRejectedError):
        p.send(deliveries(50, alias=False))
    assert p.ledger.stored_keys() == []
    assert p.braze.request_count <= 2 * MAX_REJECTED_PER_BATCH + 2 * LOG2_50
    assert p.outcome.rejected == 0
    assert sorted(s for f in p.outcome.failures for s in f.subjects) == [f"license-{i:02d}" for i in range(50)]


def test_a_refused_key_is_claimed_again_only_once_the_hold_ran_out():
    p = Pipeline()
    p.braze.refuse(email(0))
    p.send(deliveries(3))
    assert p.outcome.rejected == 1

    again = Pipeline(ledger=p.ledger)  # the next hour: the held key is skipped without a request
    again.send(deliveries(3))
    assert (again.braze.request_count, again.outcome.skipped["claimed_elsewhere"]) == (0, 3)

    p.wall = WALL + REJECTED_HOLD.total_seconds() + 1  # a day later (the ledger reads p's clock)
    later = Pipeline(ledger=p.ledger)
    later.send(deliveries(3))
    assert later.reminded() == Counter({email(0): 1})
    assert p.state(0) == SENT


# -- Braze accepted, with non-fatal errors -----------------------------------------------------------------------


def test_non_fatal_errors_are_reported_naming_the_recipient_masked_and_everyone_is_recorded_as_sent():
    p = Pipeline()
    p.braze.minor_error(email(1), "email is unsubscribed")
    p.send(deliveries(3))

    o = p.outcome
    assert (o.sent, o.failed, o.warned) == (3, 0, 1)
    assert o.ok
    assert [problem.subjects for problem in o.problems] == [("license-01",)]
    assert "unsubscribed" in o.problems[0].error
    assert email(1) not in o.problems[0].error
    assert [p.state(i) for i in range(3)] == [SENT] * 3  # never sent twice


def braze_warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Braze accepted" in r.getMessage()
    ]


def test_the_non_fatal_error_warning_names_each_flagged_license_uuid_in_its_text_with_its_error(caplog):
    p = Pipeline()
    p.braze.minor_error(email(1), "email is unsubscribed")
    p.braze.minor_error(email(3), "email bounced")
    with caplog.at_level(logging.WARNING):
        p.send(deliveries(4))

    (line,) = braze_warnings(caplog)
    (problem,) = p.outcome.problems
    assert problem.subjects == ("license-01", "license-03")
    for text in (line, problem.error):  # the log line and the error notification's text
        assert "license uuid(s) license-01, license-03:" in text
        assert "license-01: recipients[1] (l***@example.com): email is unsubscribed" in text
        assert "license-03: recipients[3] (l***@example.com): email bounced" in text
        assert sorted(set(re.findall(r"license-\d\d", text))) == ["license-01", "license-03"]  # only the flagged
        assert email(1) not in text
        assert email(3) not in text  # masked


def test_non_fatal_errors_naming_no_recipient_name_every_license_uuid_of_the_request_in_the_text(caplog):
    p = Pipeline()
    p.braze.request_error("quota warning for owner@example.org")
    with caplog.at_level(logging.WARNING):
        p.send(deliveries(3))

    (line,) = braze_warnings(caplog)
    (problem,) = p.outcome.problems
    assert problem.subjects == ("license-00", "license-01", "license-02")
    assert p.outcome.warned == 3
    for text in (line, problem.error):
        assert "the errors name none of them" in text
        assert "license uuid(s) license-00, license-01, license-02:" in text
        assert "quota warning for o***@example.org" in text
        assert "owner@example.org" not in text


# -- what the ledger could not record ------------------------------------------------------------------------------


def test_a_send_the_ledger_could_not_record_counts_as_failed_and_is_not_redelivered():
    p = Pipeline()
    p.ledger.fail_marks = OSError("DynamoDB is down")
    p.send(deliveries(4))

    o = p.outcome
    assert (o.sent, o.unrecorded, o.failed) == (4, 4, 4)
    assert not o.ok
    assert not o.needs_redelivery  # the claims are still held: a redelivery could not send them either
    assert "not recorded in the ledger" in o.failures[0].error
    assert sorted(o.failures[0].subjects) == [f"license-{i:02d}" for i in range(4)]


def test_a_claim_lost_before_the_record_counts_that_recipient_as_unrecorded():
    p = Pipeline()
    p.braze.on_request = lambda call: p.ledger.lose_claim(key(2)) if call.endpoint == TRIGGER else None
    p.send(deliveries(4))
    assert (p.outcome.sent, p.outcome.unrecorded, p.outcome.failed) == (4, 1, 1)  # only the unrecorded one failed
    assert [p.state(i) for i in range(4)] == [SENT, SENT, CLAIMED, SENT]  # the other worker's claim stays


# -- a send without a reply --------------------------------------------------------------------------------------


def test_an_ambiguous_send_is_recorded_as_unconfirmed_and_never_retried():
    p = Pipeline()
    p.braze.fail_next(AmbiguousOutcomeError("braze", "read timed out after the request went out"))
    p.send(deliveries(5))

    assert len(p.braze.requests(TRIGGER)) == 1  # neither retried nor narrowed down
    assert [p.ledger.get(key(i)).dispatch_id for i in range(5)] == [f"unconfirmed:{RUN_ID}"] * 5
    assert [p.state(i) for i in range(5)] == [SENT] * 5
    o = p.outcome
    assert (o.sent, o.failed) == (0, 5)
    assert not o.needs_redelivery
    assert "check Braze's delivery log" in o.failures[0].error

    again = Pipeline(ledger=p.ledger)
    again.send(deliveries(5))
    assert again.braze.request_count == 0


# -- a transient failure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [ServerError("braze", "503 after the retries", status=503), NotFoundError("braze", "404", status=404)],
    ids=["5xx", "404"],
)
def test_a_batch_failing_transiently_is_released_and_counted_and_the_next_batch_still_goes(error):
    p = Pipeline()
    batches = deliveries(100)
    p.braze.fail_next(error)
    p.send(batches[:50])
    p.send(batches[50:])

    assert p.ledger.stored_keys() == [key(i) for i in range(50, 100)]  # the failed batch's claims are gone
    assert p.reminded() == Counter({email(i): 1 for i in range(50, 100)})
    o = p.outcome
    assert (o.sent, o.failed, o.error) == (50, 50, None)
    assert o.needs_redelivery  # a redelivery (or the next run) retries the first batch
    retry = Pipeline(ledger=p.ledger)
    retry.send(batches[:50])
    assert retry.outcome.sent == 50


def test_credentials_braze_refuses_stop_the_enterprise_after_giving_the_batch_back():
    p = Pipeline()
    p.braze.fail_next(AuthenticationError("braze", "bad key", status=401))
    with pytest.raises(AuthenticationError):
        p.send(deliveries(10))
    assert p.ledger.stored_keys() == []
    assert p.outcome.failed == 10


# -- the deadline --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OutOfTimeAfter(JobRun):
    """A run whose time is up once Braze has answered ``requests`` requests."""

    braze: FakeBraze
    requests: int

    def out_of_time(self) -> bool:
        return self.braze.request_count >= self.requests


@settings(max_examples=60, deadline=None)
@given(bad=st.integers(0, 49), budget=st.integers(0, 16))
def test_time_running_out_mid_narrowing_leaves_no_claim_in_flight_and_starts_no_request_after_it(bad, budget):
    braze = FakeBraze()
    p = Pipeline(run=OutOfTimeAfter(run_id=RUN_ID, as_of=NOW, braze=braze, requests=budget), braze=braze)
    braze.refuse(email(bad))
    try:
        p.send(deliveries(50))
    except OutOfTimeError:
        assert braze.request_count == budget  # checked before each request: none started once time was up
    else:
        assert braze.request_count <= budget

    states = {i: p.state(i) for i in range(50)}
    assert CLAIMED not in states.values()  # released, recorded or held: nothing in flight
    sent = p.reminded()
    assert all(states[i] == SENT for i in range(50) if email(i) in sent)  # every send recorded
    assert all(states[i] in (None, REJECTED) for i in range(50) if email(i) not in sent)
    assert max(sent.values(), default=1) == 1


def test_a_job_stopped_by_its_deadline_is_redelivered_and_the_next_attempt_sends_nobody_twice():
    world = FakeWorld()
    customer = world.lms.add_customer("Acme")
    world.license_manager.add_agreement(customer.uuid)
    plan = world.license_manager.add_plan(customer.uuid, expires_in=timedelta(days=10))
    world.license_manager.add_licenses(plan, "activated", 120)
    job = world.expiration_reminders()

    first = job.run_enterprise(
        str(customer.uuid), OutOfTimeAfter(run_id="run-t", as_of=NOW, braze=world.braze, requests=3)
    )
    assert "OutOfTimeError" in first.error
    assert first.needs_redelivery
    assert world.braze.request_count == 3
    finish = job.run_enterprise(str(customer.uuid), JobRun(run_id="run-t2", as_of=NOW))
    assert finish.ok
    reminded = Counter(identifier for identifier, _ in world.braze.sent_to())
    assert (len(reminded), max(reminded.values())) == (120, 1)


# -- before anything is sent ---------------------------------------------------------------------------------------


def test_a_dry_run_claims_and_sends_nothing():
    p = Pipeline(run=JobRun(run_id=RUN_ID, as_of=NOW, dry_run=True))
    p.send(deliveries(7))
    assert (p.outcome.would_send, p.outcome.sent, p.braze.request_count, p.ledger.stored_keys()) == (7, 0, 0, [])


def test_keys_claimed_by_another_run_are_skipped():
    p = Pipeline()
    for i in (1, 3):
        assert p.ledger.claim(key(i), kind="expiration_reminder", run_id="other-run", expires_at=NOW)
    p.send(deliveries(5))
    assert p.reminded() == Counter({email(i): 1 for i in (0, 2, 4)})
    assert p.outcome.skipped["claimed_elsewhere"] == 2
    assert [p.state(i) for i in range(5)] == [SENT, CLAIMED, SENT, CLAIMED, SENT]
