"""The ledger's transaction items, with DynamoDB's replies stubbed in botocore (no socket): each write of a batch
is serialised by pynamodb once, and every key's item is a copy with the key's own values. Here each item sent is
checked against pynamodb serialising that key's actions and condition on their own (what TransactWrite does per
item): the same request, no marker left. The integration tests check what the items do on moto and DynamoDB
Local."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from botocore.awsrequest import AWSResponse

from conftest import NOW
from license_notifications.adapters import ledger as module

EXPIRES = NOW + timedelta(days=100)


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):
        yield self.body


@pytest.fixture
def ledger(monkeypatch) -> module.Ledger:
    for name, value in {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)
    ledger = module.Ledger("LedgerTable", wall_clock=lambda: 1_772_355_600.25)

    def reply(request, **_):  # every transaction applies
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "r"}, _Body(b"{}"))

    ledger.client.meta.events.register_first("before-send.dynamodb", reply)
    return ledger


@pytest.fixture
def sent(ledger, monkeypatch) -> list[tuple[module._Write, str, dict, dict]]:
    """Every transaction item the ledger builds: (write, key, the key's values, the item)."""
    items: list[tuple[module._Write, str, dict, dict]] = []
    request = module._Write.request

    def record(write, key, values):
        item = request(write, key, values)
        items.append((write, key, dict(values), item))
        return item

    monkeypatch.setattr(module._Write, "request", record)
    return items


def claim(key: str, **more) -> dict:
    return {"key": key, "kind": "expiration_reminder", "run_id": "run-1", "expires_at": EXPIRES, **more}


def test_each_key_gets_the_request_pynamodb_serialises_for_its_own_write(ledger, sent):
    weekly = NOW - timedelta(days=7)
    taken = ledger.claim_many(
        [claim(f"k#{i}", enterprise_customer_uuid="ent-1", subject_uuid=f"lic-{i}") for i in range(4)]
        + [claim(f"e#{i}", enterprise_customer_uuid="ent-1") for i in range(2)]
        + [claim(f"weekly#{i}", kind="periodic", resend_if_sent_before=weekly) for i in range(2)]
    )
    assert ledger.mark_sent_many(taken[:3], as_of=NOW, run_id="run-1", dispatch_id="d-1") == 3
    ledger.hold_many(taken[3:5], seconds=60, reason="rejected")
    ledger.release_many(taken[5:])
    imports = [{"key": f"old#{i}", "kind": "expiration_reminder", "sent_at": NOW, "run_id": "import",
                "dispatch_id": "lm"} for i in range(2)]  # fmt: skip
    assert ledger.import_sent_many(imports) == [True, True]

    assert len(sent) == 8 + 3 + 2 + 3 + 2
    for write, key, values, item in sent:
        assert item == write._serialise(key, values), key
        assert module._MARKER not in json.dumps(item)
        assert item["TableName"] == "LedgerTable"
        if write.kind != "put":
            assert {"S": values["token"]} in item["ExpressionAttributeValues"].values()
    # serialised once each: three kinds of claim (with a subject, without, recurring), record, hold, release, put
    kinds = {id(write): write.kind for write, *_ in sent}
    assert sorted(kinds.values()) == ["delete", "put", "update", "update", "update", "update", "update"]


def test_a_slot_the_write_does_not_hold_once_is_refused(ledger):
    m = ledger.model
    twice = module._Write(m, "update", lambda token: ([m.claim_token.set(token)], m.claim_token == token), "token")
    with pytest.raises(ValueError, match="each slot"):
        twice.request("k#1", {"token": "t"})
    unused = module._Write(m, "update", lambda token: ([m.state.set("sent")], None), "token")
    with pytest.raises(ValueError, match="each slot"):
        unused.request("k#1", {"token": "t"})


def test_the_client_is_bounded_as_the_record_budget_assumes(ledger):
    """pynamodb builds the ledger's botocore client from the model's Meta: no parameter validation (the requests
    are built by pynamodb), the connect / read timeouts and attempts MARK_WORST_CASE_SECONDS counts on."""
    ledger.client.get_item(TableName="LedgerTable", Key={"pk": {"S": "k#1"}}, ConsistentRead="yes")  # not validated
    config = ledger.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (
        module.DYNAMODB_CONNECT_TIMEOUT_SECONDS, module.DYNAMODB_READ_TIMEOUT_SECONDS)  # fmt: skip
    assert config.retries == {"total_max_attempts": 1 + module.DYNAMODB_MAX_RETRY_ATTEMPTS, "mode": "standard"}
    assert module.MARK_WORST_CASE_SECONDS == module.MARK_BUDGET_SECONDS + 3 * (2 + 5)
