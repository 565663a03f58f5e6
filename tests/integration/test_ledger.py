"""The ledger adapter against both engines, moto and AWS's DynamoDB Local (conftest.ledger_engine): what a batch costs in DynamoDB requests, what contention does to it, the
claim / record / release / hold semantics on both of its paths (one transaction; a read and key-by-key writes
after a cancelled one), and records that read the same as the pynamodb model's."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from conftest import NOW
from license_notifications.adapters.ledger import CLAIMED, REJECTED, SENT, Ledger

T0 = 1_772_355_600.25  # the wall clock of these tests (2026-03-01 09:00:00.25 UTC)
LEASE = 1200
EXPIRES = NOW + timedelta(days=100)
WEEK = timedelta(days=7)


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(ledger_engine) -> str:
    """The ledger's table on each engine (moto, DynamoDB Local), dropped afterwards (conftest.ledger_engine)."""
    return ledger_engine.table


@pytest.fixture
def ledger(table, clock) -> Ledger:
    return Ledger(table, lease_seconds=LEASE, wall_clock=clock, sleep=lambda _: None)


@pytest.fixture
def other(table, clock) -> Ledger:
    """Another worker: its own client, the same table and clock."""
    return Ledger(table, lease_seconds=LEASE, wall_clock=clock, sleep=lambda _: None)


def requests_of(ledger: Ledger) -> Counter[str]:
    """Counts the ledger's DynamoDB requests by operation (botocore's retries included), from now on."""
    counts: Counter[str] = Counter()

    def count(request, **kwargs):
        counts[request.headers["X-Amz-Target"].decode().rsplit(".", 1)[-1]] += 1

    ledger.client.meta.events.register("before-send.dynamodb", count)
    return counts


def request(key: str, run: str = "run-1", **more) -> dict:
    return {"key": key, "kind": "expiration_reminder", "run_id": run, "expires_at": EXPIRES, **more}


def keys(n: int, prefix: str = "expiration_reminder#") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def raw(ledger: Ledger, key: str) -> dict | None:
    return ledger.client.get_item(TableName=ledger.table_name, Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")


def put(ledger: Ledger, key: str, **attributes: str | float | datetime) -> None:
    """A record as the ledger stores it (strings, numbers and pynamodb-formatted datetimes)."""
    item: dict = {"pk": {"S": key}, "kind": {"S": "periodic_informational"}}
    for name, value in attributes.items():
        if isinstance(value, datetime):
            item[name] = {"S": value.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")}
        elif isinstance(value, int | float):
            item[name] = {"N": str(value)}
        else:
            item[name] = {"S": value}
    ledger.client.put_item(TableName=ledger.table_name, Item=item)


# -- cost ------------------------------------------------------------------------------------------------------


def test_fifty_reminders_cost_three_requests_read_claim_record(ledger):
    batch = keys(50)
    counts = requests_of(ledger)
    assert ledger.sent(batch) == {}
    claims = ledger.claim_many([request(k) for k in batch])
    assert all(claims)
    assert ledger.mark_sent_many(claims, as_of=NOW, run_id="run-1", dispatch_id="d-1") == 50
    assert counts == {"BatchGetItem": 1, "TransactWriteItems": 2}
    assert sum(counts.values()) <= 4  # the budget per 50 reminders
    assert ledger.sent(batch) == dict.fromkeys(batch, NOW)


def test_a_release_or_a_hold_of_a_batch_is_one_request(ledger):
    claims = ledger.claim_many([request(k) for k in keys(20)])
    counts = requests_of(ledger)
    ledger.release_many(claims[:10])
    ledger.hold_many(claims[10:], seconds=3600, reason="rejected")
    assert counts == {"TransactWriteItems": 2}
    assert ledger.states(keys(20)) == {k: REJECTED for k in keys(20)[10:]}


def test_more_than_a_hundred_keys_take_one_transaction_per_hundred(ledger):
    counts = requests_of(ledger)
    claims = ledger.claim_many([request(k) for k in keys(120)])
    assert all(claims)
    assert counts == {"TransactWriteItems": 2}


# -- contention ------------------------------------------------------------------------------------------------


def test_keys_held_elsewhere_are_skipped_and_the_rest_claimed(ledger, other):
    batch = keys(50)
    held = dict(zip(batch[::10], other.claim_many([request(k, "run-2") for k in batch[::10]]), strict=True))
    counts = requests_of(ledger)
    claims = ledger.claim_many([request(k) for k in batch])
    assert [k for k, c in zip(batch, claims, strict=True) if c is None] == list(held)
    # the transaction cancelled, a strongly consistent read of the batch, the claimable keys in one more
    assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1}
    for key, claim in held.items():  # the other run's claims are untouched
        assert raw(ledger, key)["claim_token"] == {"S": claim.token}
    assert ledger.mark_sent_many([c for c in claims if c], as_of=NOW, run_id="run-1", dispatch_id="d") == 45


def test_a_racer_between_the_read_and_the_retry_leaves_the_rest_to_key_by_key_writes(ledger, other):
    batch = keys(10)
    other.claim(**request(batch[0], "run-2"))
    sneaked = {}

    def racer(**kwargs):  # once the batch has been read back, another run claims one more key
        if not sneaked:
            sneaked["claim"] = other.claim(**request(batch[5], "run-3"))

    ledger.client.meta.events.register("after-call.dynamodb.BatchGetItem", racer)
    counts = requests_of(ledger)
    claims = ledger.claim_many([request(k) for k in batch])
    assert sneaked["claim"] is not None
    assert [k for k, c in zip(batch, claims, strict=True) if c is None] == [batch[0], batch[5]]
    assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1, "UpdateItem": 9}
    assert raw(ledger, batch[5])["claim_token"] == {"S": sneaked["claim"].token}


def test_a_claim_transaction_sent_again_after_a_lost_reply_still_returns_its_claims(ledger, ledger_engine):
    """botocore sends a transaction again when its reply is lost; DynamoDB answers the repeat (same client
    request token) as the first, moto cancels it: either way the claims already taken are ours."""
    repeats = {"left": 1}

    def reply_lost(attempts, **kwargs):  # consulted by botocore after each attempt
        if repeats["left"]:
            repeats["left"] -= 1
            return 0  # retry now
        return None

    ledger.client.meta.events.register_first("needs-retry.dynamodb.TransactWriteItems", reply_lost)
    counts = requests_of(ledger)
    claims = ledger.claim_many([request(k) for k in keys(5)])
    assert all(claims)
    assert repeats["left"] == 0
    if ledger_engine.name == "moto":  # sent twice, moto cancels the repeat: the batch is read back
        assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1}
    else:  # sent twice, DynamoDB answers the repeat by its client request token as it answered the first
        assert counts == {"TransactWriteItems": 2}
    assert {k: raw(ledger, k)["claim_token"]["S"] for k in keys(5)} == {c.key: c.token for c in claims}


def test_what_each_engine_does_with_a_client_request_token(ledger_engine, table):
    """The same transaction sent twice with one ClientRequestToken (what botocore does after a lost reply):
    DynamoDB Local answers the repeat as the first, without applying it again, and refuses the token for a
    different transaction; moto ignores the token and evaluates the repeat afresh (its condition fails)."""
    dynamodb = ledger_engine.client

    def claim(key: str, token: str) -> dict:
        update = {"TableName": table, "Key": {"pk": {"S": key}}, "UpdateExpression": "SET #s = :c",
                  "ConditionExpression": "attribute_not_exists(pk)", "ExpressionAttributeNames": {"#s": "state"},
                  "ExpressionAttributeValues": {":c": {"S": CLAIMED}}}  # fmt: skip
        return dynamodb.transact_write_items(TransactItems=[{"Update": update}], ClientRequestToken=token)

    claim("token#1", "request-1")
    if ledger_engine.name == "dynamodb-local":
        claim("token#1", "request-1")  # the repeat succeeds: DynamoDB answers it from the first
        with pytest.raises(ClientError) as refused:
            claim("token#2", "request-1")  # another transaction under a token already used
        assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
        assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "token#2"}})
    else:
        with pytest.raises(ClientError) as cancelled:
            claim("token#1", "request-1")
        assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
        claim("token#2", "request-1")  # the token means nothing to moto
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "token#1"}})["Item"]["state"] == {"S": CLAIMED}


def test_what_each_engine_does_with_expired_records(ledger_engine, ledger, table):
    """DynamoDB deletes records some time after their ``expires_at`` (the table's TTL attribute). DynamoDB Local
    deletes expired records within seconds (not always all of them); moto never deletes them.
    (conftest creates DynamoDB Local's tables without TTL: the tests' records expire relative to conftest.NOW, long
    past on the real clock.)"""
    dynamodb = ledger_engine.client
    if dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]["TimeToLiveStatus"] != "ENABLED":
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
    expired = datetime.now(UTC) - timedelta(hours=1)
    assert all(ledger.import_sent_many([imported(k, expires_at=expired) for k in keys(30)]))
    assert ledger.import_sent_many([imported("live#1", expires_at=datetime.now(UTC) + timedelta(days=1))]) == [True]
    deadline = time.monotonic() + (30 if ledger_engine.name == "dynamodb-local" else 2)
    while len(ledger.states(keys(30))) == 30 and time.monotonic() < deadline:
        time.sleep(0.25)
    assert (len(ledger.states(keys(30))) == 30) is (ledger_engine.name == "moto")
    assert ledger.states(["live#1"]) == {"live#1": SENT}


def test_a_hold_transaction_sent_again_after_a_lost_reply_is_not_reported_as_lost(ledger, caplog):
    claims = ledger.claim_many([request(k) for k in keys(3)])
    repeats = {"left": 1}

    def reply_lost(attempts, **kwargs):
        if repeats["left"]:
            repeats["left"] -= 1
            return 0
        return None

    ledger.client.meta.events.register_first("needs-retry.dynamodb.TransactWriteItems", reply_lost)
    ledger.hold_many(claims, seconds=60, reason="rejected")
    assert repeats["left"] == 0
    assert ledger.states(keys(3)) == dict.fromkeys(keys(3), REJECTED)
    assert "already gone" not in caplog.text


def test_a_key_twice_in_one_batch_is_claimed_once(ledger):
    first, second, third = ledger.claim_many([request("k#1"), request("k#2"), request("k#1")])
    assert (first is not None, second is not None, third) == (True, True, None)


def test_two_ledgers_claiming_the_same_batch_split_it_without_overlap(ledger, other):
    batch = keys(30)
    mine = ledger.claim_many([request(k) for k in batch[:20]])
    theirs = other.claim_many([request(k, "run-2") for k in batch[10:]])
    assert [c is not None for c in mine] == [True] * 20
    assert [c is not None for c in theirs] == [False] * 10 + [True] * 10


# -- what may be claimed: the same answer from the transaction, from the read-back, and key by key ---------------

CASES = {
    # name: (record attributes relative to the clock, resend_if_sent_before, claimable)
    "no record": (None, None, True),
    "live claim": ({"state": CLAIMED, "claim_token": "x:1", "lease_until": int(T0) + 5}, None, False),
    "expired claim": ({"state": CLAIMED, "claim_token": "x:1", "lease_until": int(T0) - 5}, None, True),
    "live hold": ({"state": REJECTED, "lease_until": int(T0) + 5, "note": "rejected"}, None, False),
    "expired hold": ({"state": REJECTED, "lease_until": int(T0) - 5, "note": "rejected"}, None, True),
    "sent": ({"state": SENT, "sent_at": NOW - 30 * WEEK}, None, False),
    "sent, recurring, old enough": ({"state": SENT, "sent_at": NOW - WEEK}, NOW - WEEK + timedelta(seconds=1), True),
    "sent, recurring, too recent": ({"state": SENT, "sent_at": NOW - WEEK}, NOW - WEEK, False),
    "recurring, live claim on a sent record": (
        {"state": CLAIMED, "claim_token": "x:1", "lease_until": int(T0) + 5, "sent_at": NOW - 2 * WEEK},
        NOW,
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", ["single write", "transaction", "read back after a cancelled transaction"])
def test_what_may_be_claimed(ledger, other, case, path):
    attributes, resend, claimable = CASES[case]
    key = "weekly_digest#e#1"
    if attributes is not None:
        put(ledger, key, **attributes)
    wanted = request(key, resend_if_sent_before=resend)
    if path == "single write":
        claims = [ledger.claim(**wanted)]
    elif path == "transaction":
        claims = ledger.claim_many([wanted, request("free#1")])
    else:  # a held key cancels the transaction: the key is decided on the record read back
        other.claim(**request("held#1", "run-2"))
        claims = ledger.claim_many([wanted, request("held#1")])
        assert claims[1] is None
    assert (claims[0] is not None) is claimable
    if claimable:
        assert raw(ledger, key)["claim_token"] == {"S": claims[0].token}
    elif attributes is not None:
        assert raw(ledger, key).get("claim_token", {}).get("S") == attributes.get("claim_token")


def test_a_claim_expires_after_its_lease_on_the_wall_clock(ledger, table, clock):
    stale = ledger.claim(**request("k#1", "crashed"))
    assert stale is not None
    just_before = Ledger(table, lease_seconds=LEASE, wall_clock=lambda: int(T0) + LEASE - 1)
    assert just_before.claim_many([request("k#1", "run-2"), request("k#2", "run-2")])[0] is None
    after = Ledger(table, lease_seconds=LEASE, wall_clock=lambda: int(T0) + LEASE + 1)
    assert after.claim_many([request("k#1", "run-3"), request("k#2", "run-3")])[0] is not None
    assert not ledger.mark_sent(stale, as_of=NOW, run_id="crashed", dispatch_id="late")  # the claim was lost


# -- recurring claims, records, releases, holds ---------------------------------------------------------------


def test_a_recurring_key_is_claimed_again_once_its_last_send_is_old_enough(ledger, clock):
    key = "weekly_digest#e#1"
    first = ledger.claim(**request(key, resend_if_sent_before=NOW - WEEK))
    assert ledger.mark_sent(first, as_of=NOW, run_id="run-1", dispatch_id="d-1")
    assert ledger.claim(**request(key, "run-2", resend_if_sent_before=NOW)) is None  # not older than NOW
    later = NOW + WEEK
    again = ledger.claim_many([request(key, "run-3", resend_if_sent_before=later), request("other#1", "run-3")])[0]
    assert again is not None
    assert ledger.sent([key]) == {key: NOW}  # a re-claimed record keeps its last send
    assert ledger.states([key]) == {key: CLAIMED}
    assert ledger.mark_sent_many([again], as_of=later, run_id="run-3", dispatch_id="d-3") == 1
    assert ledger.sent([key]) == {key: later}


def test_a_batch_release_deletes_first_time_claims_and_restores_previous_sends(ledger):
    recurring = "weekly_digest#e#1"
    sent = ledger.claim(**request(recurring))
    ledger.mark_sent(sent, as_of=NOW, run_id="run-1", dispatch_id="d-1")
    claims = ledger.claim_many(
        [request(recurring, "run-2", resend_if_sent_before=NOW + WEEK), request("new#1", "run-2"), request("new#2")]
    )
    counts = requests_of(ledger)
    ledger.release_many(claims)
    assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1}  # the restore takes a read and one more
    assert raw(ledger, "new#1") is None
    assert raw(ledger, "new#2") is None
    record = ledger.get(recurring)
    assert (record.state, record.sent_at, record.dispatch_id, record.run_id) == (SENT, NOW, "d-1", "run-1")
    assert (record.claim_token, record.lease_until, record.claimed_by_run) == (None, None, None)
    # the cadence is unchanged: the key is due again exactly as before
    assert ledger.claim(**request(recurring, "run-3", resend_if_sent_before=NOW)) is None
    assert ledger.claim(**request(recurring, "run-3", resend_if_sent_before=NOW + WEEK)) is not None


def test_a_single_release_of_a_recurring_claim_restores_its_previous_send(ledger):
    key = "weekly_digest#e#1"
    ledger.mark_sent(ledger.claim(**request(key)), as_of=NOW, run_id="run-1", dispatch_id="d-1")
    claim = ledger.claim(**request(key, "run-2", resend_if_sent_before=NOW + WEEK))
    ledger.release(claim)
    assert ledger.get(key).state == SENT
    assert ledger.sent([key]) == {key: NOW}


def test_a_release_leaves_a_claim_that_is_no_longer_ours_alone(ledger, table, caplog):
    mine = ledger.claim(**request("k#1"))
    after_lease = Ledger(table, lease_seconds=LEASE, wall_clock=lambda: T0 + LEASE + 1)
    theirs = after_lease.claim(**request("k#1", "run-2"))
    ledger.release_many([mine, ledger.claim(**request("k#2"))])
    assert raw(ledger, "k#1")["claim_token"] == {"S": theirs.token}
    assert raw(ledger, "k#2") is None
    assert "ledger claim already gone at release" in caplog.text


def test_a_hold_keeps_the_key_from_every_run_until_it_runs_out(ledger, table, clock):
    recurring = "weekly_digest#e#1"
    ledger.mark_sent(ledger.claim(**request(recurring)), as_of=NOW, run_id="run-1", dispatch_id="d-1")
    claims = ledger.claim_many([request(recurring, resend_if_sent_before=NOW + WEEK), request("k#1")])
    ledger.hold_many(claims, seconds=86_400, reason="rejected")
    for key in (recurring, "k#1"):
        record = ledger.get(key)
        assert (record.state, record.lease_until, record.note, record.claim_token) == (
            REJECTED,
            int(T0) + 86_400,
            "rejected",
            None,
        )
    assert ledger.get(recurring).sent_at == NOW  # a previous send stays
    resend = NOW + 2 * WEEK
    assert ledger.claim_many([request(recurring, "run-2", resend_if_sent_before=resend), request("k#1")]) == [None] * 2
    clock.now = T0 + 86_400 + 1
    again = ledger.claim_many([request(recurring, "run-3", resend_if_sent_before=resend), request("k#1", "run-3")])
    assert all(again)


def test_a_lost_claim_is_not_recorded_and_the_others_are(ledger, table, caplog):
    claims = ledger.claim_many([request(k) for k in keys(5)])
    after_lease = Ledger(table, lease_seconds=LEASE, wall_clock=lambda: T0 + LEASE + 1)
    theirs = after_lease.claim(**request(keys(5)[2], "run-2"))
    assert ledger.mark_sent_many(claims, as_of=NOW, run_id="run-1", dispatch_id="d-1") == 4
    assert raw(ledger, keys(5)[2])["claim_token"] == {"S": theirs.token}
    assert ledger.states(keys(5)) == {k: (CLAIMED if k == keys(5)[2] else SENT) for k in keys(5)}
    assert "ledger claim lost before mark_sent" in caplog.text


def test_a_record_whose_reply_was_lost_is_retried_and_counted_once(ledger, ledger_engine):
    claims = ledger.claim_many([request(k) for k in keys(10)])
    lost = {"left": 1}

    def reply_lost(**kwargs):  # DynamoDB wrote the records; the worker never heard back
        if lost["left"]:
            lost["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "?"}}, "TransactWriteItems")

    ledger.client.meta.events.register("after-call.dynamodb.TransactWriteItems", reply_lost)
    counts = requests_of(ledger)
    assert ledger.mark_sent_many(claims, as_of=NOW, run_id="run-1", dispatch_id="d-1") == 10
    if ledger_engine.name == "moto":  # written, retried (cancelled: no longer claims), read back: they are ours
        assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1}
    else:  # the retry carries the first one's client request token: DynamoDB answers it as it answered the first
        assert counts == {"TransactWriteItems": 2}
    assert ledger.states(keys(10)) == dict.fromkeys(keys(10), SENT)


def test_recording_gives_up_after_its_attempts(ledger):
    claims = ledger.claim_many([request(k) for k in keys(3)])

    def throttled(**kwargs):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")

    ledger.client.meta.events.register("before-send.dynamodb.TransactWriteItems", throttled)
    with pytest.raises(ClientError):
        ledger.mark_sent_many(claims, as_of=NOW, run_id="run-1", dispatch_id="d-1")
    assert ledger.states(keys(3)) == dict.fromkeys(keys(3), CLAIMED)


def test_recording_starts_no_request_once_its_budget_is_spent(ledger, table, monkeypatch):
    from license_notifications.adapters import ledger as module

    claims = ledger.claim_many([request(k) for k in keys(3)])
    Ledger(table, wall_clock=lambda: T0 + LEASE + 1).claim(**request(keys(3)[0], "run-2"))  # one claim is lost
    ticks = iter(range(0, 10_000, module.MARK_BUDGET_SECONDS))  # each look at the clock: a budget later
    monkeypatch.setattr(module, "_monotonic", lambda: next(ticks))
    counts = requests_of(ledger)
    with pytest.raises(module.LedgerBudgetExceededError):
        ledger.mark_sent_many(claims, as_of=NOW, run_id="run-1", dispatch_id="d-1")
    assert counts == {"TransactWriteItems": 1}  # cancelled by the lost claim; no read-back after the budget


def test_no_thread_is_started(ledger, monkeypatch):
    import threading

    started = []
    here, start = threading.current_thread(), threading.Thread.start

    def record(thread):  # moto's server, in this process, starts a thread per request: only ours count
        if threading.current_thread() is here:
            started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", record)
    claims = ledger.claim_many([request(k) for k in keys(20)])
    ledger.mark_sent_many(claims[:10], as_of=NOW, run_id="run-1", dispatch_id="d-1")
    ledger.release_many(claims[10:])
    assert started == []


# -- the cutover: import_sent_many ---------------------------------------------------------------------------------


def imported(key: str, run: str = "import-sent:1", **more) -> dict:
    return {"key": key, "kind": "expiration_reminder", "sent_at": NOW - WEEK, "run_id": run,
            "dispatch_id": "license-manager", "enterprise_customer_uuid": "ent-1", "subject_uuid": key[-4:],
            "expires_at": EXPIRES, **more}  # fmt: skip


def test_importing_writes_sent_records_a_hundred_per_transaction(ledger):
    batch = keys(150)
    counts = requests_of(ledger)
    assert ledger.import_sent_many([imported(k) for k in batch]) == [True] * 150
    assert counts == {"TransactWriteItems": 2}
    assert raw(ledger, batch[7]) == {
        "pk": {"S": batch[7]},
        "kind": {"S": "expiration_reminder"},
        "state": {"S": SENT},
        "sent_at": {"S": "2026-02-22T09:00:00.000000+0000"},
        "recorded_at": {"S": "2026-03-01T09:00:00.250000+0000"},
        "run_id": {"S": "import-sent:1"},
        "dispatch_id": {"S": "license-manager"},
        "enterprise_customer_uuid": {"S": "ent-1"},
        "subject_uuid": {"S": "0007"},
        "expires_at": {"N": str(int(EXPIRES.timestamp()))},
    }
    assert ledger.sent(batch) == dict.fromkeys(batch, NOW - WEEK)
    assert all(c is None for c in ledger.claim_many([request(k) for k in batch[:10]]))  # never sent again


def test_importing_never_changes_a_key_that_exists_in_any_state(ledger, other, clock):
    batch = keys(20)
    sent = other.claim(**request(batch[3], "run-2"))
    other.mark_sent(sent, as_of=NOW, run_id="run-2", dispatch_id="d-2")
    other.claim(**request(batch[5], "run-2"))
    held = other.claim(**request(batch[8], "run-2"))
    other.hold(held, seconds=60, reason="rejected")
    clock.now += 3600  # the claim's lease and the hold ran out: they still exist, so they stay as they are
    before = {k: raw(ledger, k) for k in (batch[3], batch[5], batch[8])}
    counts = requests_of(ledger)
    written = ledger.import_sent_many([imported(k) for k in batch])
    # the transaction cancelled, a strongly consistent read of the batch, the 17 new keys in one more
    assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1}
    assert [k for k, ok in zip(batch, written, strict=True) if not ok] == [batch[3], batch[5], batch[8]]
    assert {k: raw(ledger, k) for k in before} == before
    assert ledger.states(batch) == {**dict.fromkeys(batch, SENT), batch[5]: CLAIMED, batch[8]: REJECTED}


def test_importing_again_writes_nothing_and_changes_nothing(ledger, clock):
    batch = keys(30)
    assert all(ledger.import_sent_many([imported(k) for k in batch]))
    first = {k: raw(ledger, k) for k in batch}
    clock.now += 60
    again = [imported(k, "import-sent:2", sent_at=NOW) for k in batch]
    assert ledger.import_sent_many(again) == [False] * 30
    assert {k: raw(ledger, k) for k in batch} == first


def test_a_key_twice_in_one_import_is_written_once_from_its_first_record(ledger):
    written = ledger.import_sent_many([imported("k#1"), imported("k#2"), imported("k#1", sent_at=NOW)])
    assert written == [True, True, False]
    assert ledger.get("k#1").sent_at == NOW - WEEK


def test_an_imported_record_may_have_no_expiry_and_no_subject(ledger):
    assert ledger.import_sent_many([imported("k#1", expires_at=None, subject_uuid=None)]) == [True]
    item = raw(ledger, "k#1")
    assert "expires_at" not in item
    assert "subject_uuid" not in item
    record = ledger.get("k#1")
    assert (record.state, record.sent_at, record.expires_at) == (SENT, NOW - WEEK, None)


def test_an_imported_weekly_record_keeps_the_cadence_of_its_last_send(ledger):
    ledger.import_sent_many([imported("weekly_digest#e#42", kind="periodic_informational", sent_at=NOW - WEEK)])
    assert ledger.claim(**request("weekly_digest#e#42", resend_if_sent_before=NOW - WEEK)) is None
    claim = ledger.claim(**request("weekly_digest#e#42", resend_if_sent_before=NOW - WEEK + timedelta(seconds=1)))
    assert claim is not None
    ledger.release(claim)  # the imported send comes back
    assert ledger.sent(["weekly_digest#e#42"]) == {"weekly_digest#e#42": NOW - WEEK}


def test_an_import_transaction_sent_again_after_a_lost_reply_counts_its_records_as_written(ledger):
    repeats = {"left": 1}

    def reply_lost(attempts, **kwargs):
        if repeats["left"]:
            repeats["left"] -= 1
            return 0
        return None

    ledger.client.meta.events.register_first("needs-retry.dynamodb.TransactWriteItems", reply_lost)
    assert ledger.import_sent_many([imported(k) for k in keys(5)]) == [True] * 5
    assert repeats["left"] == 0


def test_a_single_import_whose_reply_was_lost_counts_as_written(ledger):
    repeats = {"left": 1}

    def reply_lost(attempts, **kwargs):
        if repeats["left"]:
            repeats["left"] -= 1
            return 0
        return None

    ledger.client.meta.events.register_first("needs-retry.dynamodb.PutItem", reply_lost)
    counts = requests_of(ledger)
    assert ledger.import_sent_many([imported("k#1")]) == [True]
    assert repeats["left"] == 0
    assert counts == {"PutItem": 2, "BatchGetItem": 1}  # sent twice (the repeat's condition fails), read back


def test_a_racer_between_the_read_and_the_retry_leaves_the_import_to_key_by_key_puts(ledger, other):
    batch = keys(6)
    other.claim(**request(batch[0], "run-2"))
    sneaked = {}

    def racer(**kwargs):
        if not sneaked:
            sneaked["claim"] = other.claim(**request(batch[4], "run-3"))

    ledger.client.meta.events.register("after-call.dynamodb.BatchGetItem", racer)
    counts = requests_of(ledger)
    written = ledger.import_sent_many([imported(k) for k in batch])
    assert written == [False, True, True, True, False, True]
    assert counts == {"TransactWriteItems": 2, "BatchGetItem": 1, "PutItem": 5}
    assert raw(ledger, batch[4])["claim_token"] == {"S": sneaked["claim"].token}


def test_imported_records_read_as_the_pynamodb_model_reads_them(ledger, table):
    ledger.import_sent_many([imported("expiration_reminder#l-1")])
    record = old_model(table).get("expiration_reminder#l-1")
    assert (record.state, record.sent_at, record.run_id, record.dispatch_id) == (
        SENT, NOW - WEEK, "import-sent:1", "license-manager",
    )  # fmt: skip
    assert (record.enterprise_customer_uuid, record.expires_at, record.claim_token) == ("ent-1", EXPIRES, None)


# -- stored attributes: what the pynamodb model wrote and read ----------------------------------------------------


class OldRecord(Model):
    """The ledger's pynamodb model before issue 8 (bound to a table by :func:`old_model`)."""

    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    state = UnicodeAttribute()
    claim_token = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)
    claimed_by_run = UnicodeAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)
    recorded_at = UTCDateTimeAttribute(null=True)
    run_id = UnicodeAttribute(null=True)
    dispatch_id = UnicodeAttribute(null=True)
    enterprise_customer_uuid = UnicodeAttribute(null=True)
    subject_uuid = UnicodeAttribute(null=True)
    note = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


def old_model(table: str) -> type[OldRecord]:
    meta = type("Meta", (), {"table_name": table, "region": "us-east-1"})
    return type(f"OldRecord_{abs(hash(table))}", (OldRecord,), {"Meta": meta})


def test_records_are_stored_as_the_pynamodb_model_stored_them(ledger, table):
    model = old_model(table)
    recorded_at = datetime.fromtimestamp(T0, UTC)
    claim = ledger.claim(**request("new#1", enterprise_customer_uuid="ent-1", subject_uuid="lic-1"))
    model(
        "old#1",
        kind="expiration_reminder",
        state=CLAIMED,
        claim_token=claim.token,
        lease_until=int(T0) + LEASE,
        claimed_by_run="run-1",
        enterprise_customer_uuid="ent-1",
        subject_uuid="lic-1",
        expires_at=EXPIRES,
    ).save()
    assert {**raw(ledger, "new#1"), "pk": None} == {**raw(ledger, "old#1"), "pk": None}

    ledger.mark_sent(claim, as_of=NOW, run_id="run-1", dispatch_id="d-1")
    old = model.get("old#1")
    old.update(
        actions=[
            model.state.set(SENT),
            model.sent_at.set(NOW),
            model.recorded_at.set(recorded_at),
            model.run_id.set("run-1"),
            model.dispatch_id.set("d-1"),
            model.claim_token.remove(),
            model.lease_until.remove(),
            model.claimed_by_run.remove(),
        ]
    )
    new = raw(ledger, "new#1")
    assert new["sent_at"] == {"S": "2026-03-01T09:00:00.000000+0000"}
    assert new["recorded_at"] == {"S": "2026-03-01T09:00:00.250000+0000"}
    assert new["expires_at"] == {"N": str(int(EXPIRES.timestamp()))}
    assert {**new, "pk": None} == {**raw(ledger, "old#1"), "pk": None}


def test_records_written_by_the_pynamodb_model_read_and_work_as_before(ledger, table):
    model = old_model(table)
    model("weekly_digest#e#1", kind="periodic_informational", state=SENT, sent_at=NOW - WEEK, recorded_at=NOW,
          run_id="run-0", dispatch_id="d-0", enterprise_customer_uuid="e", subject_uuid="p", expires_at=EXPIRES).save()  # fmt: skip
    model("k#held", kind="expiration_reminder", state=CLAIMED, claim_token="run-0:ab", lease_until=int(T0) + 60,
          claimed_by_run="run-0", expires_at=EXPIRES).save()  # fmt: skip
    record = ledger.get("weekly_digest#e#1")
    assert (record.state, record.sent_at, record.recorded_at, record.expires_at) == (SENT, NOW - WEEK, NOW, EXPIRES)
    assert ledger.sent(["weekly_digest#e#1", "k#held"]) == {"weekly_digest#e#1": NOW - WEEK}
    assert ledger.states(["weekly_digest#e#1", "k#held"]) == {"weekly_digest#e#1": SENT, "k#held": CLAIMED}
    claims = ledger.claim_many([request("weekly_digest#e#1", resend_if_sent_before=NOW), request("k#held")])
    assert claims[1] is None
    assert ledger.mark_sent_many([claims[0]], as_of=NOW, run_id="run-1", dispatch_id="d-1") == 1
    again = model.get("weekly_digest#e#1")  # and the pynamodb model reads what this ledger wrote
    assert (again.state, again.sent_at, again.dispatch_id, again.claim_token) == (SENT, NOW, "d-1", None)
    assert again.expires_at == EXPIRES


# Records exactly as the botocore ledger (main at a73c2ec, before the pynamodb model came back) stored them.
LEASE_UNTIL = str(int(T0) + LEASE)  # "1772356800"
EXPIRES_EPOCH = str(int(EXPIRES.timestamp()))  # "1780995600"
BOTOCORE_LEDGER_ITEMS = {
    "claimed": {"pk": {"S": "expiration_reminder#lic-1"}, "kind": {"S": "expiration_reminder"},
                "state": {"S": CLAIMED}, "claim_token": {"S": "run-0:0123456789abcdef"},
                "lease_until": {"N": LEASE_UNTIL}, "claimed_by_run": {"S": "run-0"}, "expires_at": {"N": EXPIRES_EPOCH},
                "enterprise_customer_uuid": {"S": "ent-1"}, "subject_uuid": {"S": "lic-1"}},
    "sent": {"pk": {"S": "expiration_reminder#lic-2"}, "kind": {"S": "expiration_reminder"}, "state": {"S": SENT},
             "sent_at": {"S": "2026-03-01T09:00:00.000000+0000"}, "recorded_at": {"S": "2026-03-01T09:00:00.250000+0000"},
             "run_id": {"S": "run-0"}, "dispatch_id": {"S": "d-0"}, "expires_at": {"N": EXPIRES_EPOCH},
             "enterprise_customer_uuid": {"S": "ent-1"}, "subject_uuid": {"S": "lic-2"}},
    "held": {"pk": {"S": "weekly_digest#ent-1#7"}, "kind": {"S": "periodic_informational"}, "state": {"S": REJECTED},
             "lease_until": {"N": LEASE_UNTIL}, "note": {"S": "rejected"}, "expires_at": {"N": EXPIRES_EPOCH},
             "sent_at": {"S": "2026-02-22T09:00:00.000000+0000"}, "recorded_at": {"S": "2026-02-22T09:00:01.000000+0000"},
             "run_id": {"S": "run-w"}, "dispatch_id": {"S": "d-w"}},
}  # fmt: skip


def test_records_stored_by_the_botocore_ledger_read_and_work_the_same(ledger, table, clock):
    for item in BOTOCORE_LEDGER_ITEMS.values():
        ledger.client.put_item(TableName=table, Item=item)
    claimed, sent, held = (BOTOCORE_LEDGER_ITEMS[k]["pk"]["S"] for k in ("claimed", "sent", "held"))
    record = ledger.get(sent)
    assert (record.state, record.sent_at, record.recorded_at, record.run_id, record.dispatch_id, record.expires_at) == (
        SENT, NOW, NOW + timedelta(seconds=0.25), "run-0", "d-0", EXPIRES)  # fmt: skip
    assert ledger.get(claimed).lease_until == int(T0) + LEASE
    assert ledger.get(held).note == "rejected"
    assert ledger.sent([claimed, sent, held]) == {sent: NOW, held: NOW - WEEK}
    assert ledger.states([claimed, sent, held]) == {claimed: CLAIMED, sent: SENT, held: REJECTED}
    assert (
        ledger.claim_many([request(k, "run-1", resend_if_sent_before=NOW) for k in (claimed, sent, held)]) == [None] * 3
    )
    clock.now = T0 + LEASE + 1  # the claim's and the hold's leases ran out
    again = ledger.claim_many([request(k, "run-1", resend_if_sent_before=NOW) for k in (claimed, sent, held)])
    assert [c is not None for c in again] == [True, False, True]


def test_records_are_stored_exactly_as_the_botocore_ledger_stored_them(ledger, table):
    claim = ledger.claim(**request("expiration_reminder#lic-1", "run-0", enterprise_customer_uuid="ent-1",
                                   subject_uuid="lic-1"))  # fmt: skip
    expected = {**BOTOCORE_LEDGER_ITEMS["claimed"], "claim_token": {"S": claim.token}}
    assert raw(ledger, "expiration_reminder#lic-1") == expected
    second = ledger.claim(**request("expiration_reminder#lic-2", "run-0", enterprise_customer_uuid="ent-1",
                                    subject_uuid="lic-2"))  # fmt: skip
    assert ledger.mark_sent(second, as_of=NOW, run_id="run-0", dispatch_id="d-0")
    assert raw(ledger, "expiration_reminder#lic-2") == BOTOCORE_LEDGER_ITEMS["sent"]


def test_unknown_keys_and_empty_batches(ledger):
    assert ledger.get("nothing#1") is None
    assert ledger.states([]) == {}
    assert ledger.sent([]) == {}
    assert ledger.claim_many([]) == []
    assert ledger.import_sent_many([]) == []
    assert ledger.mark_sent_many([], as_of=NOW, run_id="r", dispatch_id="d") == 0
