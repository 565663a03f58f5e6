"""The fakes the unit tests stand on (tests/fakes.py) behave as the adapters they replace. The ledger double is
also compared with the real ledger on moto: tests/integration/test_fake_ledger_parity.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest import NOW
from fakes import ALIASES, TRIGGER, FakeBraze, FakeLicenseManager, FakeLms, InMemoryLedger
from license_notifications.adapters.braze import Recipient, UserAlias
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT
from license_notifications.errors import BadRequestError, MalformedResponseError, NotFoundError, ServerError

EXPIRES = NOW + timedelta(days=90)


def claim(ledger: InMemoryLedger, key: str = "k", run: str = "r1", **kwargs):
    return ledger.claim(key, kind="expiration_reminder", run_id=run, expires_at=EXPIRES, **kwargs)


# -- InMemoryLedger ----------------------------------------------------------------------------------------------


def test_a_key_is_claimed_once_and_recorded_only_with_its_token():
    ledger = InMemoryLedger()
    first = claim(ledger)
    assert first is not None
    assert claim(ledger, run="r2") is None
    assert ledger.states(["k", "other"]) == {"k": CLAIMED}
    assert ledger.sent(["k"]) == {}
    assert ledger.mark_sent(first, as_of=NOW, run_id="r1", dispatch_id="d1")
    assert not ledger.mark_sent(first, as_of=NOW, run_id="r1", dispatch_id="d1")  # the token is spent
    assert claim(ledger, run="r3") is None
    assert ledger.sent(["k"]) == {"k": NOW}


def test_a_claim_whose_lease_ran_out_can_be_taken_and_the_old_token_is_useless():
    clock = [1000.0]
    ledger = InMemoryLedger(lease_seconds=60, wall_clock=lambda: clock[0])
    stale = claim(ledger)
    clock[0] += 60
    assert claim(ledger, run="r2") is None  # lease_until < now, strictly
    clock[0] += 1
    fresh = claim(ledger, run="r2")
    assert fresh is not None
    assert not ledger.mark_sent(stale, as_of=NOW, run_id="r1", dispatch_id="d1")
    ledger.release(stale)
    assert ledger.get("k").claimed_by_run == "r2"


def test_release_deletes_a_first_time_claim_and_restores_a_recurring_records_last_send():
    ledger = InMemoryLedger()
    ledger.release(claim(ledger))
    assert ledger.get("k") is None

    earlier = NOW - timedelta(days=8)
    ledger.record_sent("w", kind="periodic_informational", as_of=earlier)
    again = claim(ledger, "w", resend_if_sent_before=NOW - timedelta(days=6))
    assert again is not None
    ledger.release(again)
    entry = ledger.get("w")
    assert (entry.state, entry.sent_at, entry.claim_token) == (SENT, earlier, None)


def test_a_recurring_key_is_claimable_only_when_its_last_send_is_older_than_the_cutoff():
    ledger = InMemoryLedger()
    ledger.record_sent("w", kind="periodic_informational", as_of=NOW)
    assert claim(ledger, "w", resend_if_sent_before=NOW) is None
    assert claim(ledger, "w") is None  # without a cutoff a sent key stays sent
    assert claim(ledger, "w", resend_if_sent_before=NOW + timedelta(microseconds=1)) is not None
    assert ledger.sent(["w"]) == {"w": NOW}  # a re-claimed record keeps its last send


def test_a_held_key_waits_out_its_hold_and_keeps_its_last_send():
    clock = [1000.0]
    ledger = InMemoryLedger(wall_clock=lambda: clock[0])
    ledger.record_sent("w", kind="periodic_informational", as_of=NOW - timedelta(days=8))
    held = claim(ledger, "w", resend_if_sent_before=NOW)
    ledger.hold_many([held], seconds=3600, reason="rejected")
    entry = ledger.get("w")
    assert (entry.state, entry.note, entry.lease_until, entry.sent_at) == (
        REJECTED,
        "rejected",
        4600,
        NOW - timedelta(days=8),
    )
    assert claim(ledger, "w", run="r2", resend_if_sent_before=NOW) is None
    clock[0] += 3601
    assert claim(ledger, "w", run="r2") is not None
    assert ledger.get("w").note is None


def test_the_batch_methods_decide_each_key_on_its_own():
    ledger = InMemoryLedger()
    claim(ledger, "taken", run="other")
    requests = [{"key": k, "kind": "k", "run_id": "r1", "expires_at": EXPIRES} for k in ("a", "taken", "b")]
    a, taken, b = ledger.claim_many(requests)
    assert taken is None
    assert ledger.mark_sent_many([a, b], as_of=NOW, run_id="r1", dispatch_id="d") == 2
    ledger.fail_marks = OSError("down")
    with pytest.raises(OSError, match="down"):
        ledger.mark_sent_many([a], as_of=NOW, run_id="r1", dispatch_id="d")


def test_a_claim_request_the_real_ledger_would_refuse_is_refused():
    with pytest.raises(TypeError):
        InMemoryLedger().claim_many([{"key": "k", "kind": "k", "run_id": "r", "expires_at": EXPIRES, "typo": 1}])


# -- FakeBraze ---------------------------------------------------------------------------------------------------


def recipients(*emails: str) -> list[Recipient]:
    return [Recipient(user_alias=UserAlias(e), attributes={"email": e}) for e in emails]


def test_fake_braze_refuses_a_whole_request_naming_the_refused_recipient_and_records_it():
    braze = FakeBraze()
    braze.refuse("b@example.com", "invalid email address")
    with pytest.raises(BadRequestError, match=r"recipients\[1\]: invalid email address \(b@example.com\)"):
        braze.trigger_campaign("c", recipients("a@example.com", "b@example.com"))
    result = braze.trigger_campaign("c", recipients("a@example.com"))
    assert [call.outcome for call in braze.calls] == ["refused", "accepted"]
    assert result.dispatch_id == "dispatch-1"
    assert braze.sent_to() == [("a@example.com", {})]


def test_fake_braze_answers_minor_errors_fails_on_demand_and_chunks_aliases():
    braze = FakeBraze()
    braze.minor_error("b@example.com", "unsubscribed")
    assert braze.trigger_campaign("c", recipients("a@example.com", "b@example.com")).errors == (
        "recipients[1] (b@example.com): unsubscribed",
    )
    braze.fail_next(ServerError("braze", "503", status=503), times=2)
    for _ in range(2):
        with pytest.raises(ServerError):
            braze.trigger_campaign("c", recipients("a@example.com"))
    braze.create_aliases([UserAlias(f"{i}@example.com") for i in range(120)] + [UserAlias("0@example.com")])
    assert [len(call.identifiers) for call in braze.requests(ALIASES)] == [50, 50, 20]
    assert (len(braze.requests(TRIGGER)), braze.request_count) == (3, 6)
    with pytest.raises(ValueError, match="1 to 50"):
        braze.trigger_campaign("c", recipients(*(f"{i}@example.com" for i in range(51))))


# -- FakeLicenseManager, FakeLms -----------------------------------------------------------------------------------


def test_fake_license_manager_serves_pages_filters_statuses_and_hands_malformed_records_over():
    lm = FakeLicenseManager(page_size=2)
    plan = lm.add_plan("11111111-1111-1111-1111-111111111111")
    lm.add_licenses(plan, "activated", 3)
    lm.add_licenses(plan, "revoked", 2)
    lm.add_raw_license(plan, {"status": "activated"})
    bad = []
    pages = list(lm.license_pages(plan.uuid, on_malformed=lambda item, exc: bad.append(exc)))
    assert [len(page) for page in pages] == [2, 1]  # 3 activated + the raw record, which is malformed (no uuid)
    assert len(bad) == 1
    assert isinstance(bad[0], MalformedResponseError)
    with pytest.raises(MalformedResponseError):
        list(lm.license_pages(plan.uuid))
    assert lm.customer_agreement(plan.enterprise_customer_uuid) is None
    lm.add_agreement(plan.enterprise_customer_uuid)
    assert lm.customer_agreement(plan.enterprise_customer_uuid).subscriptions == [plan]


def test_fake_lms_knows_its_customers_and_their_admins_only():
    lms = FakeLms()
    customer = lms.add_customer("Acme Learning")
    admin = lms.add_admin(customer.uuid)
    assert lms.enterprise_customer(customer.uuid).slug == "acme-learning"
    assert list(lms.enterprise_admins(customer.uuid)) == [admin]
    assert admin.is_admin
    assert admin.display_name == "Ada Admin"
    with pytest.raises(NotFoundError):
        lms.enterprise_customer("22222222-2222-2222-2222-222222222222")


def test_fake_license_manager_serves_renewals_and_records_the_statuses_asked():
    lm = FakeLicenseManager()
    enterprise = "3f1e2d4c-1111-4a6b-8c9d-0123456789ab"
    lm.add_agreement(enterprise)
    old = lm.add_plan(enterprise, expires_in=timedelta(days=-2))
    renewal = lm.add_plan(enterprise, expires_in=timedelta(days=363))
    served = lm.add_renewal(old, renewal)
    [entry] = served.prior_renewals
    assert (entry.prior_subscription_plan_id, entry.renewed_subscription_plan_id) == (old.uuid, renewal.uuid)
    agreement = lm.customer_agreement(enterprise)
    assert {str(p.uuid): p.prior_renewals for p in agreement.subscriptions} == {
        str(old.uuid): [],
        str(renewal.uuid): [entry],
    }
    list(lm.license_pages(renewal.uuid, statuses=("activated", "assigned")))
    assert lm.statuses_asked == [(str(renewal.uuid), ("activated", "assigned"))]
    lm.fail_plans[str(old.uuid)] = ServerError("license-manager", "boom", status=503)
    with pytest.raises(ServerError):
        list(lm.license_pages(old.uuid))
