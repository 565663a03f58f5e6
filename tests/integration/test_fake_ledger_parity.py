"""The unit tests' ledger double (fakes.InMemoryLedger) against the real ledger on moto and on DynamoDB Local: the same script
of claims, marks, releases, holds, expired leases and recurring sends gives the same answers and leaves the same
records, so a unit test on the fake says something about the real ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from conftest import NOW
from fakes import InMemoryLedger
from license_notifications.adapters.ledger import Ledger

LEASE = 60
START = 1_900_000_000.0
FIELDS = ("state", "sent_at", "run_id", "dispatch_id", "lease_until", "note", "claimed_by_run", "subject_uuid")


def script(ledger: Any, clock: list[float]) -> list[Any]:
    """Every protocol step the pipeline relies on; returns what each step answered (claims as True/False)."""
    out: list[Any] = []
    expires = NOW + timedelta(days=90)
    t0 = NOW - timedelta(days=8)

    def claim(key: str, run: str = "r1", **kwargs: Any):
        taken = ledger.claim(key, kind="k", run_id=run, expires_at=expires, subject_uuid=f"s-{key}", **kwargs)
        out.append(("claim", key, taken is not None))
        return taken

    def mark(taken, as_of=NOW, run="r1"):
        out.append(("mark", taken.key, ledger.mark_sent(taken, as_of=as_of, run_id=run, dispatch_id=f"d-{run}")))

    def look(*keys: str) -> None:
        out.append(("sent", ledger.sent(keys), "states", ledger.states(keys)))

    # a first-time key: claimed once, recorded once
    a = claim("a")
    claim("a", "r2")
    mark(a)
    claim("a", "r3")
    look("a", "missing")
    # released: gone, claimable again
    b = claim("b")
    ledger.release(b)
    look("b")
    claim("b", "r2")
    # a lease that ran out: another run takes the key, the first run's token no longer marks it
    c1 = claim("c")
    clock[0] += LEASE + 1
    c2 = claim("c", "r2")
    mark(c1)
    mark(c2, run="r2")
    ledger.release(c1)  # a stale token changes nothing
    ledger.hold(c1, seconds=100, reason="rejected")
    look("c")
    # held: nobody claims it until the hold ran out
    d = claim("d")
    ledger.hold(d, seconds=100, reason="rejected")
    look("d")
    claim("d", "r2")
    clock[0] += 101
    claim("d", "r3")
    # a recurring key: claimable again once its last send is older than the caller's cutoff
    w1 = claim("w")
    mark(w1, as_of=t0)
    claim("w", "r2", resend_if_sent_before=t0)
    w2 = claim("w", "r2", resend_if_sent_before=t0 + timedelta(seconds=1))
    look("w")
    ledger.release(w2)  # the previous send comes back
    look("w")
    w3 = claim("w", "r3", resend_if_sent_before=t0 + timedelta(seconds=1))
    mark(w3, as_of=NOW, run="r3")
    w4 = claim("w", "r4", resend_if_sent_before=NOW + timedelta(seconds=1))
    ledger.hold(w4, seconds=100, reason="rejected")  # held, the last send kept
    look("w")
    claim("w", "r5", resend_if_sent_before=NOW + timedelta(seconds=1))
    clock[0] += 101
    claim("w", "r5")
    # the batch methods the pipeline calls
    requests = [
        {"key": key, "kind": "k", "run_id": "r6", "expires_at": expires, "enterprise_customer_uuid": "e"}
        for key in ("e1", "e2", "e3", "a")
    ]
    claims = ledger.claim_many(requests)
    out.append(("claim_many", [c is not None for c in claims]))
    e1, e2, e3, _ = claims
    out.append(("mark_sent_many", ledger.mark_sent_many([e1], as_of=NOW, run_id="r6", dispatch_id="d-r6")))
    ledger.release_many([e2])
    ledger.hold_many([e3], seconds=100, reason="rejected")
    look("e1", "e2", "e3")
    return out


def records(ledger: Any, keys: list[str]) -> dict[str, tuple | None]:
    found = {key: ledger.get(key) for key in keys}
    return {key: None if r is None else tuple(getattr(r, f) for f in FIELDS) for key, r in found.items()}


def test_the_fake_ledger_answers_and_records_as_the_real_one_does(ledger_engine):
    """On both engines (conftest.ledger_engine): moto and DynamoDB Local."""
    real_clock, fake_clock = [START], [START]
    real = Ledger(ledger_engine.table, lease_seconds=LEASE, wall_clock=lambda: real_clock[0])
    fake = InMemoryLedger(lease_seconds=LEASE, wall_clock=lambda: fake_clock[0])

    real_answers, fake_answers = script(real, real_clock), script(fake, fake_clock)

    assert fake_answers == real_answers
    keys = ["a", "b", "c", "d", "w", "e1", "e2", "e3", "missing"]
    assert records(fake, keys) == records(real, keys)
    assert ("claim", "w", True) in real_answers  # the script reaches the interesting states at all
    assert any(step[0] == "mark" and step[2] is False for step in real_answers)


IMPORT_FIELDS = (*FIELDS, "kind", "recorded_at", "enterprise_customer_uuid", "expires_at")


def import_records(ledger: Any, keys: list[str]) -> dict[str, tuple | None]:
    """Every attribute of each record (a claim's token only as "has one": the two ledgers draw them differently)."""
    found = {key: ledger.get(key) for key in keys}
    return {
        key: None if r is None else (*(getattr(r, f) for f in IMPORT_FIELDS), r.claim_token is not None)
        for key, r in found.items()
    }


def import_script(ledger: Any, clock: list[float]) -> list[Any]:
    """The cutover's writes (``import_sent_many``) next to keys the protocol left sent, claimed and held."""
    out: list[Any] = []
    expires = NOW + timedelta(days=90)

    def imported(key: str, **more: Any) -> dict[str, Any]:
        return {"key": key, "kind": "expiration_reminder", "sent_at": NOW - timedelta(days=3, microseconds=5),
                "run_id": "import-1", "dispatch_id": "license-manager", "enterprise_customer_uuid": "e",
                "subject_uuid": f"s-{key}", "expires_at": expires + timedelta(microseconds=250), **more}  # fmt: skip

    sent = ledger.claim("sent", kind="k", run_id="r1", expires_at=expires)
    ledger.mark_sent(sent, as_of=NOW, run_id="r1", dispatch_id="d-r1")
    ledger.claim("claimed", kind="k", run_id="r1", expires_at=expires)
    held = ledger.claim("held", kind="k", run_id="r1", expires_at=expires)
    ledger.hold(held, seconds=100, reason="rejected")
    clock[0] += 5
    batch = [imported(k) for k in ("sent", "new-1", "claimed", "held", "new-2")]
    batch += [imported("new-1", sent_at=NOW), imported("bare", subject_uuid=None, expires_at=None)]
    out.append(("import", ledger.import_sent_many(batch)))
    out.append(("import again", ledger.import_sent_many([{**r, "run_id": "import-2"} for r in batch])))
    out.append(("import nothing", ledger.import_sent_many([])))
    out.append(("sent", ledger.sent(["new-1", "bare", "sent"]), "states", ledger.states(["new-1", "claimed", "held"])))
    # an imported first-time key is never claimable; an imported recurring one once its last send is old enough
    out.append(("claim", ledger.claim("new-2", kind="k", run_id="r2", expires_at=expires) is not None))
    cutoff = NOW - timedelta(days=2)
    out.append(("claim", ledger.claim("bare", kind="k", run_id="r2", expires_at=expires, resend_if_sent_before=cutoff)
                is not None))  # fmt: skip
    return out


def test_the_fake_ledger_imports_sent_records_as_the_real_one_does(ledger_engine):
    """On both engines (conftest.ledger_engine): moto and DynamoDB Local."""
    real_clock, fake_clock = [START], [START]
    real = Ledger(ledger_engine.table, lease_seconds=LEASE, wall_clock=lambda: real_clock[0])
    fake = InMemoryLedger(lease_seconds=LEASE, wall_clock=lambda: fake_clock[0])

    real_answers, fake_answers = import_script(real, real_clock), import_script(fake, fake_clock)

    assert fake_answers == real_answers
    assert real_answers[0] == ("import", [False, True, False, False, True, False, True])
    assert real_answers[1] == ("import again", [False] * 7)
    assert real_answers[-2:] == [("claim", False), ("claim", True)]
    keys = ["sent", "claimed", "held", "new-1", "new-2", "bare"]
    assert import_records(fake, keys) == import_records(real, keys)
    assert real.get("new-1").sent_at == NOW - timedelta(days=3, microseconds=5)  # the first of the two rows
