"""The fault hooks the soak (perf/soak.py) injects: each does what it says, and only when asked.

Stand-ins: redirect_next + ForeignHost, labelled faults (fired_faults / pending_faults), Braze 429s without
reset headers, accept-then-stall, on_accepted, license-manager's verbatim malformed records. AWS: the DynamoDB
throttling proxy in front of DynamoDB Local (devstack/dynamodb_faults.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from devstack.aws import create_tables_from_template
from devstack.dataset import Dataset
from devstack.dynamodb_faults import ThrottlingProxy
from devstack.dynamodb_local import DynamoDBLocal
from devstack.standins import BrazeStandIn, ForeignHost, LicenseManagerStandIn, LmsStandIn

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
API_KEY = "braze-test-key"
TRIGGER = "/campaigns/trigger/send"
ALIAS = "/users/alias/new"
TIMEOUT = 5


@pytest.fixture
def braze() -> Iterator[BrazeStandIn]:
    with BrazeStandIn(API_KEY) as standin:
        yield standin
    assert standin.errors == []


@pytest.fixture
def foreign() -> Iterator[ForeignHost]:
    with ForeignHost() as standin:
        yield standin


def braze_post(
    braze: BrazeStandIn, path: str, body: Any, *, timeout: float = TIMEOUT, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    return requests.post(braze.url + path, data=json.dumps(body).encode(), headers=headers, timeout=timeout, **kwargs)


def trigger_body(*emails: str) -> dict[str, Any]:
    recipients = [
        {
            "user_alias": {"alias_name": email, "alias_label": "Enterprise"},
            "send_to_existing_only": False,
            "attributes": {"email": email},
        }
        for email in emails
    ]
    return {"campaign_id": "c", "recipients": recipients}


# ------------------------------------------------------------------------------------- redirects, labels
def test_redirect_next_points_at_another_host_which_records_what_a_client_brings(
    braze: BrazeStandIn, foreign: ForeignHost
) -> None:
    braze.redirect_next(TRIGGER, foreign.url, status=307, label="redirect")
    assert braze.pending_faults == 1
    refused = braze_post(braze, TRIGGER, trigger_body("a@example.com"), allow_redirects=False)
    assert refused.status_code == 307
    assert refused.headers["Location"] == foreign.url + TRIGGER
    assert braze.fired_faults == {"redirect": 1}
    assert braze.pending_faults == 0
    assert foreign.requests == []  # a client that does not follow brings nothing
    assert braze.outbox == []
    # A client that follows a 307 takes the method and the body (the recipients' emails) to the other host.
    braze.redirect_next(TRIGGER, foreign.url, status=307)
    followed = braze_post(braze, TRIGGER, trigger_body("a@example.com"))
    assert followed.status_code == 404
    (arrived,) = foreign.requests
    assert (arrived.method, arrived.path) == ("POST", TRIGGER)
    assert arrived.json_body["recipients"][0]["attributes"]["email"] == "a@example.com"
    assert "authorization" not in arrived.headers  # requests drops it on another host, the body still leaks


def test_redirect_next_keeps_the_query_and_refuses_a_non_redirect_status(foreign: ForeignHost) -> None:
    with LmsStandIn(Dataset(now=NOW)) as lms:
        lms.redirect_next("/enterprise/api/v1/enterprise-customer", foreign.url, status=302)
        reply = requests.get(
            f"{lms.url}/enterprise/api/v1/enterprise-customer/x/?a=1", allow_redirects=False, timeout=TIMEOUT
        )
        assert reply.status_code == 302
        assert reply.headers["Location"] == f"{foreign.url}/enterprise/api/v1/enterprise-customer/x/?a=1"
        with pytest.raises(ValueError, match="redirect"):
            lms.redirect_next("/", foreign.url, status=200)


def test_labelled_faults_are_counted_when_they_fire_and_clear_faults_disarms(braze: BrazeStandIn) -> None:
    braze.fail_next(TRIGGER, 503, times=2, label="5xx")
    braze.rate_limit_next(ALIAS, 0.1, label="429")
    braze.fail_next(ALIAS, 500)  # unlabelled: fires, not counted
    assert braze.pending_faults == 4
    assert braze_post(braze, TRIGGER, trigger_body("a@example.com")).status_code == 503
    assert braze_post(braze, ALIAS, {"user_aliases": [{"alias_name": "a", "alias_label": "E"}]}).status_code == 429
    assert braze_post(braze, ALIAS, {"user_aliases": [{"alias_name": "a", "alias_label": "E"}]}).status_code == 500
    assert braze.fired_faults == {"5xx": 1, "429": 1}
    braze.clear_faults()
    assert braze.pending_faults == 0
    assert braze_post(braze, TRIGGER, trigger_body("a@example.com")).status_code == 201
    assert braze.fired_faults == {"5xx": 1, "429": 1}


# -------------------------------------------------------------------------------------------- Braze
def test_rate_limit_without_reset_next_has_no_rate_limit_headers(braze: BrazeStandIn) -> None:
    braze.rate_limit_without_reset_next(TRIGGER, label="bare")
    braze.rate_limit_without_reset_next(TRIGGER, retry_after=0.5)
    bare = braze_post(braze, TRIGGER, trigger_body("a@example.com"))
    assert bare.status_code == 429
    assert not [name for name in bare.headers if name.lower().startswith(("x-ratelimit", "retry-after"))]
    with_retry_after = braze_post(braze, TRIGGER, trigger_body("a@example.com"))
    assert with_retry_after.status_code == 429
    assert with_retry_after.headers["Retry-After"] == "0.5"
    assert "X-RateLimit-Reset" not in with_retry_after.headers
    normal = braze_post(braze, TRIGGER, trigger_body("a@example.com"))
    assert normal.status_code == 201
    assert "X-RateLimit-Reset" in normal.headers  # every other reply keeps them
    assert braze.fired_faults == {"bare": 1}


def test_accept_then_stall_keeps_the_send_and_answers_after_the_client_gave_up(braze: BrazeStandIn) -> None:
    braze.accept_then_stall_next(1.0, label="stall")
    assert braze.pending_faults == 1
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        braze_post(braze, TRIGGER, trigger_body("a@example.com"), timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert [who for who, _ in braze.sent_to("c")] == ["a@example.com"]  # Braze accepted it: it will deliver
    assert braze.fired_faults == {"stall": 1}
    assert braze.pending_faults == 0
    # Refused triggers are not stalled, and the stall is used only by an accepted one.
    braze.reject("bad@example.com")
    braze.accept_then_stall_next(0.5)
    assert braze_post(braze, TRIGGER, trigger_body("bad@example.com"), timeout=0.3).status_code == 400
    assert braze.pending_faults == 1
    braze.clear_faults()
    assert braze_post(braze, TRIGGER, trigger_body("b@example.com"), timeout=0.3).status_code == 201


def test_on_accepted_runs_before_the_reply_with_the_outbox_entry(braze: BrazeStandIn) -> None:
    seen: list[tuple[str | None, str, int, float | None]] = []

    def hook(request: Any, entry: dict[str, Any], stall: float | None) -> None:
        seen.append((request.headers.get("x-soak-worker"), entry["dispatch_id"], len(braze.outbox), stall))

    braze.on_accepted(hook)
    braze.reject("bad@example.com")
    assert braze_post(braze, TRIGGER, trigger_body("bad@example.com")).status_code == 400
    assert seen == []
    reply = requests.post(
        braze.url + TRIGGER,
        data=json.dumps(trigger_body("a@example.com")),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", "X-Soak-Worker": "w7"},
        timeout=TIMEOUT,
    )
    assert reply.status_code == 201
    assert seen == [("w7", reply.json()["dispatch_id"], 1, None)]
    braze.accept_then_stall_next(0.2)
    stalled = braze_post(braze, TRIGGER, trigger_body("b@example.com"))
    assert stalled.status_code == 201
    assert seen[-1] == (None, stalled.json()["dispatch_id"], 2, 0.2)  # told before the stall


# ------------------------------------------------------------------------------------ license-manager
def test_raw_licenses_are_served_verbatim_after_the_real_ones_whatever_the_filters() -> None:
    ds = Dataset(now=NOW)
    customer = ds.add_customer("Raw Corp")
    plan = ds.add_plan(customer.uuid, title="Raw plan", expires_in_days=10)
    ds.add_licenses(plan.uuid, "activated", 2)
    ds.add_licenses(plan.uuid, "assigned", 1)
    suspended = {"uuid": "5e6b3c1e-0000-4000-8000-000000000001", "status": "suspended", "user_email": "s@x.example"}
    no_uuid = {"status": "activated", "user_email": "n@x.example", "subscription_plan_uuid": plan.uuid}
    numeric_email = {"uuid": "5e6b3c1e-0000-4000-8000-000000000002", "status": "activated", "user_email": 12345}
    for record in (suspended, no_uuid, numeric_email):
        ds.add_raw_license(plan.uuid, record)
    with pytest.raises(KeyError):
        ds.add_raw_license("5e6b3c1e-0000-4000-8000-00000000ffff", {})
    with (
        LmsStandIn(ds) as lms,
        LicenseManagerStandIn(ds, lms.registry, clock=lambda: NOW) as lm,
    ):
        token = requests.post(
            f"{lms.url}/oauth2/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": lms.client_id,
                "client_secret": lms.client_secret,
                "token_type": "jwt",
            },
            timeout=TIMEOUT,
        ).json()["access_token"]
        reply = requests.get(
            f"{lm.url}/api/v1/subscriptions/{plan.uuid}/licenses/",
            params={"status": "activated", "page_size": 500},
            headers={"Authorization": f"JWT {token}"},
            timeout=TIMEOUT,
        ).json()
        assert lm.errors == []
    assert reply["count"] == 5
    assert [r.get("status") for r in reply["results"]] == [
        "activated",
        "activated",
        "suspended",
        "activated",
        "activated",
    ]
    assert reply["results"][2:] == [suspended, no_uuid, numeric_email]


# ---------------------------------------------------------------------------------------------- AWS
@pytest.fixture
def proxied(dynamodb_local: DynamoDBLocal) -> Iterator[tuple[ThrottlingProxy, Any, str]]:
    """A ThrottlingProxy in front of the session's DynamoDB Local, a client through it (no retries) and a table
    from the template on the engine."""
    tables = create_tables_from_template(dynamodb_local.endpoint_url, suffix=None)
    with ThrottlingProxy(dynamodb_local.endpoint_url) as proxy:
        client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
            "dynamodb", region_name="us-east-1", endpoint_url=proxy.endpoint_url,
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )  # fmt: skip
        yield proxy, client, tables["LedgerTable"]
    engine = dynamodb_local.client()
    for name in tables.values():
        engine.update_table(TableName=name, DeletionProtectionEnabled=False)
        engine.delete_table(TableName=name)


def test_dynamodb_throttling_is_off_by_default_and_answers_as_dynamodb_when_on(
    proxied: tuple[ThrottlingProxy, Any, str],
) -> None:
    proxy, dynamodb, table = proxied
    item = {"pk": {"S": "k1"}, "kind": {"S": "test"}, "state": {"S": "sent"}}
    dynamodb.put_item(TableName=table, Item=item)
    proxy.throttle_next(1, operations={"GetItem"})
    dynamodb.put_item(TableName=table, Item=item)  # another operation: untouched
    with pytest.raises(ClientError) as caught:
        dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}})
    error = caught.value.response
    assert error["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]["kind"] == {"S": "test"}
    proxy.throttle(1.0, operations={"UpdateItem"})
    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": "k1"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": "claimed"}},
        )
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]["state"] == {"S": "sent"}  # not run
    proxy.throttle(0.5, seed=7)
    outcomes = []
    for _ in range(40):
        try:
            dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}})
            outcomes.append(True)
        except ClientError:
            outcomes.append(False)
    assert 5 < outcomes.count(False) < 35
    proxy.clear_throttling()
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]
    assert proxy.throttled == {"GetItem": 1 + outcomes.count(False), "UpdateItem": 1}
    with pytest.raises(ValueError, match="rate"):
        proxy.throttle(1.5)


def test_the_throttling_proxy_forwards_everything_else_as_it_came(proxied: tuple[ThrottlingProxy, Any, str]) -> None:
    """What the engine answers comes back whole through the proxy: items, a conditional write's cancellation
    reasons, a validation error, and a transaction's client request token answered once (DynamoDB Local's)."""
    proxy, dynamodb, table = proxied
    put = {
        "TableName": table,
        "Item": {"pk": {"S": "k2"}, "n": {"N": "1"}},
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    dynamodb.transact_write_items(TransactItems=[{"Put": put}], ClientRequestToken="token-1")
    dynamodb.transact_write_items(TransactItems=[{"Put": put}], ClientRequestToken="token-1")  # a repeat: answered
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=[{"Put": put}])
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["ConditionalCheckFailed"]
    with pytest.raises(ClientError) as invalid:
        dynamodb.get_item(TableName=table, Key={"no_such_key": {"S": "x"}})
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    items = dynamodb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "k2"}}], "ConsistentRead": True}})
    assert items["Responses"][table] == [{"pk": {"S": "k2"}, "n": {"N": "1"}}]
    assert proxy.throttled == {}
    assert proxy.forwarded["TransactWriteItems"] == 3
